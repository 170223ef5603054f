from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.render import write_table
from loramerge.repro.report.table3 import table3_per_task
from loramerge.repro.search import load_finetuned, read_selection

with job_log(snakemake.log[0], snakemake.threads):
    methods = snakemake.params.methods
    selections = {method: read_selection(path) for method, path in zip(methods, snakemake.input.searches, strict=True)}
    finetuned = load_finetuned(snakemake.input.finetuned)
    table = table3_per_task(
        selections, finetuned, methods=methods, tasks=snakemake.params.tasks, paper=snakemake.params.paper
    )
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
