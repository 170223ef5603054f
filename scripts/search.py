from loramerge.atomic import write_json
from loramerge.repro.jobs import job_log, reading_inputs
from loramerge.repro.search import RULES, evaluation_files, select_method

with job_log(snakemake.log[0], snakemake.threads) as log:
    spec, params = snakemake.params.spec, snakemake.params
    # the files are read as the selection needs them, so a bad one is reported from inside it
    with reading_inputs(params.made_by):
        evaluations = evaluation_files(snakemake.input.evaluations)
        selection = select_method(
            evaluations,
            snakemake.input.finetuned,
            spec["order"],
            spec["grids"],
            spec["defaults"],
            normalize_by=params.normalize_by,
            published=params.published,
            replicates=spec.get("replicates"),
        )
    log.info("normalized by: %s", selection.normalized_by)
    for rule in RULES:
        chosen = selection.chosen(rule)
        log.info("%s: %s val %.2f test %.2f", rule, chosen.params, chosen.val.mean, chosen.test.mean)
    write_json(snakemake.output[0], selection.to_json())
