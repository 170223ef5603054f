from loramerge.repro.hub import read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.llama.taskheads import fetch_authors_heads

with job_log(snakemake.log[0], snakemake.threads) as log:
    params = snakemake.params
    tasks = fetch_authors_heads(read_lock(params.lock), params.lock, params.url, params.sha256, snakemake.output[0])
    log.info("%s: heads of %s", params.url, tasks)
