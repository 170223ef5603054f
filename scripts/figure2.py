from pathlib import Path

from loramerge.atomic import read_json
from loramerge.repro.jobs import job_log
from loramerge.repro.report.figures import figure2_cur_spaces

with job_log(snakemake.log[0], snakemake.threads):
    stem = Path(snakemake.output.png).with_suffix("")
    figure2_cur_spaces(
        read_json(snakemake.input.ur),
        read_json(snakemake.input.r),
        stem,
        rule=snakemake.params.selection,
        tasks=snakemake.params.tasks,
    )
