from pathlib import Path

import pandas as pd

from loramerge.repro.jobs import job_log
from loramerge.repro.report.figures import alpha_sweep_figure, split_sources
from loramerge.repro.search import read_selection

with job_log(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    ours, paper = split_sources(pd.read_csv(snakemake.input.table))
    selected = read_selection(snakemake.input.search).chosen(params.selection).params["alpha"]
    stem = Path(snakemake.output.png).with_suffix("")
    alpha_sweep_figure(ours, stem, branches=params.branches, selected_alpha=selected, paper=paper)
