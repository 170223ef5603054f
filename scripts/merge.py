from loramerge import load_adapters, load_decomposition, merge_to_folder
from loramerge.atomic import read_json
from loramerge.repro.jobs import job_log
from loramerge.repro.plan import HYBRID, HYBRID_BRANCHES, hybrid_branch_params

with job_log(snakemake.log[0], snakemake.threads) as log:
    method, params = snakemake.wildcards.method, dict(snakemake.params.point)
    adapters = load_adapters(snakemake.input.adapters)
    decomposition = None
    if hasattr(snakemake.input, "decomposition"):
        decomposition = load_decomposition(snakemake.input.decomposition, adapters)
    if method == HYBRID:
        selections = {
            name: read_json(path) for name, path in zip(HYBRID_BRANCHES.values(), snakemake.input.branches, strict=True)
        }
        params.update(hybrid_branch_params(selections, snakemake.params.branch_selection))
    log.info("merging %s with %s", method, params)
    merge_to_folder(adapters, method, snakemake.output[0], params, decomposition=decomposition, progress=True)
