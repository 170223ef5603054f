from loramerge.repro.hub import fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_split
from loramerge.repro.suites.clip.hubdata import evaluation_splits, load_permutation, metadata
from loramerge.repro.suites.clip.images import image_processor
from loramerge.repro.suites.clip.zeroshot import read_class_names

with job_log(snakemake.log[0], snakemake.threads) as log:
    spec, task, inputs, params = snakemake.params.spec, snakemake.wildcards.task, snakemake.input, snakemake.params
    lock = read_lock(params.lock)
    repo = spec["dataset"]["repo"]
    files = fetch_repo_files(lock, params.lock, "dataset", repo)
    release_files = (
        fetch_repo_files(lock, params.lock, "dataset", spec["release"]["repo"]) if "release" in spec else None
    )
    permutation = load_permutation(inputs.permutation) if spec["split"] == "permutation" else None
    class_names = read_class_names(inputs.classnames)
    processor = image_processor(inputs.backbone, params.image_size)
    source = f"{repo} ({task})"
    splits = evaluation_splits(
        files, spec, class_names, processor, permutation, params.val_fraction, source, release_files
    )
    for split, prepared in splits.items():
        info = metadata(task=task, split=split, repo=repo, protocol=spec["split"], **prepared.info)
        save_split(snakemake.output[split], prepared.images, prepared.labels, class_names, info)
        log.info("%s %s: %d crops of %s", task, split, len(prepared.images), tuple(prepared.images.shape[1:]))
        log.info(
            "%s %s: %d images carry an EXIF orientation tag other than 1 (not applied, as KnOTS)",
            task,
            split,
            prepared.info["exif_oriented"],
        )
        for key, value in prepared.info.items():
            if key != "exif_oriented":
                log.info("%s %s: %s = %s", task, split, key, value)
