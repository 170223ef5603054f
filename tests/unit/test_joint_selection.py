"""Joint (union label space) selection: pooled Hits@k, the strict `>` of the authors' joint search, replicates, and
bad joint files."""

from __future__ import annotations

import itertools
import json
import random
import runpy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from loramerge.repro.plan import build_plan
from loramerge.repro.search import (
    SelectionError,
    build_joint_table,
    greedy_select,
    grid_select,
    load_evaluations,
    select_joint,
    select_method,
)

KS = [1, 3, 5]


def joint_evaluation(
    method: str, point: dict, hits: dict, totals: dict[str, int], splits=("val", "test"), ks=KS
) -> dict:
    """hits: lam -> task -> (h1, h3, h5) (a count per k of ``ks``), the same on every split unless a split -> ...
    dict is given per lam."""
    records = []
    for lam, by_task in hits.items():
        for split in splits:
            per_task = by_task.get(split, by_task) if "val" in by_task else by_task
            for task, counts in per_task.items():
                records.append(
                    {
                        "lam": lam,
                        "task": task,
                        "split": split,
                        "total": totals[task],
                        "hits": {str(k): count for k, count in zip(ks, counts, strict=True)},
                    }
                )
    return {"method": method, "point": point, "records": records}


def test_pooled_hits_weigh_tasks_by_their_samples_not_equally():
    # small: 90/100 at k=1, large: 100/1000 → pooled 190/1100 = 17.27 %, the mean of per-task rates would be 50 %
    ev = joint_evaluation(
        "ta", {}, {1.0: {"small": (90, 95, 100), "large": (100, 300, 500)}}, {"small": 100, "large": 1000}
    )
    result = select_joint([ev], ["lam"], {"lam": [1.0]}, {}, ks=KS, select_k=3).to_json()
    test = result["grid"]["test"]
    assert test["per_task"]["large"] == pytest.approx({"1": 10.0, "3": 30.0, "5": 50.0})
    assert test["per_task"]["small"] == pytest.approx({"1": 90.0, "3": 95.0, "5": 100.0})
    assert test["pooled"]["1"] == pytest.approx(100 * 190 / 1100)
    assert test["pooled"]["1"] != pytest.approx(50.0)
    assert test["pooled"] == pytest.approx({"1": 100 * 190 / 1100, "3": 100 * 395 / 1100, "5": 100 * 600 / 1100})
    assert test["total"] == {"large": 1000, "small": 100}
    assert result["ks"] == KS and result["select_k"] == 3 and result["tasks"] == ["large", "small"]


TOTALS = {"a": 100, "b": 300}


