"""Selection: KnOTS normalization, the greedy linear search against a brute-force re-implementation, the grid argmax."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from loramerge.repro.plan import build_plan
from loramerge.repro.search import (
    SelectionError,
    build_setting_table,
    evaluation_files,
    greedy_select,
    grid_select,
    load_evaluations,
    load_finetuned,
    normalization_base,
    normalize,
    select_method,
)

ROOT = Path(__file__).resolve().parents[2]

FINETUNED = {"digits": {"test": 0.8, "val": 0.9}, "letters": {"test": 0.5, "val": 0.4}}


def evaluation(method: str, point: dict, scores: dict, tasks=("digits", "letters"), splits=("val", "test")) -> dict:
    """An evaluation dict whose records give every task `correct` = scores[lam] (per split if a dict) out of 1000."""
    records = []
    for lam, correct in scores.items():
        for split in splits:
            value = correct[split] if isinstance(correct, dict) else correct
            for task in tasks:
                records.append(
                    {
                        "lam": lam,
                        "task": task,
                        "split": split,
                        "correct": value,
                        "total": 1000,
                        "accuracy": round(value / 1000, 2),
                    }
                )
    return {"method": method, "point": point, "records": records}


def one_task_table(score_of: dict[tuple, int], names: tuple[str, ...]):
    """A table with one task whose fine-tuned test accuracy is 1, so a setting's score is 100·correct/1000."""
    points: dict[tuple, dict] = {}
    for values, correct in score_of.items():
        setting = dict(zip(names, values, strict=True))
        lam = setting.pop("lam")
        points.setdefault(tuple(sorted(setting.items())), {})[lam] = correct
    evaluations = [evaluation("m", dict(point), scores, tasks=("t",)) for point, scores in points.items()]
    return build_setting_table(evaluations, {"t": {"test": 1.0}})


# -- normalization -------------------------------------------------------------------------------------------------


def test_normalization_is_mean_of_per_task_ratios():
    scores = normalize({"a": 0.5, "b": 0.9}, {"a": 1.0, "b": 0.6})
    assert scores.normalized == pytest.approx({"a": 50.0, "b": 150.0})
    assert scores.mean == pytest.approx(100.0)  # the ratio of means would be 100 · 0.7 / 0.8 = 87.5
    assert scores.mean != pytest.approx(87.5)


def test_validation_is_normalized_by_finetuned_test_accuracy():
    table = build_setting_table([evaluation("ta", {}, {0.5: {"val": 720, "test": 400}})], FINETUNED)
    val = table.lookup({"lam": 0.5}, "val")
    test = table.lookup({"lam": 0.5}, "test")
    # digits: 100·0.72/0.8 = 90, letters: 100·0.72/0.5 = 144 → mean 117 (not 0.72/0.9 and 0.72/0.4)
    assert val.normalized == pytest.approx({"digits": 90.0, "letters": 144.0})
    assert val.mean == pytest.approx(117.0)
    assert test.normalized == pytest.approx({"digits": 50.0, "letters": 80.0})
    assert val.accuracy == {"digits": 0.72, "letters": 0.72}  # correct/total, not the rounded 0.72 by chance


def test_base_split_can_be_chosen():
    table = build_setting_table([evaluation("ta", {}, {0.5: 720})], FINETUNED, base_split="val")
    assert table.lookup({"lam": 0.5}, "val").normalized == pytest.approx({"digits": 80.0, "letters": 180.0})


def test_accuracy_prefers_correct_over_total():
    ev = evaluation("ta", {}, {0.5: 333})
    table = build_setting_table([ev], {"digits": {"test": 1.0}, "letters": {"test": 1.0}})
    assert table.lookup({"lam": 0.5}, "val").accuracy["digits"] == 0.333  # records say 0.33


