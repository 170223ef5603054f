"""The adaptation stage in the DAG and for real: with `tara` in the plan, one `adapt` job per point (variant × seed),
each tara merge built from its own point's learned coefficients, other merges from none; one small real run on the
smoke demo learns coefficients that lower the objective and merges them (~2 min)."""

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


def test_adapt_jobs_are_one_per_point_and_feed_that_points_merge(tmp_path):
    workdir = workdir_with(tmp_path, config_with_tara())
    assert job_counts(workdir)["adapt"] == 4
    jobs = dry_run_jobs(workdir)
    adapted = sorted(output for job in jobs["adapt"] for output in job["output"])
    points = ["seed~0_variant~a", "seed~0_variant~b", "seed~1_variant~a", "seed~1_variant~b"]
    assert adapted == [f"resources/demo/adapt/tara/{point}" for point in points]
    for job in jobs["merge"]:
        output = job["output"][0]
        learned = [path for path in job["input"] if "/adapt/" in path]
        if "/merged/tara/" in output:
            assert learned == [f"resources/demo/adapt/tara/{output.rsplit('/', 1)[1]}"]
        else:
            assert learned == []


def test_a_real_adaptation_lowers_its_objective_and_merges_what_it_learned(tmp_path):
    config = config_with_tara()
    config["merge"]["methods"] = {"ta": config["merge"]["methods"]["ta"], "tara": TARA}
    workdir = workdir_with(tmp_path, config)
    point = "seed~0_variant~b"
    snakemake(workdir, f"results/demo/merged/tara/{point}")
    adapted = workdir / "resources/demo/adapt/tara" / point
    report = json.loads((adapted / "adapt.json").read_text())
    smallest = min(task["val"] for task in config["demo"]["tasks"].values())
    steps = 2 * min(6, -(-smallest // 16))  # epochs × min(steps_per_epoch, batches of the smallest task)
    assert report["steps"] == steps == len(report["objective"]) > 2
    assert report["objective"][-1] < report["objective"][0]
    coefficients = load_file(adapted / "coefficients.safetensors")
    assert any(not torch.all(c == 0.4) for c in coefficients.values())
    tasks = list(config["demo"]["tasks"])  # the adapters in the config's task order, as the workflow stacks them
    adapters = load_adapters([workdir / "resources/demo/adapters" / task for task in tasks])
    expected = merge(adapters, "tara", variant="b", seed=0, coefficients=str(adapted / "coefficients.safetensors"))
    written = load_adapter(workdir / "results/demo/merged/tara" / point)
    for module, update in expected.items():
        torch.testing.assert_close(written.modules[module].delta(), update.dense(), atol=1e-5, rtol=1e-4)
