from loramerge.repro.hub import fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_token_split
from loramerge.repro.suites.llama.data import evaluation_splits, load_tokenizer, split_metadata

with job_log(snakemake.log[0], snakemake.threads) as log:
    params, task = snakemake.params, snakemake.wildcards.task
    repo = params.spec["dataset"]["repo"]
    files = fetch_repo_files(read_lock(params.lock), params.lock, "dataset", repo)
    tokenizer = load_tokenizer(snakemake.input.backbone)
    splits = evaluation_splits(files, params.spec, tokenizer, f"{repo} ({task})")
    for split, prepared in splits.items():
        metadata = split_metadata(task, split, params.spec, prepared.info)
        save_token_split(snakemake.output[split], prepared.tokens, prepared.labels, params.class_names, metadata)
        log.info("%s %s: %d pairs, %s", task, split, len(prepared.labels), prepared.info)
