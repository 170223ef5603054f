from loramerge.repro.hub import fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_split
from loramerge.repro.suites.clip.hubdata import metadata, statistics_subset
from loramerge.repro.suites.clip.images import image_processor
from loramerge.repro.suites.clip.zeroshot import read_class_names

with job_log(snakemake.log[0], snakemake.threads) as log:
    dataset, task, params = snakemake.params.dataset, snakemake.wildcards.task, snakemake.params
    repo = dataset["repo"]
    files = fetch_repo_files(read_lock(params.lock), params.lock, "dataset", repo)
    processor = image_processor(snakemake.input.backbone, params.image_size)
    class_names = read_class_names(snakemake.input.classnames)
    prepared = statistics_subset(
        files, dataset, class_names, processor, params.examples, params.seed, f"{repo} ({task})"
    )
    info = metadata(task=task, split="train", repo=repo, **prepared.info)
    save_split(snakemake.output[0], prepared.images, prepared.labels, class_names, info)
    log.info(
        "%s: %d of the %d training images (seed %d) as crops of %s",
        task,
        prepared.info["drawn"],
        prepared.info["train_rows"],
        params.seed,
        tuple(prepared.images.shape[1:]),
    )
