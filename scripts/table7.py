from pathlib import Path

from loramerge.jobs import job_log
from loramerge.report.tables import table7_alpha_sweep, write_table
from loramerge.search import build_setting_table, load_evaluations, load_finetuned

with job_log(snakemake.log[0], snakemake.threads):
    evaluations = load_evaluations(sorted(Path(snakemake.input.evaluations).glob("*.json")))
    settings = build_setting_table(evaluations, load_finetuned(snakemake.input.finetuned))
    table = table7_alpha_sweep(settings, tasks=snakemake.params.tasks)
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