def test_missing_task_is_an_error_naming_the_setting():
    ev = evaluation("knots_ties", {"top_k": 20}, {0.5: 700}, tasks=("digits",))
    with pytest.raises(SelectionError, match=r"lam=0\.5, top_k=20.*letters"):
        build_setting_table([ev], FINETUNED)


def test_mixed_methods_and_conflicting_duplicates_are_errors():
    with pytest.raises(SelectionError, match="mixed"):
        build_setting_table([evaluation("ta", {}, {0.5: 1}), evaluation("ties", {}, {0.5: 1})], FINETUNED)
    with pytest.raises(SelectionError, match="two different"):
        build_setting_table([evaluation("ta", {}, {0.5: 1}), evaluation("ta", {}, {0.5: 2})], FINETUNED)


def test_loaders_read_workflow_files(tmp_path: Path):
    for task, splits in FINETUNED.items():
        records = [{"split": s, "correct": round(a * 300), "total": 300, "accuracy": a} for s, a in splits.items()]
        (tmp_path / f"ft_{task}.json").write_text(json.dumps({"task": task, "records": records}))
    (tmp_path / "ev.json").write_text(json.dumps(evaluation("ta", {}, {0.5: 700})))
    finetuned = load_finetuned(sorted(tmp_path.glob("ft_*.json")))
    assert list(finetuned) == ["digits", "letters"]
    for task, splits in FINETUNED.items():
        assert finetuned[task] == pytest.approx(splits)
    (loaded,) = load_evaluations([tmp_path / "ev.json"])
    assert loaded["method"] == "ta" and loaded["point"] == {}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SelectionError, match=r"bad\.json"):
        load_evaluations([tmp_path / "bad.json"])


# -- greedy linear search --------------------------------------------------------------------------------------------


def brute_force_greedy(score, order, grids, defaults, carry_best=False):
    """Index-walking re-implementation: advance along each grid while the next value scores at least the best."""
    state = dict(defaults)
    visited = []
    previous_best = None
    for name in order:
        values = list(grids[name])
        scores = []
        position = 0
        while position < len(values):
            s = score({**state, name: values[position]})
            visited.append((name, values[position], s))
            floor = max(scores) if scores else (previous_best if carry_best and previous_best is not None else None)
            if floor is not None and s < floor:
                break
            scores.append(s)
            position += 1
        if scores:
            # ≥ means the winner is the last value kept before the stop
            state[name] = values[len(scores) - 1]
            previous_best = scores[-1]
    return state, visited


@pytest.mark.parametrize("carry_best", [False, True])
def test_greedy_matches_brute_force_on_random_tables(carry_best: bool):
    rng = random.Random(1234)
    grids = {"lam": [0.1, 0.2, 0.3, 0.4, 0.5], "top_k": [10, 20, 30, 40]}
    names = ("lam", "top_k")
    early_stops = ties_kept = runs_where_default_kept = 0
    for _ in range(300):
        # few distinct levels, so ties (kept by ≥) and early stops both happen often
        levels = rng.choice([3, 5, 50])
        score_of = {values: rng.randrange(levels) * 10 for values in itertools.product(*grids.values())}
        order = rng.choice([["lam", "top_k"], ["top_k", "lam"]])
        defaults = {"lam": rng.choice(grids["lam"]), "top_k": rng.choice(grids["top_k"])}
        table = one_task_table(score_of, names)

        def score(params, table=table):
            return table.lookup(params, "val").mean

        result = greedy_select(table, order, grids, defaults, carry_best_across_params=carry_best)
        expected, visited = brute_force_greedy(score, order, grids, defaults, carry_best=carry_best)
        assert result.params == expected
        assert [(step["param"], step["value"], step["score"]) for step in result.path] == visited
        assert result.score == score(expected)
        early_stops += sum(not step["kept"] for step in result.path)
        ties_kept += sum(step["kept"] and step["compared_with"] == step["score"] for step in result.path)
        second_sweep = [step for step in result.path if step["param"] == order[1]]
        runs_where_default_kept += not second_sweep[0]["kept"]
    assert early_stops > 50 and ties_kept > 50
    if carry_best:
        assert runs_where_default_kept > 0  # the carried-over best did stop some second sweeps at their first value


