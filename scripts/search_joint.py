from loramerge.atomic import write_json
from loramerge.repro.jobs import job_log, reading_inputs
from loramerge.repro.search import RULES, evaluation_files, select_joint

with job_log(snakemake.log[0], snakemake.threads) as log:
    spec, joint = snakemake.params.spec, snakemake.params.joint
    # the files are read as the selection needs them, so a bad one is reported from inside it
    with reading_inputs(snakemake.params.made_by):
        evaluations = evaluation_files(snakemake.input.evaluations)
        selection = select_joint(
            evaluations,
            spec["order"],
            spec["grids"],
            spec["defaults"],
            ks=joint["ks"],
            select_k=joint["select_k"],
            tasks=snakemake.params.tasks,
            replicates=spec.get("replicates"),
        )
    k = selection.select_k
    for rule in RULES:
        chosen = selection.chosen(rule)
        val, test = chosen.val.pooled[k], chosen.test.pooled[k]
        log.info("%s: %s val Hits@%s %.2f test %.2f", rule, chosen.params, k, val, test)
    write_json(snakemake.output[0], selection.to_json())
