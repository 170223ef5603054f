from pathlib import Path

from loramerge import load_adapters, load_decomposition, merge_to_folder
from loramerge.repro.jobs import job_log, reading_inputs
from loramerge.repro.plan import tuned_branch_params
from loramerge.repro.search import read_selection

with job_log(snakemake.log[0], snakemake.threads) as log:
    method, params = snakemake.wildcards.method, dict(snakemake.params.point)
    with reading_inputs(snakemake.params.made_by):
        adapters = load_adapters(snakemake.input.adapters)
        decomposition = None
        if hasattr(snakemake.input, "decomposition"):
            decomposition = load_decomposition(snakemake.input.decomposition, adapters)
        branches = snakemake.params.branches
        if branches:
            rule = snakemake.params.branch_selection
            chosen = {
                branch: read_selection(path).chosen(rule).params
                for branch, path in zip(branches.values(), snakemake.input.branches, strict=True)
            }
            params.update(tuned_branch_params(branches, snakemake.params.branch_params, chosen))
    if hasattr(snakemake.input, "adapted"):  # TARA: the coefficients its adaptation job learned for this point
        params["coefficients"] = str(Path(snakemake.input.adapted) / "coefficients.safetensors")
    # the task folders of one statistics folder (resources/<suite>/stats/<kind>), for methods that read one
    statistics = Path(snakemake.input.statistics[0]).parent if snakemake.input.statistics else None
    log.info("merging %s with %s", method, params)
    merge_to_folder(
        adapters, method, snakemake.output[0], params, decomposition=decomposition, progress=True, statistics=statistics
    )