def by_hits3(scores: dict[float, int]) -> dict:
    """Per λ, hits such that the pooled Hits@3 is scores[λ] % (a and b share it) and Hits@1 runs the other way."""
    return {
        lam: {
            task: (max(0, total - total * pct // 100 - 1) // 2, total * pct // 100, total)
            for task, total in TOTALS.items()
        }
        for lam, pct in scores.items()
    }


def test_joint_greedy_stops_at_a_tie_where_the_per_task_search_goes_on():
    scores = {0.5: 60, 1.0: 60, 1.5: 70}
    ev = joint_evaluation("knots_ties", {"top_k": 20}, by_hits3(scores), TOTALS)
    grids = {"lam": [0.5, 1.0, 1.5]}
    joint = select_joint([ev], ["lam"], grids, {}, ks=KS, select_k=3).to_json()
    # > : 0.5 kept (60 > −inf), 1.0 ties (60 > 60 is false) and stops the sweep; 1.5 is never scored
    assert joint["greedy"]["params"] == {"lam": 0.5, "top_k": 20}
    assert [(s["value"], s["kept"]) for s in joint["greedy_path"]] == [(0.5, True), (1.0, False)]
    assert joint["grid"]["params"] == {"lam": 1.5, "top_k": 20}
    assert joint["greedy"]["val"]["pooled"]["3"] == pytest.approx(60.0)

    # the per-task search on the same scores keeps the tie (≥) and walks on to 1.5
    per_task = {
        "method": "knots_ties",
        "point": {"top_k": 20},
        "records": [
            {"lam": lam, "task": task, "split": split, "correct": pct, "total": 100}
            for lam, pct in scores.items()
            for task in TOTALS
            for split in ("val", "test")
        ],
    }
    finetuned = {task: {"test": 1.0} for task in TOTALS}
    assert select_method([per_task], finetuned, ["lam"], grids, {}).greedy.params == {"lam": 1.5, "top_k": 20}


def test_joint_selection_uses_select_k():
    # λ=0.5 is better at Hits@1, λ=1.0 at Hits@3
    hits = {0.5: {"a": (50, 60, 70), "b": (150, 180, 210)}, 1.0: {"a": (10, 80, 90), "b": (30, 240, 270)}}
    ev = joint_evaluation("ta", {}, hits, TOTALS)
    assert select_joint([ev], ["lam"], {"lam": [0.5, 1.0]}, {}, ks=KS, select_k=3).grid.params == {"lam": 1.0}
    assert select_joint([ev], ["lam"], {"lam": [0.5, 1.0]}, {}, ks=KS, select_k=1).grid.params == {"lam": 0.5}
    with pytest.raises(SelectionError, match="select_k=10"):
        select_joint([ev], ["lam"], {"lam": [0.5, 1.0]}, {}, ks=KS, select_k=10)


def brute_force_strict_greedy(score, order, grids, defaults):
    """Index-walking re-implementation of the joint search: advance while the next value is strictly better."""
    state = dict(defaults)
    for name in order:
        values, best, winner = list(grids[name]), None, state.get(name)
        for value in values:
            s = score({**state, name: value})
            if best is not None and not s > best:
                break
            best, winner = s, value
        state[name] = winner
    return state


def test_joint_greedy_matches_brute_force_on_random_tables():
    rng = random.Random(99)
    grids = {"lam": [0.2, 0.4, 0.6, 0.8], "top_k": [10, 20, 30]}
    stops_at_ties = 0
    for _ in range(200):
        levels = rng.choice([2, 4, 30])
        hits3 = {values: rng.randrange(levels) * (60 // levels) for values in itertools.product(*grids.values())}
        evaluations = []
        for top_k in grids["top_k"]:
            per_lam = {lam: {"a": (0, hits3[(lam, top_k)], 60), "b": (0, 0, 0)} for lam in grids["lam"]}
            evaluations.append(joint_evaluation("ties", {"top_k": top_k}, per_lam, {"a": 60, "b": 40}))
        table = build_joint_table(evaluations, ks=KS, select_k=3)
        order = rng.choice([["lam", "top_k"], ["top_k", "lam"]])
        defaults = {"lam": rng.choice(grids["lam"]), "top_k": rng.choice(grids["top_k"])}
        result = greedy_select(table, order, grids, defaults, strict=True)

        def score(params, table=table):
            return table.score(params, "val")

        assert result.params == brute_force_strict_greedy(score, order, grids, defaults)
        assert score(result.params) == pytest.approx(100 * hits3[(result.params["lam"], result.params["top_k"])] / 100)
        stops_at_ties += sum(not s["kept"] and s["score"] == s["compared_with"] for s in result.path)
        best = max(score({"lam": lam, "top_k": k}) for lam, k in itertools.product(*grids.values()))
        assert score(grid_select(table, ["lam", "top_k"], grids, {})) == best
    assert stops_at_ties > 30


def test_the_joint_search_walks_top_k_descending_from_30_and_stops_at_a_tie():
    # KnOTS's joint script: λ at top-K 30, then top-K from 100 down, keeping a value only if strictly better
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["merge"]["lambdas"] = [0.5, 1.0]
    ties = config["merge"]["methods"]["ties"]
    ties["grid"] = {"top_k": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]}  # the per-task walk: ascending from 20
    ties["joint"] = {"grid": {"top_k": ties["grid"]["top_k"][::-1]}, "defaults": {"top_k": 30}}
    plan = build_plan(config)["ties"]
    hits3 = {(0.5, k): 40 for k in ties["grid"]["top_k"]}
    hits3.update({(0.5, 20): 65, (0.5, 30): 60})
    at_one = {100: 50, 90: 55, 80: 55, 70: 58, 60: 40, 50: 40, 40: 40, 30: 70, 20: 61, 10: 62}
    hits3.update({(1.0, k): pct for k, pct in at_one.items()})
    evaluations = [
        joint_evaluation("ties", point, by_hits3({lam: hits3[(lam, point["top_k"])] for lam in (0.5, 1.0)}), TOTALS)
        for point in plan.points.values()
    ]

    def select(spec):
        return select_joint(evaluations, spec["order"], spec["grids"], spec["defaults"], ks=KS, select_k=3)

    joint = select(plan.search_spec(joint=True))
    # λ at 30: 60, 70 → 1.0; top-K at λ 1.0: 100 (50), 90 (55), 80 (55: a tie, not better, stops) → 90
    assert [(s.param, s.value, s.kept) for s in joint.greedy_path] == [
        ("lam", 0.5, True), ("lam", 1.0, True), ("top_k", 100, True), ("top_k", 90, True), ("top_k", 80, False),
    ]  # fmt: skip
    assert joint.greedy.params == {"lam": 1.0, "top_k": 90}
    assert joint.grid.params == {"lam": 1.0, "top_k": 30}
    # the per-task walk on the same numbers: λ at 20 keeps 0.5 (65, then 61), top-K up from 10: 40, 65, 60 → 20
    assert select(plan.search_spec()).greedy.params == {"lam": 0.5, "top_k": 20}


def test_joint_replicates_average_the_pooled_hits_over_seeds(tmp_path: Path):
    folder = tmp_path / "joint" / "dare_ties"
    folder.mkdir(parents=True)
    # seed 0: pooled Hits@3 at λ=0.5 is 40 %, at λ=1.0 70 %; seed 1: 80 % and 30 % → means 60 and 50
    pooled = {0: {0.5: 40, 1.0: 70}, 1: {0.5: 80, 1.0: 30}}
    for seed, scores in pooled.items():
        hits = {lam: {"a": (0, pct, 100), "b": (0, 3 * pct, 300)} for lam, pct in scores.items()}
        point = {"drop_p": 0.1, "seed": seed, "top_k": 100}
        path = folder / f"drop_p~0.1_seed~{seed}_top_k~100.json"
        path.write_text(json.dumps(joint_evaluation("dare_ties", point, hits, {"a": 100, "b": 300})))
    evaluations = load_evaluations(sorted(folder.glob("*.json")))
    result = select_joint(
        evaluations,
        ["lam"],
        {"lam": [0.5, 1.0]},
        {"drop_p": 0.1},
        ks=KS,
        select_k=3,
        tasks=["a", "b"],
        replicates={"seed": [0, 1]},
    ).to_json()
    assert result["grid"]["params"] == {"drop_p": 0.1, "lam": 0.5, "top_k": 100}
    val = result["grid"]["val"]
    assert val["pooled"]["3"] == pytest.approx(60.0)
    assert val["std"]["pooled"]["3"] == pytest.approx(28.2842712, rel=1e-6)  # sample std of 40 and 80
    assert val["per_task"]["b"]["3"] == pytest.approx(60.0)
    assert [run["pooled"]["3"] for run in val["replicates"]] == pytest.approx([40.0, 80.0])
    assert [run["seed"] for run in val["replicates"]] == [0, 1]
    assert val["total"] == {"a": 100, "b": 300}  # counts stay integers
    assert result["replicates"] == {"seed": [0, 1]}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["hits"].pop("5"), r"no hits for k = \[5\]"),
        (lambda r: r["hits"].update({"3": 2000}), "outside 0..total"),
        (lambda r: r["hits"].update({"1": 90, "3": 80}), "fewer hits at a larger k"),
        (lambda r: r.update(total=0), "positive integer 'total'"),
        (lambda r: r.pop("hits"), "no 'hits'"),
    ],
)
def test_bad_joint_records_are_errors_naming_the_file(tmp_path: Path, edit, message):
    ev = joint_evaluation("ta", {}, {1.0: {"a": (10, 20, 30), "b": (1, 2, 3)}}, TOTALS)
    edit(ev["records"][0])
    path = tmp_path / "point.json"
    path.write_text(json.dumps(ev))
    with pytest.raises(SelectionError, match=rf"point\.json.*{message}"):
        select_joint(load_evaluations([path]), ["lam"], {"lam": [1.0]}, {}, ks=KS, select_k=3)


