from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.render import write_table
from loramerge.repro.report.table7 import table7_alpha_sweep
from loramerge.repro.search import (
    build_setting_table,
    evaluation_files,
    load_evaluations,
    load_finetuned,
    normalization_base,
)

with job_log(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    evaluations = load_evaluations(evaluation_files(snakemake.input.evaluations))
    finetuned = load_finetuned(snakemake.input.finetuned)
    base = normalization_base(finetuned, params.normalize_by, params.published)
    settings = build_setting_table(evaluations, finetuned, base=base)
    table = table7_alpha_sweep(settings, tasks=params.tasks, paper=params.paper, normalized_by=params.normalize_by)
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
