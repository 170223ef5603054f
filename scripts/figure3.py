from pathlib import Path

import pandas as pd

from loramerge.atomic import read_json
from loramerge.repro.jobs import job_log
from loramerge.repro.report.figures import figure3_alpha_curve, split_sources

with job_log(snakemake.log[0], snakemake.threads):
    ours, paper = split_sources(pd.read_csv(snakemake.input.table))
    selected = read_json(snakemake.input.search)[snakemake.params.selection]["params"]["alpha"]
    figure3_alpha_curve(ours, Path(snakemake.output.png).with_suffix(""), selected_alpha=selected, paper=paper)