def test_greedy_stops_at_first_non_improvement_and_differs_from_grid():
    # λ sweep: 50, 40 (stop), 90 never seen; the grid argmax is λ=0.3
    table = one_task_table({(0.1,): 500, (0.2,): 400, (0.3,): 900}, ("lam",))
    grids = {"lam": [0.1, 0.2, 0.3]}
    result = greedy_select(table, ["lam"], grids, {})
    assert result.params == {"lam": 0.1}
    assert [step["value"] for step in result.path] == [0.1, 0.2]
    assert [step["kept"] for step in result.path] == [True, False]
    assert grid_select(table, ["lam"], grids, {}) == {"lam": 0.3}


def test_greedy_equal_scores_let_the_later_value_win_and_grid_keeps_the_first():
    table = one_task_table({(0.1,): 500, (0.2,): 700, (0.3,): 700, (0.4,): 600}, ("lam",))
    grids = {"lam": [0.1, 0.2, 0.3, 0.4]}
    assert greedy_select(table, ["lam"], grids, {}).params == {"lam": 0.3}
    assert grid_select(table, ["lam"], grids, {}) == {"lam": 0.2}


def test_first_value_of_a_sweep_is_compared_as_in_the_knots_scripts():
    # λ is tuned at the default top_k=20 and wins with 80; the top_k sweep's first value (10) scores 60.
    scores = {(0.5, 20): 800, (0.5, 10): 600, (0.5, 30): 700, (0.5, 40): 650}
    table = one_task_table(scores, ("lam", "top_k"))
    grids = {"lam": [0.5], "top_k": [10, 30, 40]}
    defaults = {"lam": 0.1, "top_k": 20}
    # The scripts reset best to 0 per parameter: 10 is kept (60 ≥ 0), 30 kept (70 ≥ 60), 40 stops (65 < 70).
    knots = greedy_select(table, ["lam", "top_k"], grids, defaults)
    assert knots.params == {"lam": 0.5, "top_k": 30}
    assert [s["compared_with"] for s in knots.path] == [None, None, 60.0, 70.0]
    # Carrying the best over: 60 < 80 stops the sweep at once and top_k keeps its default 20.
    carried = greedy_select(table, ["lam", "top_k"], grids, defaults, carry_best_across_params=True)
    assert carried.params == {"lam": 0.5, "top_k": 20}
    assert [s["value"] for s in carried.path] == [0.5, 10]
    # The grid over the configured values never sees the default top_k=20.
    assert grid_select(table, ["lam", "top_k"], grids, defaults) == {"lam": 0.5, "top_k": 30}


def test_missing_setting_is_an_error_naming_it():
    table = one_task_table({(0.1, 10): 500, (0.1, 20): 600, (0.2, 10): 700}, ("lam", "top_k"))
    grids = {"lam": [0.1, 0.2], "top_k": [10, 20]}
    with pytest.raises(SelectionError, match=r"lam=0\.2, top_k=20.*not evaluated"):
        greedy_select(table, ["top_k", "lam"], grids, {"lam": 0.1, "top_k": 10})
    with pytest.raises(SelectionError, match=r"lam=0\.2, top_k=20"):
        grid_select(table, ["lam", "top_k"], grids, {})
    assert grid_select(table, ["lam", "top_k"], grids, {}, allow_missing=True) == {"lam": 0.2, "top_k": 10}


def test_grid_ties_follow_product_order():
    scores = {(lam, k): 500 for lam in (0.1, 0.2) for k in (10, 20)}
    table = one_task_table(scores, ("lam", "top_k"))
    grids = {"lam": [0.2, 0.1], "top_k": [20, 10]}
    assert grid_select(table, ["lam", "top_k"], grids, {}) == {"lam": 0.2, "top_k": 20}
    assert grid_select(table, ["top_k", "lam"], grids, {}) == {"lam": 0.2, "top_k": 20}


