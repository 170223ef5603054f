import tempfile
from pathlib import Path

from loramerge.repro.hub import fetch_url, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.clip.hubdata import read_numpy_permutation, save_permutation

with job_log(snakemake.log[0], snakemake.threads) as log:
    lock_path, url = snakemake.params.lock, snakemake.params.url
    with tempfile.TemporaryDirectory() as scratch:
        pickled = fetch_url(read_lock(lock_path), lock_path, url, Path(scratch) / "permutation.pt")
        permutation = read_numpy_permutation(pickled)
    log.info("%s: a permutation of %d indices", url, len(permutation))
    save_permutation(snakemake.output[0], permutation)
