"""The offline text demo (config/demo-nli.yaml, kind demo_text) run end to end by Snakemake, once per module: its
tables, its adapters in the hub's Llama format, and its reruns, which behave as the vision demo's do.

The run keeps the demo's model, tasks and training, and the methods whose code differs on text (statistics through a
Llama's hooks, an adaptation on token inputs) with the paper's hybrid, its branches and CUR in R space (Fig. 2); the
other training-free methods read adapter factors only, which the vision smoke run covers. TARA adapts for fewer
epochs and seeds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from workflow_runner import FIGURES, ROOT, TABLES, job_counts, override, shared_stage_counts, snakemake, workdir_with

from loramerge.repro.heads import load_head
from loramerge.repro.plan import build_plan

CONFIG_PATH = ROOT / "config" / "demo-nli.yaml"
CONFIG = yaml.safe_load(CONFIG_PATH.read_text())
SUITE = CONFIG["suite"]
TASKS = list(CONFIG["demo_text"]["tasks"])
RUN_METHODS = ("ta", "ties", "knots_ties", "cur_ties", "cur_r_ties", "hybrid", "regmean", "fisher", "tara")


def run_config() -> dict:
    config = yaml.safe_load(CONFIG_PATH.read_text())
    methods = config["merge"]["methods"]
    config["merge"]["methods"] = {name: methods[name] for name in RUN_METHODS}
    config["merge"]["methods"]["tara"].update(seeds=[0, 1], adapt={"epochs": 2})
    return config


RUN_CONFIG = run_config()
INPUT_RULES = ("demo_text_tokenizer", "demo_text_pretrain_data", "demo_text_task_data", "demo_text_pretrain")


def expected_counts(config: dict) -> dict[str, int]:
    """Jobs per rule of a whole text demo run under `config`."""
    tasks = len(config["demo_text"]["tasks"])
    inputs = {
        "demo_text_tokenizer": 1,
        "demo_text_pretrain_data": 1,
        "demo_text_task_data": tasks,
        "demo_text_pretrain": 1,
        "demo_text_finetune": tasks,
    }
    return {**inputs, **shared_stage_counts(config, tasks)}


def test_dry_run_lists_the_expected_jobs(tmp_path):
    assert job_counts(workdir_with(tmp_path, CONFIG_PATH)) == expected_counts(CONFIG)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """One clean run of the text demo in a working directory of its own."""
    workdir = workdir_with(tmp_path_factory.mktemp("text_demo"), RUN_CONFIG)
    snakemake(workdir)
    return workdir


def test_the_demo_writes_every_table_and_figure(demo):
    results = demo / "results" / SUITE
    for table in TABLES:
        for extension in ("csv", "md", "tex"):
            assert (results / "tables" / f"{table}.{extension}").stat().st_size > 0
    for figure in FIGURES:
        for extension in ("png", "pdf"):
            assert (results / "figures" / f"{figure}.{extension}").stat().st_size > 1000


def test_table3_has_every_method_and_both_selections(demo):
    import pandas as pd

    table = pd.read_csv(demo / "results" / SUITE / "tables" / "table3_pertask.csv")
    plan = build_plan(RUN_CONFIG)
    replicated = [name for name, method in plan.items() if len(method.seeds) > 1]  # a ± std row below each
    assert replicated and (table["Source"] == "ours").sum() == 1 + 2 * len(plan)
    assert (table["Source"] == "ours std").sum() == 2 * len(replicated)
    assert set(table["Selection"].dropna()) == {"greedy", "grid"} and table["Average"].notna().all()
    assert set(TASKS) <= set(table.columns)


def test_every_adapter_learned_its_task(demo):
    """Each adapter alone is well above chance on its own task's test split (a third, or a half when masked)."""
    for task in TASKS:
        records = json.loads((demo / "results" / SUITE / "finetuned" / f"{task}.json").read_text())["records"]
        test = next(record for record in records if record["split"] == "test")
        chance = 1 / (3 - len(CONFIG["demo_text"]["tasks"][task].get("masked", [])))
        assert test["accuracy"] > chance + 0.25, (task, test["accuracy"])


def test_adapters_carry_their_score_head_as_the_hubs_llama_adapters_do(demo):
    resources = demo / "resources" / SUITE
    pretrained = load_file(resources / "backbone" / "model.safetensors")["score.weight"]
    for task in TASKS:
        tensors = load_file(resources / "adapters" / task / "adapter_model.safetensors")
        head, class_names = load_head(resources / "heads" / f"{task}.safetensors")
        assert torch.equal(tensors["base_model.model.score.weight"], head)
        assert class_names == ["entailment", "neutral", "contradiction"]
        for masked in CONFIG["demo_text"]["tasks"][task].get("masked", []):  # −1e10 in training: the row never moves
            assert torch.equal(head[masked], pretrained[masked])
    assert (resources / "backbone" / "tokenizer.json").is_file()