def test_float_spellings_of_grid_values_match():
    table = one_task_table({(0.3,): 500, (0.7,): 600}, ("lam",))
    grids = {"lam": [0.1 + 0.2, 0.7000000000000001]}
    assert grid_select(table, ["lam"], grids, {}) == {"lam": 0.7}


def test_parameters_outside_the_order_are_fixed():
    evaluations = [
        evaluation("dare_ties", {"drop_p": p, "top_k": 100, "seed": seed}, {0.5: 500 + seed, 1.0: 600 + 100 * p})
        for p in (0.1, 0.5)
        for seed in (0, 1)
    ]
    table = build_setting_table(evaluations, {"digits": {"test": 1.0}, "letters": {"test": 1.0}})
    grids = {"lam": [0.5, 1.0], "drop_p": [0.1, 0.5]}
    with pytest.raises(SelectionError, match="'seed'"):
        grid_select(table, ["lam", "drop_p"], grids, {"top_k": 100})
    chosen = grid_select(table, ["lam", "drop_p"], grids, {"top_k": 100, "seed": 0})
    assert chosen == {"drop_p": 0.5, "lam": 1.0, "seed": 0, "top_k": 100}
    # top_k takes its only evaluated value; seed comes from defaults
    assert greedy_select(table, ["lam", "drop_p"], grids, {"seed": 1, "drop_p": 0.1}).params["seed"] == 1


