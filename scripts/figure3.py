from pathlib import Path

import pandas as pd

from loramerge.repro.jobs import job_log
from loramerge.repro.report.figures import figure3_alpha_curve, split_sources
from loramerge.repro.search import read_selection

with job_log(snakemake.log[0], snakemake.threads):
    ours, paper = split_sources(pd.read_csv(snakemake.input.table))
    selected = read_selection(snakemake.input.search).chosen(snakemake.params.selection).params["alpha"]
    figure3_alpha_curve(ours, Path(snakemake.output.png).with_suffix(""), selected_alpha=selected, paper=paper)
