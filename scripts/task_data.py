from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_split
from loramerge.repro.suites.demo_vision.data import make_task

with job_log(snakemake.log[0], snakemake.threads):
    spec, seed = snakemake.params.spec, snakemake.params.seed
    splits = ("train", "val", "test")
    task = make_task(spec["source"], {split: spec[split] for split in splits}, snakemake.params.image_size, seed)
    for split in splits:
        images, labels = task.splits[split]
        metadata = {"task": snakemake.wildcards.task, "split": split, "source": spec["source"], "seed": str(seed)}
        save_split(snakemake.output[split], images, labels, task.class_names, metadata)
