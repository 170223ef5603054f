from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.figures import figure1_overlap_heatmap

with job_log(snakemake.log[0], snakemake.threads):
    figure1_overlap_heatmap(Path(snakemake.input[0]) / "overlap.csv", Path(snakemake.output.png).with_suffix(""))
