"""The reduced demo's clean runs, made once per session: the workflow tests read them, copy them, and compare
interrupted runs against them."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_runner import SMOKE_CONFIG, snakemake, workdir_with


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two clean runs of the reduced demo in two working directories, the first on two cores, the second on one
    (jobs then run in another order, and alone)."""
    runs = []
    for name, cores in (("first", "2"), ("second", "1")):
        workdir = workdir_with(tmp_path_factory.mktemp(name), SMOKE_CONFIG)
        snakemake(workdir, "--cores", cores)
        runs.append(workdir)
    return runs[0], runs[1]
