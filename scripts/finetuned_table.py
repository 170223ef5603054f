from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.finetuned import finetuned_table
from loramerge.repro.report.render import write_table
from loramerge.repro.search import load_finetuned

with job_log(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    table = finetuned_table(
        load_finetuned(snakemake.input),
        tasks=params.tasks,
        published=params.published,
        normalized_by=params.normalize_by,
    )
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
