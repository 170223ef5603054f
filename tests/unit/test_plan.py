"""The experiment plan built from a workflow config: merge points, search specs, seeds, code hashes."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loramerge.methods import METHODS
from loramerge.repro.plan import (
    DECOMPOSITION_METHODS,
    ConfigError,
    build_plan,
    code_hash,
    derive_seed,
    finetune_settings,
    hybrid_branch_params,
    point_name,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_decomposition_methods_match_the_registry():
    assert {name for name, method in METHODS.items() if method.uses_decomposition} == DECOMPOSITION_METHODS


def test_point_names_spell_each_number_once():
    assert point_name({"top_k": 20}) == point_name({"top_k": 20.0}) == "top_k~20"
    assert point_name({"top_k": 100, "drop_p": 0.5, "seed": 0}) == "drop_p~0.5_seed~0_top_k~100"
    assert point_name({}) == "default"


def test_plan_sweeps_the_grid_with_fixed_values_and_searches_lambda_first():
    plans = build_plan(CONFIG)
    dare = plans["dare_ties"]
    assert [point["drop_p"] for point in dare.points.values()] == [0.1, 0.5, 0.9]
    assert all(point["top_k"] == 100 and point["seed"] == 0 for point in dare.points.values())
    assert dare.search_spec()["grids"]["lam"] == CONFIG["merge"]["lambdas"]
    assert plans["ta"].lambdas == CONFIG["merge"]["methods"]["ta"]["lambdas"]
    hybrid = plans["hybrid"]
    assert list(hybrid.points) == [f"alpha~{alpha:g}" for alpha in CONFIG["merge"]["hybrid"]["alphas"]]
    assert hybrid.lambdas == [1.0] and hybrid.uses_decomposition


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda m: m["methods"]["ties"].update(order=["top_k"]), "merge.methods.ties.order"),
        (lambda m: m["methods"]["ties"]["grid"].update(drop_p=[0.5]), "merge.methods.ties.grid"),
        (lambda m: m["methods"]["ties"].update(defaults={}), "merge.methods.ties.defaults"),
        (lambda m: m["methods"]["dare_ties"]["fixed"].update(drop_p=0.3), "merge.methods.dare_ties.fixed"),
        (lambda m: m["methods"].pop("knots_ties"), "merge.hybrid"),
    ],
)
def test_inconsistent_settings_name_their_key(edit, key):
    config = copy.deepcopy(CONFIG)
    edit(config["merge"])
    with pytest.raises(ConfigError, match=f"config key '{key}"):
        build_plan(config)


def test_per_task_overrides_apply_to_that_task_only():
    config = copy.deepcopy(CONFIG)
    config["demo"]["finetune"]["per_task"] = {"shapes": {"steps": 7}}
    assert finetune_settings(config, "shapes")["steps"] == 7
    assert finetune_settings(config, "digits")["steps"] == CONFIG["demo"]["finetune"]["steps"]
    assert "per_task" not in finetune_settings(config, "digits")


def test_derived_seeds_differ_per_stream_and_repeat():
    assert derive_seed(0, "data", "digits") == derive_seed(0, "data", "digits")
    assert (
        len({derive_seed(0, "data", "digits"), derive_seed(0, "data", "shapes"), derive_seed(1, "data", "digits")}) == 3
    )


def test_code_hash_follows_content_not_location(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "pkg").mkdir(parents=True)
        (tmp_path / name / "pkg" / "m.py").write_text("x = 1\n")
    first, second = (code_hash([tmp_path / name / "pkg"]) for name in ("a", "b"))
    assert first == second
    (tmp_path / "b" / "pkg" / "m.py").write_text("x = 2\n")
    assert code_hash([tmp_path / "b" / "pkg"]) != first
    with pytest.raises(ConfigError, match="no library code"):
        code_hash([tmp_path / "missing"])


def test_hybrid_branches_take_the_chosen_settings():
    selections = {
        "knots_ties": {"grid": {"params": {"lam": 0.4, "top_k": 20}}, "greedy": {"params": {"lam": 0.6, "top_k": 10}}},
        "cur_ties": {"grid": {"params": {"lam": 0.8, "top_k": 100}}, "greedy": {"params": {"lam": 0.2, "top_k": 50}}},
    }
    assert hybrid_branch_params(selections, "grid") == {
        "svd.lam": 0.4,
        "svd.top_k": 20,
        "cur.lam": 0.8,
        "cur.top_k": 100,
    }
    assert hybrid_branch_params(selections, "greedy")["cur.top_k"] == 50


def test_importing_the_plan_does_not_import_torch():
    code = "import sys, loramerge.repro.plan; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
