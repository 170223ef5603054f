"""Table 8 in the DAG: with `mix` in the plan, dry runs schedule rules table8 and figure8 on mix's evaluations and
search; without it, neither. The smoke config with KnOTS-TIES, LoRA-LEGO and their mix; dry runs only (seconds)."""

from __future__ import annotations

import yaml
from workflow_runner import SMOKE_CONFIG, dry_run_jobs, job_counts, workdir_with

from loramerge.repro.plan import build_plan

MIX = {
    "branches": "tuned",
    "fixed": {"first": "knots_ties", "second": "lora_lego"},
    "seeds": [0, 1],
    "grid": {"alpha": [0.0, 0.5, 1.0]},
    "order": ["alpha"],
}


def config_with_mix(mix: bool = True) -> dict:
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    methods = config["merge"]["methods"]
    methods["knots_ties"] = {"grid": {"top_k": [20]}, "defaults": {"top_k": 20}, "order": ["lam", "top_k"]}
    methods["lora_lego"] = {"seeds": [0, 1], "order": ["lam"]}  # K = the adapters' rank, two k-means seeds
    if mix:
        methods["mix"] = MIX
    else:
        methods.pop("mix", None)
    return config


def test_mix_in_the_plan_schedules_table8_and_its_figure(tmp_path):
    counts = job_counts(workdir_with(tmp_path / "with", config_with_mix()))
    assert counts["table8"] == 1 and counts["figure8"] == 1
    assert counts["table7"] == 1 and counts["figure3"] == 1  # the hybrid's sweep stays
    counts = job_counts(workdir_with(tmp_path / "without", config_with_mix(mix=False)))
    assert "table8" not in counts and "figure8" not in counts
    assert counts["table7"] == 1


def test_table8_and_figure8_depend_on_mixs_evaluations_and_search(tmp_path):
    workdir = workdir_with(tmp_path, config_with_mix())
    jobs = dry_run_jobs(workdir, "results/demo/figures/fig8_alpha.png")
    (table8,), (figure8,) = jobs["table8"], jobs["figure8"]
    assert table8["output"] == [f"results/demo/tables/table8_alpha.{ext}" for ext in ("csv", "md", "tex")]
    assert {"results/demo/search/mix.json", "results/demo/eval/mix/part0"} <= set(table8["input"])
    assert figure8["output"] == ["results/demo/figures/fig8_alpha.png", "results/demo/figures/fig8_alpha.pdf"]
    assert set(figure8["input"]) == {"results/demo/tables/table8_alpha.csv", "results/demo/search/mix.json"}
    searched = {output for job in jobs["search"] for output in job["output"]}
    # mix's search runs, and before it the searches that tune its two branches
    assert {f"results/demo/search/{method}.json" for method in ("mix", "knots_ties", "lora_lego")} <= searched
    (mix_merge,) = [job for job in jobs["merge"] if job["output"] == ["results/demo/merged/mix"]]
    assert {"results/demo/search/knots_ties.json", "results/demo/search/lora_lego.json"} <= set(mix_merge["input"])
    assert len(build_plan(config_with_mix())["mix"].points) == 6  # one job merges three α × two seeds
    assert "table7" not in jobs and "figure3" not in jobs  # nothing of the hybrid's sweep for this target