def test_a_missing_task_is_an_error_naming_the_setting():
    ev = joint_evaluation("ta", {}, {1.0: {"a": (10, 20, 30)}}, TOTALS)
    with pytest.raises(SelectionError, match=r"lam=1\.0.*tasks \['b'\]"):
        build_joint_table([ev], ks=KS, select_k=3, tasks=["a", "b"])


# -- the workflow scripts: joint evaluation files → joint searches → Tables 5 and 9 ------------------------------------

ROOT = Path(__file__).resolve().parents[2]
VIT_TASKS = ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]


class Files(list):
    """What a script sees as ``snakemake.input``/``output``: the files in order, the named ones also as attributes."""

    def __init__(self, *files: object, **named: object) -> None:
        named = {name: [*map(str, value)] if isinstance(value, list) else str(value) for name, value in named.items()}
        flat = [item for value in named.values() for item in (value if isinstance(value, list) else [value])]
        super().__init__([*map(str, files), *flat])
        self.__dict__.update(named)


def run_script(name: str, tmp_path: Path, *, input: Files, output: Files, **params) -> None:
    job = SimpleNamespace(
        input=input, output=output, params=SimpleNamespace(**params), log=[str(tmp_path / f"{name}.log")], threads=1
    )
    runpy.run_path(str(ROOT / "scripts" / name), init_globals={"snakemake": job})


