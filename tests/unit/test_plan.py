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
    plans = build_plan(CONFIG)
    for name, plan in plans.items():
        # a tuned two-branch merge reads the bases when the method or one of its branch methods does
        methods = [name, *plan.branches.values()]
        assert plan.uses_decomposition == any(get_method(method).uses_decomposition for method in methods), name
    assert plans["mix"].uses_decomposition and not get_method("mix").uses_decomposition  # Table 8's KnOTS-TIES branch


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
    assert list(plans) == list(CONFIG["merge"]["methods"]) and not plans["knots_ties"].branches


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
        (lambda m: m["methods"]["hybrid"].update(lambdas=[1.0]), "merge.methods.hybrid.lambdas"),
        (lambda m: m["methods"]["ties"].update(order=["top_k", "lam"]), "merge.methods.ties.order"),
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


# -- defaults outside the grid and the joint search's own walk ------------------------------------------------------

KNOTS_DARE = {  # KnOTS's per-task DARE search: p descending, held at 1e-5 (no grid value) while λ is swept
    "seeds": [0, 1, 2],
    "grid": {"drop_p": [0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]},
    "fixed": {"top_k": 100},
    "defaults": {"drop_p": 1.0e-5},
    "order": ["lam", "drop_p"],
}


def dare_point(drop_p: float, seed: int, top_k: float = 100) -> str:
    return point_name({"drop_p": drop_p, "seed": seed, "top_k": top_k})


def test_a_default_outside_the_grid_adds_the_merges_the_greedy_search_holds_it_at():
    config = copy.deepcopy(CONFIG)
    config["merge"]["methods"]["dare_ties"] = KNOTS_DARE
    dare = build_plan(config)["dare_ties"]
    grid_points = [dare_point(p, seed) for p in KNOTS_DARE["grid"]["drop_p"] for seed in (0, 1, 2)]
    # the grid first (each point's evaluation job stays where it was), then the λ sweep's points at p = 1e-5
    assert list(dare.points) == [*grid_points, *(dare_point(1e-5, seed) for seed in (0, 1, 2))]
    assert len(dare.points) == 33 and list(dare.points)[-1] == "drop_p~1e-05_seed~2_top_k~100"
    assert dare.points["drop_p~1e-05_seed~0_top_k~100"] == {"top_k": 100, "drop_p": 1e-5, "seed": 0}
    spec = dare.search_spec()
    # the full-grid argmax ranges over the grid only; the default reaches the search as the greedy walk's default
    assert spec["grids"]["drop_p"] == KNOTS_DARE["grid"]["drop_p"] and spec["defaults"]["drop_p"] == 1e-5
    assert dare.search_spec(joint=True) == spec  # no joint block: the joint search walks the same way


def test_each_sweep_adds_the_points_with_the_later_parameters_at_their_defaults():
    config = copy.deepcopy(CONFIG)
    config["merge"]["methods"]["dare_ties"] = {
        "seeds": [0],
        "grid": {"drop_p": [0.5, 0.1], "top_k": [10, 100]},
        "defaults": {"drop_p": 1e-5, "top_k": 30},
        "order": ["lam", "drop_p", "top_k"],
    }
    points = list(build_plan(config)["dare_ties"].points)
    grid = [dare_point(p, 0, k) for p in (0.5, 0.1) for k in (10, 100)]
    # λ at (1e-5, 30); then p swept at top_k 30; the top_k sweep stays on the grid
    extra = [dare_point(1e-5, 0, 30), dare_point(0.5, 0, 30), dare_point(0.1, 0, 30)]
    assert points == [*grid, *extra]


def test_a_joint_block_gives_the_joint_search_its_own_walk_over_the_same_points():
    config = copy.deepcopy(CONFIG)
    ties = config["merge"]["methods"]["ties"]
    ties["joint"] = {"grid": {"top_k": [100, 50, 20]}, "defaults": {"top_k": 50}}
    plan = build_plan(config)["ties"]
    assert plan.search_spec() == build_plan(CONFIG)["ties"].search_spec()  # the per-task search is unchanged
    joint = plan.search_spec(joint=True)
    assert joint["grids"] == {"lam": CONFIG["merge"]["lambdas"], "top_k": [100, 50, 20]}
    assert joint["defaults"] == {"top_k": 50} and joint["order"] == ["lam", "top_k"]
    assert list(plan.points) == list(build_plan(CONFIG)["ties"].points)  # 50 is a grid value: no merge added
    ties["joint"] = {"grid": {"top_k": [100, 50, 20, 10]}, "defaults": {"top_k": 30}, "order": ["lam", "top_k"]}
    plan = build_plan(config)["ties"]
    assert list(plan.points) == [f"top_k~{k}" for k in ties["grid"]["top_k"]] + ["top_k~30"]
    assert plan.search_spec(joint=True)["grids"]["top_k"] == [100, 50, 20, 10]


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda m: m["ties"].update(joint={"grid": {"top_k": [100, 30]}}), "ties.joint.grid.top_k", r"\[30\]"),
        (lambda m: m["ties"].update(joint={"grid": {"drop_p": [0.5]}}), "ties.joint.grid", "not swept"),
        (lambda m: m["ties"].update(joint={"order": ["top_k"]}), "ties.joint.order", "must contain 'lam'"),
        (lambda m: m["ties"].update(joint={"order": ["lam"]}), "ties.joint.grid", "missing from"),
        (lambda m: m["ties"].update(joint={"order": ["top_k", "lam"]}), "ties.joint.order", "'lam' must come first"),
        (lambda m: m["hybrid"].update(joint={"order": ["alpha", "lam"]}), "hybrid.joint.order", "tuned branches"),
        (lambda m: m["ties"].update(joint={"defaults": {"top_k": 0}}), "ties.joint.defaults.top_k", r"\(0, 100\]"),
        (lambda m: m["dare_ties"]["defaults"].update(drop_p=1.0), "dare_ties.defaults.drop_p", r"\[0, 1\)"),
        (lambda m: m["dare_ties"]["defaults"].update(drop_p="1e-5"), "dare_ties.defaults.drop_p", "not a number"),
        (lambda m: m["ties"]["defaults"].update(drop_p=0.5), "ties.defaults.drop_p", "not swept"),
        (lambda m: m["hybrid"].update(defaults={"alpha": 1.5}), "hybrid.defaults.alpha", r"\[0, 1\]"),
    ],
)
def test_bad_defaults_and_joint_blocks_name_their_key(edit, key, problem):
    config = copy.deepcopy(CONFIG)
    edit(config["merge"]["methods"])
    with pytest.raises(ConfigError, match=f"config key 'merge.methods.{key}': .*{problem}"):
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
