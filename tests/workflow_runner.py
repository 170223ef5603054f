"""Running the workflow from tests: the repository root, the smoke config, a `snakemake` subprocess in a working
directory of its own, and the dry run's job counts (shared by the workflow and cluster tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from loramerge.methods.catalog import ADAPTATION, CATALOG
from loramerge.repro.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = ROOT / "tests" / "smoke" / "config.yaml"
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
TABLES = ["finetuned_accuracy", "table3_pertask", "table7_alpha", "table1_energy_svd", "table2_energy_cur"]
FIGURES = ["fig1_overlap", "fig2_ur_vs_r", "fig3_alpha"]


def snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    snakefile: Path = ROOT / "Snakefile",
) -> subprocess.CompletedProcess:
    # The rules call the `loramerge` console script, which lives next to this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **(env or {})}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
        "--workflow-profile", "none", "--cores", "2", *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def workdir_with(tmp_path: Path, config: dict | Path) -> Path:
    """A working directory whose config/config.yaml is `config` (the Snakefile's `configfile:` is relative to it)."""
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    target = tmp_path / "config" / "config.yaml"
    if isinstance(config, Path):
        shutil.copy(config, target)
    else:
        target.write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


def job_counts(workdir: Path, *args: str, snakefile: Path = ROOT / "Snakefile") -> dict[str, int]:
    """Jobs per rule that a run would execute, from the dry run's "Job stats" table ({} when nothing is to do)."""
    result = snakemake(workdir, "--dry-run", "--quiet", "rules", *args, snakefile=snakefile)
    output = result.stdout + result.stderr
    if "Job stats:" not in output:
        assert "Nothing to be done" in output, output
        return {}
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {match[1]: int(match[2]) for match in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if match[1] != "total"}


def dry_run_jobs(workdir: Path, *targets: str) -> dict[str, list[dict[str, list[str]]]]:
    """Rule -> its jobs in a dry run, each as {"input": [...], "output": [...]}."""
    result = snakemake(workdir, "--dry-run", *targets)
    jobs: dict[str, list[dict[str, list[str]]]] = {}
    for rule, body in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", result.stdout, re.M):
        fields = dict(re.findall(r"^    (input|output): (.*)$", body, re.M))
        jobs.setdefault(rule, []).append({name: fields.get(name, "").split(", ") for name in ("input", "output")})
    return jobs


def override(tmp_path: Path, name: str, values: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def evaluation_jobs(config: dict) -> int:
    """Evaluation jobs of one kind (per task or joint): each method's points in chunks of `evaluate.points_per_job`."""
    size = config["evaluate"].get("points_per_job")
    return sum(-(-len(plan.points) // (size or len(plan.points))) for plan in build_plan(config).values())


def shared_stage_counts(config: dict, tasks: int) -> dict[str, int]:
    """Jobs per rule of the stages every suite shares (after its input rules), for a config with `tasks` tasks and
    no joint evaluation."""
    plans = build_plan(config)
    counts = {
        "evaluate_finetuned": tasks,
        "decompose": 1,
        "analyze": 1,
        "merge": len(plans),
        "evaluate_merged": evaluation_jobs(config),
        "search": len(plans),
        "finetuned_table": 1,
        "table3": 1,
        "energy_tables": 1,
        "figure1": 1,
        "all": 1,
    }
    if {"cur_ties", "cur_r_ties"} <= set(plans):
        counts["figure2"] = 1
    for method, table, figure in (("hybrid", "table7", "figure3"), ("mix", "table8", "figure8")):
        if method in plans:
            counts.update({table: 1, figure: 1})
    statistics_kinds = {CATALOG[name].statistics_kind for name in plans} - {None}
    if statistics_kinds:
        counts["statistics"] = len(statistics_kinds)
    adapted = sum(ADAPTATION in CATALOG[name].needs for name in plans)
    if adapted:
        counts["adapt"] = adapted
    return counts


def expected_counts(config: dict) -> dict[str, int]:
    """Jobs per rule of a whole demo run under `config`."""
    tasks = len(config["demo"]["tasks"])
    demo_inputs = {"pretrain_data": 1, "task_data": tasks, "pretrain_backbone": 1, "finetune_adapter": tasks}
    return {**demo_inputs, **shared_stage_counts(config, tasks)}
