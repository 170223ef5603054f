from pathlib import Path

from loramerge.repro.jobs import job_log
from loramerge.repro.report.joint import table5_joint, table9_joint_per_task
from loramerge.repro.report.render import write_table
from loramerge.repro.search import read_selection

with job_log(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    selections = {method: read_selection(path) for method, path in zip(params.methods, snakemake.input, strict=True)}
    table5 = table5_joint(selections, methods=params.methods, paper=params.paper)
    write_table(table5, Path(snakemake.output.table5_csv).with_suffix(""))
    table9 = table9_joint_per_task(selections, methods=params.methods, tasks=params.tasks, paper=params.paper)
    write_table(table9, Path(snakemake.output.table9_csv).with_suffix(""))
