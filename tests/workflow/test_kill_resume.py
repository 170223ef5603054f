"""Kill anywhere, resume, same bytes: the reduced demo is killed (SIGKILL to Snakemake and every job it started) at
seeded moments inside a training, a merge, an evaluation and a table job, resumed each time as a user would
(`--unlock`, then `--rerun-incomplete`), and its tables and search results are byte-identical to an uninterrupted
run's (the session's first clean run)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from workflow_runner import ROOT, SMOKE_CONFIG, snakemake, workdir_with

# A job of each rule is killed once, in this order, a seeded delay (at most this many seconds, well inside such a
# job's time on two cores) after Snakemake starts it.
KILL_DURING = {"finetune_adapter": 4.0, "merge": 1.5, "evaluate_merged": 3.0, "table3": 0.5}
KILL_SEED = 15
RUN_TIMEOUT = 900  # s, per interrupted or resumed run


def run_until_killed(workdir: Path, rule: str, delay: float) -> tuple[bool, str]:
    """Run Snakemake in `workdir` with --rerun-incomplete; `delay` seconds after it starts a job of `rule`, kill its
    whole process group. (True, output) when it was killed, (False, output) when it ended first."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--workflow-profile", "none", "--cores", "2", "--rerun-incomplete",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if re.match(rf"^(local)?rule {rule}:$", line.strip()):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None and not started.wait(timeout=0.2):
        pass
    killed = False
    if started.is_set():
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
    process.wait(timeout=RUN_TIMEOUT)
    reader.join(timeout=10)
    return killed, "".join(lines)


def compared_files(results: Path) -> list[Path]:
    return sorted(path.relative_to(results) for path in [*results.rglob("*.csv"), *results.glob("search/*.json")])


def test_killed_runs_resume_to_the_bytes_of_an_uninterrupted_run(smoke_runs, tmp_path):
    workdir = workdir_with(tmp_path, SMOKE_CONFIG)
    generator = random.Random(KILL_SEED)
    kills = []
    for rule, longest in KILL_DURING.items():
        delay = generator.uniform(0.0, longest)
        killed, output = run_until_killed(workdir, rule, delay)
        assert killed, f"the run ended before a {rule} job could be killed:\n{output[-3000:]}"
        kills.append(rule)
        snakemake(workdir, "--unlock")  # a killed Snakemake leaves its lock behind
    assert kills == list(KILL_DURING)
    snakemake(workdir, "--rerun-incomplete")
    assert "Nothing to be done" in snakemake(workdir, "--dry-run").stdout

    reference, resumed = smoke_runs[0] / "results" / "demo", workdir / "results" / "demo"
    files = compared_files(reference)
    assert files == compared_files(resumed) and len(files) > 10
    for path in files:
        assert (reference / path).read_bytes() == (resumed / path).read_bytes(), path
