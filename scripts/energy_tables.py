from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.energy import load_energy, table1_svd_energy, table2_cur_energy
from loramerge.repro.report.render import write_table

with job_log(snakemake.log[0], snakemake.threads):
    energy = load_energy(Path(snakemake.input[0]) / "energy.csv")
    paper = snakemake.params.paper
    write_table(table1_svd_energy(energy, paper=paper), Path(snakemake.output.svd_csv).with_suffix(""))
    write_table(table2_cur_energy(energy, paper=paper), Path(snakemake.output.cur_csv).with_suffix(""))
