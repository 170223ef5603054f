from pathlib import Path

from loramerge.atomic import read_json
from loramerge.repro.jobs import job_log
from loramerge.repro.report.tables import table3_per_task, write_table
from loramerge.repro.search import load_finetuned

with job_log(snakemake.log[0], snakemake.threads):
    methods = snakemake.params.methods
    selections = {method: read_json(path) for method, path in zip(methods, snakemake.input.searches, strict=True)}
    finetuned = load_finetuned(snakemake.input.finetuned)
    table = table3_per_task(
        selections, finetuned, methods=methods, tasks=snakemake.params.tasks, paper=snakemake.params.paper
    )
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
