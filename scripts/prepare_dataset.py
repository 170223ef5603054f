from loramerge.repro.hub import fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_split
from loramerge.repro.suites.clip.hubdata import evaluation_splits, image_processor, load_permutation, metadata
from loramerge.repro.suites.clip.zeroshot import read_class_names

with job_log(snakemake.log[0], snakemake.threads) as log:
    spec, task, inputs = snakemake.params.spec, snakemake.wildcards.task, snakemake.input
    repo = spec["dataset"]["repo"]
    files = fetch_repo_files(read_lock(snakemake.params.lock), snakemake.params.lock, "dataset", repo)
    permutation = load_permutation(inputs.permutation) if spec["split"] == "permutation" else None
    class_names = read_class_names(inputs.classnames)
    processor = image_processor(inputs.backbone, snakemake.params.image_size)
    source = f"{repo} ({task})"
    params = snakemake.params
    splits = evaluation_splits(
        files, spec, class_names, processor, permutation, params.val_fraction, source, params.holdout_seed
    )
    for split, (images, labels) in splits.items():
        info = metadata(task=task, split=split, repo=repo, protocol=spec["split"])
        save_split(snakemake.output[split], images, labels, class_names, info)
        log.info("%s %s: %d crops of %s", task, split, len(images), tuple(images.shape[1:]))