@pytest.mark.parametrize("ks", [KS, [1, 3, 5, 10]])  # KnOTS's scripts count Hits@10 too; the paper prints no Hits@10
def test_joint_scripts_from_evaluation_files_to_tables_5_and_9(tmp_path: Path, ks: list[int]):
    totals = {task: 100 * (i + 1) for i, task in enumerate(VIT_TASKS)}
    specs = {
        "ties": ({"order": ["lam", "top_k"], "grids": {"lam": [0.5, 1.0], "top_k": [20, 30]},
                  "defaults": {"top_k": 20}},
                 [{"top_k": 20}, {"top_k": 30}]),
        "dare_ties": ({"order": ["lam"], "grids": {"lam": [0.5, 1.0]}, "defaults": {"drop_p": 0.1, "top_k": 100},
                       "replicates": {"seed": [0, 1, 2]}},
                      [{"drop_p": 0.1, "seed": seed, "top_k": 100} for seed in (0, 1, 2)]),
    }  # fmt: skip
    searches = []
    for method, (spec, points) in specs.items():
        folder = tmp_path / "joint" / method
        folder.mkdir(parents=True)
        for number, point in enumerate(points):
            # Hits@3 of every task: 40 % at λ 0.5, 60 % at λ 1.0, plus 5 % per point number (top_k 30, seeds 1 and 2)
            # (and every sample within the top 5 and 10)
            hits = {
                lam: {t: (n * base // 200, n * (base + 5 * number) // 100, n, n)[: len(ks)] for t, n in totals.items()}
                for lam, base in ((0.5, 40), (1.0, 60))
            }
            evaluation = joint_evaluation(method, point, hits, totals, ks=ks)
            (folder / f"{number}.json").write_text(json.dumps(evaluation))
        searches.append(tmp_path / "search_joint" / f"{method}.json")
        run_script(
            "search_joint.py",
            tmp_path,
            input=Files(evaluations=[folder]),  # one folder per evaluation job
            output=Files(searches[-1]),
            spec=spec,
            joint={"ks": ks, "select_k": 3},
            tasks=VIT_TASKS,
            made_by={str(folder): "evaluate_joint"},
        )
    ties = json.loads(searches[0].read_text())
    assert ties["greedy"]["params"] == ties["grid"]["params"] == {"lam": 1.0, "top_k": 30}
    assert ties["grid"]["test"]["pooled"]["3"] == pytest.approx(65.0)
    dare = json.loads(searches[1].read_text())
    assert dare["grid"]["params"] == {"drop_p": 0.1, "lam": 1.0, "top_k": 100}
    assert dare["grid"]["test"]["pooled"]["3"] == pytest.approx(65.0)  # seeds at 60, 65, 70
    assert dare["grid"]["test"]["std"]["pooled"]["3"] == pytest.approx(5.0)

    stems = {name: tmp_path / "tables" / name for name in ("table5_joint", "table9_joint_pertask")}
    run_script(
        "tables_joint.py",
        tmp_path,
        input=Files(*searches),
        output=Files(
            **{
                f"table{n}_{ext}": stems[name].with_suffix(f".{ext}")
                for n, name in ((5, "table5_joint"), (9, "table9_joint_pertask"))
                for ext in ("csv", "md", "tex")
            }
        ),
        methods=list(specs),
        tasks=VIT_TASKS,
        paper="vit-b32",
    )
    table5 = pd.read_csv(stems["table5_joint"].with_suffix(".csv"), keep_default_na=False)
    ties_rows = table5[(table5["Method"] == "TIES") & (table5["Selection"] != "")].set_index(["Selection", "Source"])
    assert ties_rows.loc[("greedy", "Δ"), "Hits@3"] == pytest.approx(65.0 - 65.4)
    dare_rows = table5[table5["Method"] == "DARE-TIES"]
    assert list(dare_rows["Source"]) == ["ours", "ours std", "paper", "Δ"] * 2
    assert "65.00 ± 5.00" in stems["table5_joint"].with_suffix(".md").read_text()
    assert [column for column in table5.columns if column.startswith("Hits@")] == [f"Hits@{k}" for k in ks]
    if 10 in ks:  # ours at 100 %, the paper's cell and Δ blank
        assert float(ties_rows.loc[("greedy", "ours"), "Hits@10"]) == pytest.approx(100.0)
        assert ties_rows.loc[("greedy", "Δ"), "Hits@10"] == ""
    table9 = pd.read_csv(stems["table9_joint_pertask"].with_suffix(".csv"), keep_default_na=False)
    assert set(table9["Method"]) >= {"TIES", "DARE-TIES", "Ensemble", "LoRA-LEGO", "Ours"}
    assert stems["table9_joint_pertask"].with_suffix(".tex").read_text().count("\\begin{tabular}") == 1