def test_second_run_has_nothing_to_do(demo):
    assert job_counts(demo) == {}


def test_changing_one_methods_grid_reruns_only_that_method(demo, tmp_path):
    grid = sorted([*CONFIG["merge"]["methods"]["ties"]["grid"]["top_k"], 30])
    extra = override(tmp_path, "ties", {"merge": {"methods": {"ties": {"grid": {"top_k": grid}}}}})
    counts = job_counts(demo, "--configfile", extra)
    assert counts == {"merge": 1, "evaluate_merged": 1, "search": 1, "table3": 1, "all": 1}


def test_changing_one_tasks_training_reruns_that_adapter_and_its_downstream(demo, tmp_path):
    steps = CONFIG["demo_text"]["finetune"]["steps"] + 1
    extra = override(tmp_path, "train", {"demo_text": {"finetune": {"per_task": {"negation": {"steps": steps}}}}})
    counts = job_counts(demo, "--configfile", extra)
    assert not set(INPUT_RULES) & set(counts)
    assert counts["demo_text_finetune"] == 1 and counts["evaluate_finetuned"] == 1
    assert counts["merge"] == expected_counts(RUN_CONFIG)["merge"]


def _workflow_copy(tmp_path: Path) -> Path:
    """The workflow and the library copied with their modification times, so that only the edits a test makes differ."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "Snakefile", repo / "Snakefile")
    for folder in ("workflow", "scripts", "src", "envs"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return repo


def test_comments_rerun_nothing_and_a_training_change_reruns_the_training(demo, tmp_path):
    config = demo / "config" / "config.yaml"
    original_config = config.read_text()
    config.write_text("# a comment reruns nothing\n" + original_config)
    try:
        assert job_counts(demo) == {}
    finally:
        config.write_text(original_config)

    repo = _workflow_copy(tmp_path)
    snakefile = repo / "Snakefile"
    train = repo / "src" / "loramerge" / "repro" / "suites" / "demo_text" / "train.py"
    original = train.read_text()
    assert '"""The demo\'s tiny Llama' in original and "\n_MAX_GRAD_NORM = 1.0" in original
    train.write_text(original.replace('"""The demo\'s tiny Llama', '"""The tiny Llama', 1) + "# reruns nothing\n")
    assert job_counts(demo, snakefile=snakefile) == {}

    train.write_text(original.replace("\n_MAX_GRAD_NORM = 1.0", "\n_MAX_GRAD_NORM = 2.0"))
    counts = job_counts(demo, snakefile=snakefile)
    assert counts["demo_text_pretrain"] == 1 and counts["demo_text_finetune"] == len(TASKS)
    assert not {"demo_text_tokenizer", "demo_text_pretrain_data", "demo_text_task_data"} & set(counts)


def _same_content(first: Path, second: Path) -> bool:
    """Equal files; for safetensors, equal tensors and metadata (safetensors writes the metadata in hash-map order,
    so two writes of the same content may differ in bytes)."""
    if first.suffix != ".safetensors":
        return first.read_bytes() == second.read_bytes()
    with safe_open(first, "pt") as a, safe_open(second, "pt") as b:
        keys = sorted(a.keys())
        if a.metadata() != b.metadata() or keys != sorted(b.keys()):
            return False
        return all(torch.equal(a.get_tensor(key), b.get_tensor(key)) for key in keys)


def test_training_again_gives_identical_data_adapters_and_heads(demo, tmp_path):
    """Determinism of the demo's own rules: one task's data and adapter made again in a copy of the run."""
    copy = shutil.copytree(demo, tmp_path / "copy", symlinks=True)
    task, resources = "negation", Path("resources") / SUITE
    files = [
        resources / "data" / task / "train.safetensors",
        resources / "adapters" / task / "adapter_model.safetensors",
        resources / "adapters" / task / "adapter_config.json",
        resources / "heads" / f"{task}.safetensors",
    ]
    targets = [str(resources / "adapters" / task), str(resources / "heads" / f"{task}.safetensors")]
    snakemake(copy, *targets, "--forcerun", "demo_text_task_data", "demo_text_finetune")
    for path in files:
        assert (copy / path).stat().st_mtime > (demo / path).stat().st_mtime, path  # made again
        assert _same_content(copy / path, demo / path), path
