from loramerge.jobs import job_log
from loramerge.vision.tasks import make_task, save_split

with job_log(snakemake.log[0], snakemake.threads):
    spec, seed = snakemake.params.spec, snakemake.params.seed
    splits = ("train", "val", "test")
    task = make_task(spec["source"], {split: spec[split] for split in splits}, snakemake.params.image_size, seed)
    for split in splits:
        images, labels = task.splits[split]
        metadata = {"task": snakemake.wildcards.task, "split": split, "source": spec["source"], "seed": str(seed)}
        save_split(snakemake.output[split], images, labels, task.class_names, metadata)