# KnOTS's per-task DARE walk: λ swept at p = 1e-5 (no grid value), then p from 0.99 downwards.
KNOTS_P = [0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
P_SCORE = {0.99: 500, 0.9: 600, 0.8: 550, 0.7: 560, 0.6: 570, 0.5: 580, 0.4: 590, 0.3: 590, 0.2: 560, 0.1: 610}
LAM_OFFSET = {0.1: -100, 0.2: 0, 0.3: 100}


def knots_dare_table():
    """p on the grid scores P_SCORE + LAM_OFFSET (best: λ 0.3, p 0.1); at the default p = 1e-5, λ 0.2 wins with the
    highest score of all, which the grid argmax must not see."""
    scores = {(lam, p): P_SCORE[p] + offset for lam, offset in LAM_OFFSET.items() for p in KNOTS_P}
    scores.update({(0.1, 1e-5): 800, (0.2, 1e-5): 950, (0.3, 1e-5): 900})
    return one_task_table(scores, ("lam", "drop_p"))


def test_greedy_walks_the_dare_grid_descending_from_the_knots_default():
    table = knots_dare_table()
    grids = {"lam": list(LAM_OFFSET), "drop_p": KNOTS_P}
    result = greedy_select(table, ["lam", "drop_p"], grids, {"drop_p": 1e-5})
    # λ at p = 1e-5: 80, 95, 90 (stop) → 0.2; p at λ 0.2: 0.99 (50), 0.9 (60), 0.8 (55, stop) → 0.9
    assert [(s["params"]["drop_p"], s["value"], s["kept"]) for s in result.path[:3]] == [
        (1e-5, 0.1, True),
        (1e-5, 0.2, True),
        (1e-5, 0.3, False),
    ]
    assert result.params == {"lam": 0.2, "drop_p": 0.9}
    # the grid's order decides: walked ascending, the sweep stops after p 0.1 (61) at 0.2 (56)
    ascending = greedy_select(table, ["lam", "drop_p"], {**grids, "drop_p": KNOTS_P[::-1]}, {"drop_p": 1e-5})
    assert ascending.params == {"lam": 0.2, "drop_p": 0.1}
    # so does the default: held at the grid's first value 0.99, λ would walk on to 0.3
    assert greedy_select(table, ["lam", "drop_p"], grids, {"drop_p": 0.99}).params == {"lam": 0.3, "drop_p": 0.9}
    # the full-grid argmax ranges over the grid product only, never the default's settings (95 at p = 1e-5)
    assert grid_select(table, ["lam", "drop_p"], grids, {"drop_p": 1e-5}) == {"lam": 0.3, "drop_p": 0.1}


# -- select_method -------------------------------------------------------------------------------------------------


def test_select_method_reports_both_choices_with_test_numbers(tmp_path: Path):
    val = {(10, 0.5): 500, (10, 1.0): 450, (20, 0.5): 520, (20, 1.0): 900}
    test = {key: 1000 - score for key, score in val.items()}
    paths = []
    for top_k in (10, 20):
        scores = {lam: {"val": val[(top_k, lam)], "test": test[(top_k, lam)]} for lam in (0.5, 1.0)}
        path = tmp_path / f"knots_{top_k}.json"
        path.write_text(json.dumps(evaluation("knots_ties", {"top_k": top_k}, scores)))
        paths.append(path)
    finetuned = {"digits": {"test": 0.5, "val": 0.6}, "letters": {"test": 1.0, "val": 1.0}}
    args = (finetuned, ["lam", "top_k"], {"lam": [0.5, 1.0], "top_k": [10, 20]}, {"lam": 1.0, "top_k": 10})
    result = select_method(paths, *args).to_json()
    assert result["method"] == "knots_ties"
    assert result["settings_evaluated"] == 4
    # greedy: λ at top_k=10 → 0.5 (0.45 < 0.5 stops); top_k at λ=0.5: 10 then 20 (0.52) → {0.5, 20}
    assert result["greedy"]["params"] == {"lam": 0.5, "top_k": 20}
    assert result["grid"]["params"] == {"lam": 1.0, "top_k": 20}
    greedy_test = result["greedy"]["test"]
    assert greedy_test["accuracy"] == {"digits": 0.48, "letters": 0.48}
    assert greedy_test["per_task"] == pytest.approx({"digits": 96.0, "letters": 48.0})
    assert greedy_test["mean"] == pytest.approx(72.0)
    assert result["grid"]["val"]["mean"] == pytest.approx((180.0 + 90.0) / 2)
    assert [(s["params"], s["kept"]) for s in result["greedy_path"]] == [
        ({"lam": 0.5, "top_k": 10}, True),
        ({"lam": 1.0, "top_k": 10}, False),
        ({"lam": 0.5, "top_k": 10}, True),
        ({"lam": 0.5, "top_k": 20}, True),
    ]
    text = json.dumps(result, sort_keys=True)
    assert text == json.dumps(select_method(load_evaluations(paths), *args).to_json(), sort_keys=True)
    assert all(isinstance(v, float) for v in result["grid"]["test"]["per_task"].values())
    assert not math.isnan(result["greedy"]["val"]["mean"])


# -- the normalization base ----------------------------------------------------------------------------------------


def test_published_base_normalizes_by_the_published_percent_as_a_mean_of_ratios(tmp_path: Path):
    # digits: val 0.72 / published 0.90 = 80, letters: 0.72 / 0.48 = 150 → 115 (ratio of means: 72/69 ≈ 104.3)
    ev = evaluation("ta", {}, {0.5: {"val": 720, "test": 360}})
    published = {"digits": 90.0, "letters": 48.0, "unused": 50.0}
    result = select_method(
        [ev], FINETUNED, ["lam"], {"lam": [0.5]}, {}, normalize_by="published", published=published
    ).to_json()
    assert result["normalized_by"] == "published"
    assert result["normalization_base"] == pytest.approx({"digits": 90.0, "letters": 48.0})
    val = result["grid"]["val"]
    assert val["per_task"] == pytest.approx({"digits": 80.0, "letters": 150.0})
    assert val["mean"] == pytest.approx(115.0)
    assert val["mean"] != pytest.approx(100 * 0.72 / 0.69)
    assert result["grid"]["test"]["per_task"] == pytest.approx({"digits": 40.0, "letters": 75.0})
    measured = select_method([ev], FINETUNED, ["lam"], {"lam": [0.5]}, {}).to_json()
    assert measured["normalized_by"] == "measured"
    assert measured["normalization_base"] == pytest.approx({"digits": 80.0, "letters": 50.0})
    assert measured["grid"]["val"]["mean"] == pytest.approx(117.0)


def test_published_base_needs_every_task():
    with pytest.raises(SelectionError, match=r"published.*\['letters'\]"):
        normalization_base(FINETUNED, "published", {"digits": 90.0})
    with pytest.raises(SelectionError, match="percent"):
        normalization_base(FINETUNED, "published", {"digits": 0.9, "letters": 480.0})
    with pytest.raises(SelectionError, match="normalize_by"):
        normalization_base(FINETUNED, "typo")


# -- seed replicates -----------------------------------------------------------------------------------------------

SEEDS = (0, 1, 2)
REPLICATE_GRIDS = {"lam": [0.4, 0.6, 0.8], "drop_p": [0.1, 0.5, 0.9]}
REPLICATE_TASKS = ("a", "b", "c")
REPLICATE_FINETUNED = {"a": {"test": 0.8}, "b": {"test": 0.5}, "c": {"test": 0.9}}


def random_replicated_evaluations(
    rng: np.random.Generator, levels: int, tie: bool = False
) -> tuple[list[dict], np.ndarray]:
    """dare_ties over λ × drop_p × seed with random correct counts (out of 100) per task and split; with ``tie`` the
    last two λ, and the last two drop_p, score alike.

    Returns the evaluations and the counts as a dense array [seed, lam, drop_p, task, split (val, test)].
    """
    shape = (len(SEEDS), 3, 3, len(REPLICATE_TASKS), 2)
    correct = rng.integers(0, levels, size=shape) * (100 // levels)
    if tie:
        correct[:, 2] = correct[:, 1]
        correct[:, :, 2] = correct[:, :, 1]
    evaluations = []
    for s, seed in enumerate(SEEDS):
        for p, drop_p in enumerate(REPLICATE_GRIDS["drop_p"]):
            records = [
                {"lam": lam, "task": task, "split": split, "correct": int(correct[s, i, p, t, j]), "total": 100}
                for i, lam in enumerate(REPLICATE_GRIDS["lam"])
                for t, task in enumerate(REPLICATE_TASKS)
                for j, split in enumerate(("val", "test"))
            ]
            point = {"drop_p": drop_p, "seed": seed, "top_k": 100}
            evaluations.append({"method": "dare_ties", "point": point, "records": records})
    rng.shuffle(evaluations)  # file order must not matter
    return evaluations, correct


def test_seed_replicates_match_a_dense_brute_force():
    rng = np.random.default_rng(7)
    base = [REPLICATE_FINETUNED[task]["test"] for task in REPLICATE_TASKS]
    order = ["lam", "drop_p"]
    defaults = {"drop_p": 0.1, "top_k": 100}
    lams, drops = REPLICATE_GRIDS["lam"], REPLICATE_GRIDS["drop_p"]
    ties = 0
    for trial in range(40):
        # every other trial, two λ and two drop_p values score alike, so that the tie rules decide
        evaluations, correct = random_replicated_evaluations(rng, levels=[2, 50][trial % 2], tie=trial % 4 < 2)
        # The definition, densely: per seed, the mean over tasks of 100·acc/base; then the mean over seeds.
        normalized = np.array(
            [[[[[100.0 * (correct[s, i, p, t, j] / 100) / base[t] for j in range(2)] for t in range(3)]
               for p in range(3)] for i in range(3)] for s in range(3)]
        )  # fmt: skip
        per_seed_mean = np.array(
            [[[[math.fsum(normalized[s, i, p, :, j]) / 3 for j in range(2)] for p in range(3)] for i in range(3)]
             for s in range(3)]
        )  # fmt: skip
        score = {
            (lams[i], drops[p], split): math.fsum(per_seed_mean[:, i, p, j]) / 3
            for i in range(3)
            for p in range(3)
            for j, split in enumerate(("val", "test"))
        }

        def val_score(params, score=score):
            return score[(params["lam"], params["drop_p"], "val")]

        expected_greedy, _ = brute_force_greedy(val_score, order, REPLICATE_GRIDS, defaults)
        flat = [(val_score({"lam": lam, "drop_p": p}), lam, p) for lam in lams for p in drops]
        best = max(value for value, _, _ in flat)
        ties += sum(value == best for value, _, _ in flat) > 1
        _, grid_lam, grid_p = next(item for item in flat if item[0] == best)  # the first maximum in product order

        result = select_method(
            evaluations, REPLICATE_FINETUNED, order, REPLICATE_GRIDS, defaults, replicates={"seed": list(SEEDS)}
        ).to_json()
        assert result["replicates"] == {"seed": [0, 1, 2]}
        assert result["settings_evaluated"] == 9
        assert result["greedy"]["params"] == {**expected_greedy, "top_k": 100}
        assert result["grid"]["params"] == {"drop_p": grid_p, "lam": grid_lam, "top_k": 100}
        for rule in ("greedy", "grid"):
            chosen = result[rule]
            assert "seed" not in chosen["params"]
            i, p = lams.index(chosen["params"]["lam"]), drops.index(chosen["params"]["drop_p"])
            for j, split in enumerate(("val", "test")):
                got = chosen[split]
                assert got["mean"] == score[(lams[i], drops[p], split)]
                assert got["std"]["mean"] == pytest.approx(np.std(per_seed_mean[:, i, p, j], ddof=1))
                for t, task in enumerate(REPLICATE_TASKS):
                    assert got["per_task"][task] == pytest.approx(normalized[:, i, p, t, j].mean())
                    assert got["std"]["per_task"][task] == pytest.approx(np.std(normalized[:, i, p, t, j], ddof=1))
                    assert got["accuracy"][task] == pytest.approx(correct[:, i, p, t, j].mean() / 100)
                assert [run["seed"] for run in got["replicates"]] == list(SEEDS)
                assert [run["mean"] for run in got["replicates"]] == list(per_seed_mean[:, i, p, j])
                assert [run["per_task"]["b"] for run in got["replicates"]] == list(normalized[:, i, p, 1, j])
        assert [step["score"] for step in result["greedy_path"]] == [
            val_score(step["params"]) for step in result["greedy_path"]
        ]
        assert all("seed" not in step["params"] for step in result["greedy_path"])
        ties += sum(step["kept"] and step["compared_with"] == step["score"] for step in result["greedy_path"])
    assert ties > 10  # the tie rules (greedy: later equal value wins; grid: first maximum) were exercised


def test_without_replicates_the_seed_stays_a_fixed_parameter():
    rng = np.random.default_rng(0)
    evaluations, _ = random_replicated_evaluations(rng, levels=50)
    seed_one = [ev for ev in evaluations if ev["point"]["seed"] == 1]
    result = select_method(seed_one, REPLICATE_FINETUNED, ["lam", "drop_p"], REPLICATE_GRIDS, {"drop_p": 0.1}).to_json()
    assert result["grid"]["params"]["seed"] == 1
    assert "replicates" not in result and "std" not in result["grid"]["val"]
    assert sorted(result["grid"]["val"]) == ["accuracy", "mean", "per_task"]


def test_missing_or_unknown_replicates_are_errors_naming_the_setting():
    rng = np.random.default_rng(1)
    evaluations, _ = random_replicated_evaluations(rng, levels=50)
    args = (REPLICATE_FINETUNED, ["lam", "drop_p"], REPLICATE_GRIDS, {"drop_p": 0.1})
    lacking = [ev for ev in evaluations if not (ev["point"]["seed"] == 2 and ev["point"]["drop_p"] == 0.5)]
    with pytest.raises(SelectionError, match=r"drop_p=0\.5.*not evaluated for replicates \['\{seed=2\}'\]"):
        select_method(lacking, *args, replicates={"seed": [0, 1, 2]})
    with pytest.raises(SelectionError, match=r"seed=2.*not one of the replicates"):
        select_method(evaluations, *args, replicates={"seed": [0, 1]})
    with pytest.raises(SelectionError, match="'seed' must not also"):
        select_method(evaluations, *args[:3], {"drop_p": 0.1, "seed": 0}, replicates={"seed": [0, 1, 2]})
    one_seed = select_method(
        [ev for ev in evaluations if ev["point"]["seed"] == 0], *args, replicates={"seed": [0]}
    ).to_json()
    assert one_seed["grid"]["val"]["std"]["mean"] is None  # ddof=1 over one replicate is undefined
    assert json.loads(json.dumps(one_seed, allow_nan=False)) == one_seed


def test_evaluation_files_come_from_every_job_folder_in_point_order(tmp_path):
    first, second = tmp_path / "part0", tmp_path / "part1"
    for folder, names in ((first, ["top_k~50", "top_k~10"]), (second, ["top_k~20"])):
        folder.mkdir()
        for name in names:
            (folder / f"{name}.json").write_text("{}")
    assert [path.name for path in evaluation_files([second, first])] == [
        "top_k~10.json",
        "top_k~20.json",
        "top_k~50.json",
    ]
    (second / "top_k~50.json").write_text("{}")
    with pytest.raises(SelectionError, match="top_k~50' was also evaluated in"):
        evaluation_files([first, second])


# -- from the plan's spec to the selection ---------------------------------------------------------------------------


def test_the_plans_points_cover_the_greedy_walk_at_an_out_of_grid_default():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["merge"]["methods"]["dare_ties"] = {
        "seeds": [0, 1],
        "grid": {"drop_p": KNOTS_P},
        "fixed": {"top_k": 100},
        "defaults": {"drop_p": 1.0e-5},
        "order": ["lam", "drop_p"],
    }
    plan = build_plan(config)["dare_ties"]
    spec = plan.search_spec()
    lams = spec["grids"]["lam"]

    def scores(point):
        # λ's best is the grid's last at p = 1e-5 and its first elsewhere; the 1e-5 merges score best of all
        return {lam: 900 + i if point["drop_p"] == 1e-5 else P_SCORE[point["drop_p"]] - i for i, lam in enumerate(lams)}

    evaluations = [evaluation("dare_ties", point, scores(point)) for point in plan.points.values()]
    finetuned = {"digits": {"test": 1.0}, "letters": {"test": 1.0}}
    args = (finetuned, spec["order"], spec["grids"], spec["defaults"])
    result = select_method(evaluations, *args, replicates=spec["replicates"])
    assert result.settings_evaluated == len(lams) * (len(KNOTS_P) + 1)  # the seeds are merged into one setting
    assert {step.params["drop_p"] for step in result.greedy_path if step.param == "lam"} == {1e-5}
    assert result.greedy.params == {"drop_p": 0.9, "lam": lams[-1], "top_k": 100}
    assert result.grid.params == {"drop_p": 0.1, "lam": lams[0], "top_k": 100}
    on_grid = [ev for ev in evaluations if ev["point"]["drop_p"] != 1e-5]
    with pytest.raises(SelectionError, match=r"drop_p=1e-05.*not evaluated"):
        select_method(on_grid, *args, replicates=spec["replicates"])
