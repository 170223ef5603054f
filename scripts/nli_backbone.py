from loramerge.repro.hub import fetch_gated_repo_files, fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.llama.hubinputs import convert_llama_snapshot

with job_log(snakemake.log[0], snakemake.threads) as log:
    params = snakemake.params
    fetch = fetch_gated_repo_files if params.gated else fetch_repo_files
    files = fetch(read_lock(params.lock), params.lock, "model", params.repo)
    log.info("%s: %d files checked against the lock", params.repo, len(files))
    counts = convert_llama_snapshot(files, snakemake.output[0], params.class_names, params.pad_token_id, params.repo)
    log.info("%s: a sequence classifier of %d tensors (%d parameters copied)", params.repo, *counts.values())
