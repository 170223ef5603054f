"""The adaptation stage in the DAG and for real: with `tara` in the plan, one `adapt` job learns every point
(variant × seed) of the method, the tara merge job reads what it learned, other merges read none; one small real run
on the smoke demo learns coefficients that lower the objective and merges each point from its own (~2 min)."""

from __future__ import annotations

import json

import torch
import yaml
from safetensors.torch import load_file
from workflow_runner import SMOKE_CONFIG, dry_run_jobs, job_counts, snakemake, workdir_with

from loramerge import load_adapter, load_adapters, merge

TARA = {
    "lambdas": [1.0],
    "grid": {"variant": ["a", "b"]},
    "seeds": [0, 1],
    "defaults": {"variant": "b"},
    "order": ["lam", "variant"],
    "adapt": {"epochs": 2, "steps_per_epoch": 6, "batch_size": 16, "lr": 0.01},
}


def config_with_tara() -> dict:
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["merge"]["methods"]["tara"] = TARA
    return config


def test_one_adapt_job_learns_the_method_and_feeds_its_merge(tmp_path):
    workdir = workdir_with(tmp_path, config_with_tara())
    assert job_counts(workdir)["adapt"] == 1
    jobs = dry_run_jobs(workdir)
    assert [job["output"] for job in jobs["adapt"]] == [["resources/demo/adapt/tara"]]
    for job in jobs["merge"]:
        learned = [path for path in job["input"] if "/adapt/" in path]
        assert learned == (["resources/demo/adapt/tara"] if job["output"] == ["results/demo/merged/tara"] else [])


def test_a_real_adaptation_lowers_its_objective_and_merges_what_it_learned(tmp_path):
    config = config_with_tara()
    config["merge"]["methods"] = {"ta": config["merge"]["methods"]["ta"], "tara": {**TARA, "seeds": [0]}}
    workdir = workdir_with(tmp_path, config)
    snakemake(workdir, "results/demo/merged/tara")
    tasks = list(config["demo"]["tasks"])  # the adapters in the config's task order, as the workflow stacks them
    adapters = load_adapters([workdir / "resources/demo/adapters" / task for task in tasks])
    learned = {}
    for variant in ("a", "b"):
        point = f"seed~0_variant~{variant}"
        adapted = workdir / "resources/demo/adapt/tara" / point
        report = json.loads((adapted / "adapt.json").read_text())
        smallest = min(task["val"] for task in config["demo"]["tasks"].values())
        steps = 2 * min(6, -(-smallest // 16))  # epochs × min(steps_per_epoch, batches of the smallest task)
        assert report["settings"]["variant"] == variant
        assert report["steps"] == steps == len(report["objective"]) > 2
        assert report["objective"][-1] < report["objective"][0]
        learned[variant] = load_file(adapted / "coefficients.safetensors")
        assert any(not torch.all(c == 0.4) for c in learned[variant].values())
        coefficients = str(adapted / "coefficients.safetensors")
        expected = merge(adapters, "tara", variant=variant, seed=0, coefficients=coefficients)
        written = load_adapter(workdir / "results/demo/merged/tara" / point)
        for module, update in expected.items():
            torch.testing.assert_close(written.modules[module].delta(), update.dense(), atol=1e-5, rtol=1e-4)
    # the two points learn coefficients of different shapes: per LoRA piece (a), per task and direction (b)
    assert any(learned["a"][name].shape != learned["b"][name].shape for name in learned["a"])
