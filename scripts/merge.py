from pathlib import Path

from loramerge import load_adapters, load_decomposition, merge_to_folder
from loramerge.io import atomic_directory
from loramerge.repro.jobs import job_log, reading_inputs
from loramerge.repro.plan import tuned_branch_params
from loramerge.repro.search import read_selection

with job_log(snakemake.log[0], snakemake.threads) as log:
    method, params = snakemake.wildcards.method, snakemake.params
    with reading_inputs(params.made_by):
        adapters = load_adapters(snakemake.input.adapters)
        decomposition = None
        if hasattr(snakemake.input, "decomposition"):
            decomposition = load_decomposition(snakemake.input.decomposition, adapters)
        tuned = {}
        if params.branches:
            rule = params.branch_selection
            chosen = {
                branch: read_selection(path).chosen(rule).params
                for branch, path in zip(params.branches.values(), snakemake.input.branches, strict=True)
            }
            tuned = tuned_branch_params(params.branches, params.branch_params, chosen)
    # the task folders of one statistics folder (resources/<suite>/stats/<kind>), for methods that read one
    statistics = snakemake.input.statistics[0] if snakemake.input.statistics else None
    with atomic_directory(snakemake.output[0]) as staging:
        for name, point in params.points.items():
            point_params = {**point, **tuned}
            if hasattr(snakemake.input, "adapted"):  # TARA: the coefficients its adaptation learned for this point
                point_params["coefficients"] = str(Path(snakemake.input.adapted) / name / "coefficients.safetensors")
            log.info("merging %s %s with %s", method, name, point_params)
            with reading_inputs(params.made_by):
                merge_to_folder(
                    adapters,
                    method,
                    staging / name,
                    point_params,
                    decomposition=decomposition,
                    progress=True,
                    statistics=statistics,
                )
