from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.clip.zeroshot import joint_head, save_joint_head

with job_log(snakemake.log[0], snakemake.threads) as log:
    tasks = snakemake.params.tasks
    heads = {task: load_head(path) for task, path in zip(tasks, snakemake.input, strict=True)}
    head, class_names, maps = joint_head(heads, snakemake.params.shared)
    log.info("joint head: %d classes from %d tasks (shared: %s)", len(class_names), len(tasks), snakemake.params.shared)
    save_joint_head(snakemake.output[0], head, class_names, maps)
