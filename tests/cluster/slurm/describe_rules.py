"""Print the rules of the workflow under one config file as JSON, for the static tests of tests/cluster/test_slurm.py.

usage: python describe_rules.py SNAKEFILE WORKDIR CONFIGFILE

Runs in its own process because loading a workflow changes the working directory. The config's `device` is set
to `cuda`, so that GPU rules declare their GPU as they do on a cluster.
"""

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings


def describe(snakefile: Path, workdir: Path, configfile: Path) -> list[dict]:
    config = ConfigSettings(configfiles=[configfile], config={"device": "cuda"})
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(ResourceSettings(), config, snakefile=snakefile, workdir=workdir)._workflow
        rules = []
        for rule in workflow.rules:
            gpu = rule.resources.get("gpu")
            conda = str(rule.conda_env) if rule.conda_env else None
            rules.append(
                {
                    "name": rule.name,
                    "runs_a_job": not rule.norun,
                    "local": rule.name in workflow._localrules,
                    "conda": str((Path(rule.snakefile).parent / conda).resolve()) if conda else None,
                    "log": [str(path) for path in rule.log],
                    "gpu": gpu.value if gpu is not None and not gpu.is_evaluable() else None,
                }
            )
        return rules


if __name__ == "__main__":
    snakefile, workdir, configfile = (Path(argument).resolve() for argument in sys.argv[1:4])
    print(json.dumps(describe(snakefile, workdir, configfile)))
