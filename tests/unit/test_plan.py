"""The experiment plan built from a workflow config: merge points, search specs, seeds, code hashes."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loramerge.methods import get_method
from loramerge.repro.plan import (
    ConfigError,
    build_plan,
    derive_seed,
    point_name,
    tuned_branch_params,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_plans_take_what_a_merge_needs_from_the_registry():
    for name, plan in build_plan(CONFIG).items():
        assert plan.uses_decomposition == get_method(name).uses_decomposition, name


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
    alphas = CONFIG["merge"]["methods"]["hybrid"]["grid"]["alpha"]
    assert list(hybrid.points) == [f"alpha~{alpha:g}" for alpha in alphas]
    assert hybrid.lambdas == [1.0] and hybrid.uses_decomposition
    assert hybrid.branches == {"svd": "knots_ties", "cur": "cur_ties"}
    assert hybrid.search_spec() == {
        "order": ["alpha"],
        "grids": {"alpha": alphas, "lam": [1.0]},
        "defaults": {"lam": 1.0},
    }
    assert list(plans)[-1] == "hybrid" and not plans["knots_ties"].branches


def test_mix_with_tuned_branches_is_planned_like_the_hybrid():
    config = copy.deepcopy(CONFIG)
    config["merge"]["methods"]["mix"] = {
        "branches": "tuned",
        "fixed": {"first": "knots_ties", "second": "ties"},
        "grid": {"alpha": [0.0, 0.5, 1.0]},
        "order": ["alpha"],
    }
    mix = build_plan(config)["mix"]
    assert mix.branches == {"first": "knots_ties", "second": "ties"}
    assert mix.lambdas == [1.0] and mix.uses_decomposition  # its knots_ties branch reads the cached bases
    assert [point["alpha"] for point in mix.points.values()] == [0.0, 0.5, 1.0]
    assert all(point["first"] == "knots_ties" and point["second"] == "ties" for point in mix.points.values())
    untuned = {"fixed": {"first": "ta", "second": "ties"}, "grid": {"alpha": [0.5]}, "order": ["lam", "alpha"]}
    config["merge"]["methods"]["mix"] = untuned
    config["merge"]["methods"]["mix"]["defaults"] = {"alpha": 0.5}
    assert build_plan(config)["mix"].branches == {}
    assert not build_plan(config)["mix"].uses_decomposition  # neither ta nor ties reads the bases


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda m: m["methods"]["ties"].update(order=["top_k"]), "merge.methods.ties.order"),
        (lambda m: m["methods"]["ties"]["grid"].update(drop_p=[0.5]), "merge.methods.ties.grid"),
        (lambda m: m["methods"]["ties"].update(defaults={}), "merge.methods.ties.defaults"),
        (lambda m: m["methods"]["dare_ties"]["fixed"].update(drop_p=0.3), "merge.methods.dare_ties.fixed"),
        (lambda m: m["methods"].pop("knots_ties"), "merge.methods.hybrid.branches"),
        (lambda m: m["methods"]["hybrid"].pop("branches"), "merge.methods.hybrid.branches"),
        (lambda m: m["methods"]["hybrid"].update(order=["lam", "alpha"]), "merge.methods.hybrid.order"),
        (lambda m: m["methods"]["ties"].update(branches="tuned"), "merge.methods.ties.branches"),
        (lambda m: m["methods"].update(magic_ties={"order": ["lam"]}), "merge.methods.magic_ties"),
        (lambda m: m["methods"]["ta"].update(order=["lam", "top_k"]), "merge.methods.ta.order"),
        (
            lambda m: m["methods"].update(mix={"branches": "tuned", "fixed": {"first": "ta"}, "order": ["alpha"]}),
            "merge.methods.mix.fixed.second",
        ),
    ],
)
def test_inconsistent_settings_name_their_key(edit, key):
    config = copy.deepcopy(CONFIG)
    edit(config["merge"])
    with pytest.raises(ConfigError, match=f"config key '{key}"):
        build_plan(config)


def test_derived_seeds_differ_per_stream_and_repeat():
    assert derive_seed(0, "data", "digits") == derive_seed(0, "data", "digits")
    assert (
        len({derive_seed(0, "data", "digits"), derive_seed(0, "data", "shapes"), derive_seed(1, "data", "digits")}) == 3
    )


def test_hybrid_branches_take_the_chosen_settings():
    selections = {
        "knots_ties": {"grid": {"params": {"lam": 0.4, "top_k": 20}}, "greedy": {"params": {"lam": 0.6, "top_k": 10}}},
        "cur_ties": {"grid": {"params": {"lam": 0.8, "top_k": 100}}, "greedy": {"params": {"lam": 0.2, "top_k": 50}}},
    }
    hybrid = build_plan(CONFIG)["hybrid"]
    branch_params = hybrid.facts.branch_params

    def chosen(rule):
        return {method: selection[rule]["params"] for method, selection in selections.items()}

    assert tuned_branch_params(hybrid.branches, branch_params, chosen("grid")) == {
        "svd.lam": 0.4,
        "svd.top_k": 20,
        "cur.lam": 0.8,
        "cur.top_k": 100,
    }
    assert tuned_branch_params(hybrid.branches, branch_params, chosen("greedy"))["cur.top_k"] == 50
    assert tuned_branch_params({}, branch_params, chosen("grid")) == {}  # a method merged as configured


def test_importing_the_plan_does_not_import_torch():
    code = "import sys, loramerge.repro.plan; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
