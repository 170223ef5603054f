from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.figures import figure2_cur_spaces
from loramerge.repro.search import read_selection

with job_log(snakemake.log[0], snakemake.threads):
    stem = Path(snakemake.output.png).with_suffix("")
    figure2_cur_spaces(
        read_selection(snakemake.input.ur),
        read_selection(snakemake.input.r),
        stem,
        rule=snakemake.params.selection,
        tasks=snakemake.params.tasks,
    )
