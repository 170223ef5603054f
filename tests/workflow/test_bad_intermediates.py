"""Bad intermediate files in a real run: a half-written evaluation JSON, a corrupt merged adapter and a truncated data
split each stop the job that reads them with a message naming the file and the rule that made it, and deleting what
the message says and running again recovers the same result."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from workflow_runner import SMOKE_CONFIG, snakemake, workdir_with

TARGET = "results/demo/search/ta.json"


def reduced_smoke_config() -> dict:
    """The smoke config cut to what one method's search needs: two tasks and Task Arithmetic."""
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["demo"]["tasks"] = {name: config["demo"]["tasks"][name] for name in ("digits", "shapes")}
    config["merge"]["methods"] = {"ta": config["merge"]["methods"]["ta"]}
    return config


def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def failure(workdir: Path, *args: str) -> str:
    result = snakemake(workdir, TARGET, *args, check=False)
    assert result.returncode != 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


def test_a_bad_intermediate_names_its_rule_and_deleting_it_recovers(tmp_path):
    workdir = workdir_with(tmp_path, reduced_smoke_config())
    snakemake(workdir, TARGET)
    search = (workdir / TARGET).read_bytes()
    evaluations = Path("results/demo/eval/ta/part0")
    merged = Path("results/demo/merged/ta")  # the merge job's folder: one sub-folder per point
    split = Path("resources/demo/data/digits/val.safetensors")

    # A half-written evaluation JSON (and, found next, a corrupt merged adapter): Snakemake sees neither (a folder
    # output's time is its own), so the search is forced to read them again.
    evaluation = next((workdir / evaluations).glob("*.json"))
    cut_in_half(evaluation)
    cut_in_half(workdir / merged / "default" / "adapter_model.safetensors")
    output = failure(workdir, "--forcerun", "search")
    assert f"{evaluation.relative_to(workdir)} (made by rule evaluate_merged): incomplete JSON" in output
    assert f"; delete {evaluations} and rerun" in output

    shutil.rmtree(workdir / evaluations)
    output = failure(workdir)
    assert f"{merged / 'default' / 'adapter_model.safetensors'} (made by rule merge): " in output
    assert f"; delete {merged} and rerun" in output

    shutil.rmtree(workdir / merged)
    cut_in_half(workdir / split)
    output = failure(workdir)
    assert f"{split} (made by rule task_data): unreadable safetensors file: truncated: " in output
    assert "; delete it and rerun" in output

    (workdir / split).unlink()
    snakemake(workdir, TARGET)
    assert (workdir / TARGET).read_bytes() == search
