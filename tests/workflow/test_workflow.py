"""The Snakemake workflow: static checks, config errors, the DAG's shape, and a real run of a reduced demo with its
rerun behaviour and determinism."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_runner import (
    DEFAULT_CONFIG,
    FIGURES,
    ROOT,
    SMOKE_CONFIG,
    TABLES,
    evaluation_jobs,
    expected_counts,
    job_counts,
    override,
    snakemake,
    workdir_with,
)

from loramerge.repro.plan import build_plan

# --- static checks -------------------------------------------------------------------------------------------------


def test_lint_passes():
    result = snakemake(ROOT, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_check_passes():
    files = [str(ROOT / "Snakefile"), *map(str, sorted((ROOT / "workflow").rglob("*.smk")))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config_path", [DEFAULT_CONFIG, SMOKE_CONFIG], ids=["default", "smoke"])
def test_dry_run_lists_the_expected_jobs(tmp_path, config_path):
    config = yaml.safe_load(config_path.read_text())
    assert job_counts(workdir_with(tmp_path, config_path)) == expected_counts(config)


def test_points_per_job_spreads_a_methods_evaluation_over_jobs(tmp_path):
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["evaluate"]["points_per_job"] = 1
    counts = job_counts(workdir_with(tmp_path, config))
    merges = sum(len(plan.points) for plan in build_plan(config).values())
    assert counts == expected_counts(config) and counts["evaluate_merged"] == merges == evaluation_jobs(config)
    assert counts["search"] == len(build_plan(config)) < merges


def test_default_demo_runs_every_method_of_the_paper():
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    plans = build_plan(config)
    assert {
        "ta", "ties", "dare_ties", "knots_ties", "knots_dare_ties", "core_ties", "lora_lego", "cur_ties", "cur_r_ties",
        "hybrid", "mix",
    } <= set(plans)  # fmt: skip
    assert plans["mix"].branches == {"first": "knots_ties", "second": "lora_lego"}  # the paper's Table 8
    assert {"core_tsv", "core_iso"} <= set(plans)  # Core Space's other merges, beside the paper's CoreSpace-TIES
    assert len(config["demo"]["tasks"]) >= 6


# --- bad configs stop before any job -------------------------------------------------------------------------------


def _broken(edit) -> dict:
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    edit(config)
    return config


BAD_CONFIGS = {
    "unknown method": (lambda c: c["merge"]["methods"].update(magic_ties={"order": ["lam"]}), "magic_ties"),
    "alpha out of range": (lambda c: c["merge"]["methods"]["hybrid"]["grid"].update(alpha=[0.0, 1.5]), "alpha"),
    "missing suite": (lambda c: c.pop("suite"), "suite"),
    "unknown key": (lambda c: c["evaluate"].update(batchsize=8), "batchsize"),
    "top_k out of range": (lambda c: c["merge"]["methods"]["ties"]["grid"].update(top_k=[0, 20]), "top_k"),
    "joint grid value not in the grid": (
        lambda c: c["merge"]["methods"]["ties"].update(joint={"grid": {"top_k": [100, 30]}}),
        "merge.methods.ties.joint.grid.top_k",
    ),
    "override of an unknown task": (
        lambda c: c["demo"]["finetune"]["per_task"].update(cars={"steps": 3}),
        "demo.finetune.per_task.cars",
    ),
    "hybrid without its branch": (lambda c: c["merge"]["methods"].pop("cur_ties"), "cur_ties"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path, case):
    edit, key = BAD_CONFIGS[case]
    workdir = workdir_with(tmp_path, _broken(edit))
    result = snakemake(workdir, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert key in output, output
    assert not (workdir / "resources").exists() and not (workdir / "results").exists()


# --- a real run of the reduced demo ---------------------------------------------------------------------------------


def test_smoke_run_writes_every_table_and_figure(smoke_runs):
    results = smoke_runs[0] / "results" / "demo"
    for table in TABLES:
        for extension in ("csv", "md", "tex"):
            assert (results / "tables" / f"{table}.{extension}").stat().st_size > 0
    for figure in FIGURES:
        for extension in ("png", "pdf"):
            assert (results / "figures" / f"{figure}.{extension}").stat().st_size > 1000


def test_smoke_run_table3_has_every_method_and_both_selections(smoke_runs):
    import pandas as pd

    table = pd.read_csv(smoke_runs[0] / "results" / "demo" / "tables" / "table3_pertask.csv")
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    methods = len(build_plan(config))
    assert len(table) == 1 + 2 * methods
    assert set(table["Selection"].dropna()) >= {"greedy", "grid"}
    assert table["Average"].notna().all()


def test_merged_adapters_are_peft_folders_and_logs_exist(smoke_runs):
    results = smoke_runs[0] / "results" / "demo"
    knots = results / "merged" / "knots_ties" / "top_k~20"
    assert (knots / "adapter_config.json").exists() and (knots / "adapter_model.safetensors").exists()
    assert (results / "merged" / "ties" / "top_k~20" / "delta.safetensors").exists()
    logs = smoke_runs[0] / "logs" / "demo"
    assert "finetune" in (logs / "finetune_adapter" / "digits.log").read_text()  # the progress bar
    assert (results / "benchmarks" / "decompose.tsv").exists()


def test_report_html_is_built(smoke_runs):
    report = smoke_runs[0] / "report.html"
    snakemake(smoke_runs[0], "--report", str(report))
    text = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000 and "fig3_alpha.png" in text


def test_runs_on_two_cores_and_on_one_give_byte_identical_tables(smoke_runs):
    first, second = (run / "results" / "demo" for run in smoke_runs)
    csvs = sorted(path.relative_to(first) for path in first.rglob("*.csv"))
    assert len(csvs) >= len(TABLES) + 2
    for path in csvs:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    for path in sorted(first.glob("search/*.json")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path


def test_second_run_has_nothing_to_do(smoke_runs):
    assert job_counts(smoke_runs[0]) == {}


def test_adding_an_alpha_reruns_only_what_depends_on_it(smoke_runs, tmp_path):
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    alphas = sorted([*config["merge"]["methods"]["hybrid"]["grid"]["alpha"], 0.25])
    extra = override(tmp_path, "alpha", {"merge": {"methods": {"hybrid": {"grid": {"alpha": alphas}}}}})
    assert job_counts(smoke_runs[0], "--configfile", extra) == {
        "merge": 1,
        "evaluate_merged": 1,
        "search": 1,
        "table3": 1,
        "table7": 1,
        "figure3": 1,
        "all": 1,
    }


def _workflow_copy(tmp_path: Path) -> Path:
    """The workflow and the library copied with their modification times, so that only the edits a test makes differ."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "Snakefile", repo / "Snakefile")
    for folder in ("workflow", "scripts", "src", "envs"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return repo


def test_code_edits_rerun_exactly_the_rules_whose_code_changed(smoke_runs, tmp_path):
    """Each rule's code hash covers the modules its script imports, without comments and docstrings."""
    repo = _workflow_copy(tmp_path)
    snakefile = repo / "Snakefile"
    assert job_counts(smoke_runs[0], snakefile=snakefile) == {}
    trim = repo / "src" / "loramerge" / "ties" / "trim.py"
    original = trim.read_text()
    assert original.startswith('"""Exact k-th') and "\nSAMPLE_SEED = 0\n" in original
    trim.write_text(original.replace('"""Exact k-th', '"""Exactly the k-th', 1) + "# a comment reruns nothing\n")
    assert job_counts(smoke_runs[0], snakefile=snakefile) == {}

    trim.write_text(original.replace("\nSAMPLE_SEED = 0\n", "\nSAMPLE_SEED = 1\n"))
    counts = job_counts(smoke_runs[0], snakefile=snakefile)
    expected = expected_counts(yaml.safe_load(SMOKE_CONFIG.read_text()))
    # The merges (and the decomposition and analysis, through the CLI) use the trim; what reads them reruns too.
    for rule in ("merge", "decompose", "analyze", "evaluate_merged", "search", "table3", "figure3"):
        assert counts[rule] == expected[rule], rule
    for rule in ("pretrain_data", "task_data", "pretrain_backbone", "finetune_adapter", "evaluate_finetuned"):
        assert rule not in counts, rule

    trim.write_text(original)
    render = repo / "src" / "loramerge" / "repro" / "report" / "render.py"
    render.write_text(render.read_text().replace('CSV_FLOAT_FORMAT = "%.4f"', 'CSV_FLOAT_FORMAT = "%.5f"'))
    counts = job_counts(smoke_runs[0], snakefile=snakefile)
    assert {"table3", "table7", "energy_tables", "finetuned_table"} <= set(counts)
    assert not {"merge", "decompose", "evaluate_merged", "search", "finetune_adapter"} & set(counts), counts


def test_a_mix_with_tuned_branches_merges_the_settings_its_branch_searches_chose(smoke_runs, tmp_path):
    """Table 8's mechanism on the demo: `mix` of two configured methods, each branch at its own search's choice."""
    import json

    import torch

    from loramerge.apply import load_update

    copy = shutil.copytree(smoke_runs[0], tmp_path / "copy", symlinks=True)
    mix = {"branches": "tuned", "fixed": {"first": "knots_ties", "second": "ties"}, "grid": {"alpha": [0.0, 1.0]}}
    extra = override(tmp_path, "mix", {"merge": {"methods": {"mix": {**mix, "order": ["alpha"]}}}})
    snakemake(copy, "results/demo/search/mix.json", "--configfile", extra)  # the target before --configfile
    results = copy / "results" / "demo"
    chosen = {
        m: json.loads((results / "search" / f"{m}.json").read_text())["grid"]["params"] for m in mix["fixed"].values()
    }
    manifest = json.loads(
        (results / "merged" / "mix" / "alpha~1_first~knots_ties_second~ties" / "merge.json").read_text()
    )
    for prefix, method in mix["fixed"].items():
        assert manifest["method"][prefix]["lam"] == chosen[method]["lam"]
        assert manifest["method"][prefix]["top_k"] == chosen[method]["top_k"]
    # α = 1 is the first branch alone: knots_ties merged at its chosen top-K, scaled by its chosen λ.
    mixed = load_update(results / "merged" / "mix" / "alpha~1_first~knots_ties_second~ties")
    branch = load_update(results / "merged" / "knots_ties" / f"top_k~{chosen['knots_ties']['top_k']:g}")
    assert mixed.keys() == branch.keys()
    for module, delta in branch.items():
        torch.testing.assert_close(mixed[module], chosen["knots_ties"]["lam"] * delta)
    assert json.loads((results / "search" / "mix.json").read_text())["settings_evaluated"] == 2


def test_one_job_per_point_gives_the_same_evaluations_and_search(smoke_runs, tmp_path):
    """The evaluation of one method, rerun with every point in a job of its own, in a copy of the first run."""
    first = smoke_runs[0]
    copy = shutil.copytree(first, tmp_path / "copy", symlinks=True)
    extra = override(tmp_path, "per_point", {"evaluate": {"points_per_job": 1}})
    method, results = "ties", Path("results") / "demo"
    snakemake(copy, str(results / "search" / f"{method}.json"), "--configfile", extra)  # --configfile takes a list
    (single_job,) = (first / results / "eval" / method).iterdir()
    points = sorted(single_job.glob("*.json"))
    per_point = {path.name: path for path in (copy / results / "eval" / method).glob("part*/*.json")}
    assert len(per_point) == len(points) > 1
    assert sorted(path.parent.name for path in per_point.values()) == [f"part{k}" for k in range(len(points))]
    for path in points:
        assert path.read_bytes() == per_point[path.name].read_bytes(), path
    search = results / "search" / f"{method}.json"
    assert (first / search).read_bytes() == (copy / search).read_bytes()
    assert (copy / search).stat().st_mtime > (first / search).stat().st_mtime  # it did run again


def test_changing_one_tasks_training_reruns_that_adapter_and_its_downstream(smoke_runs, tmp_path):
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    steps = config["demo"]["finetune"]["steps"] + 1
    extra = override(tmp_path, "train", {"demo": {"finetune": {"per_task": {"shapes": {"steps": steps}}}}})
    counts = job_counts(smoke_runs[0], "--configfile", extra)
    expected = expected_counts(config)
    for upstream in ("pretrain_data", "task_data", "pretrain_backbone"):
        assert upstream not in counts
    assert counts["finetune_adapter"] == 1 and counts["evaluate_finetuned"] == 1
    assert counts["decompose"] == 1 and counts["analyze"] == 1
    assert counts["merge"] == expected["merge"] and counts["evaluate_merged"] == expected["evaluate_merged"]
