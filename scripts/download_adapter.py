from loramerge.repro.hub import fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.clip.hubdata import convert_adapter

with job_log(snakemake.log[0], snakemake.threads) as log:
    lock_path, repo = snakemake.params.lock, snakemake.params.repo
    files = fetch_repo_files(read_lock(lock_path), lock_path, "model", repo)
    log.info("%s: %s checked against the lock", repo, sorted(files))
    convert_adapter(files, snakemake.output[0])
