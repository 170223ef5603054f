from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.alpha_sweep import alpha_sweep_table
from loramerge.repro.report.render import write_table
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
    table = alpha_sweep_table(
        settings,
        branches=params.branches,
        paper_table=params.paper_table,
        replicates=params.replicates,
        tasks=params.tasks,
        paper=params.paper,
        normalized_by=params.normalize_by,
    )
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
