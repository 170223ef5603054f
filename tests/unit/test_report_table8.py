"""Table 8 (the α sweep of ``mix``, the paper's α·KnOTS-TIES + (1−α)·LoRA-LEGO) and its figure, through the α-sweep
builder Table 7 shares; and LoRA-LEGO's rows in Tables 3, 4, 5 and 9 now that the catalogue names them. Synthetic
setting tables and selections, no workflow."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from loramerge.repro.plan import ConfigError, build_plan
from loramerge.repro.report.alpha_sweep import alpha_sweep_table, sweep_branches, sweep_paper
from loramerge.repro.report.figures import alpha_sweep_figure, split_sources
from loramerge.repro.report.joint import table5_joint, table9_joint_per_task
from loramerge.repro.report.paper import paper_tables, read_paper_table
from loramerge.repro.report.render import to_csv, to_latex, to_markdown
from loramerge.repro.report.table3 import table3_per_task
from loramerge.repro.search import JointSelection, Selection, build_setting_table

VIT_TASKS = ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]
VIT_COLUMNS = ["Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SUN397", "SVHN"]
DEMO_TASKS = ["digits", "shapes", "counts"]
PAPER_BRANCHES = ("knots_ties", "lora_lego")
ALPHAS = [round(0.1 * i, 1) for i in range(11)]
# Rows of the paper's Table 8 as printed (its α = 0 is LoRA-LEGO alone, its α = 1 KnOTS-TIES alone)
PAPER_T8_03 = [82.7, 76.0, 49.1, 39.5, 55.1, 68.6, 98.4, 38.7]
PAPER_LEGO_T3 = [82.4, 72.5, 42.4, 41.8, 51.0, 68.4, 96.9, 40.0]
PAPER_LEGO_T4 = [92.2, 59.9, 69.0, 59.0, 83.9, 83.3]
PAPER_LEGO_T5 = [42.9, 64.5, 73.5]  # Hits@1, 3, 5
PAPER_LEGO_T9_HITS3 = [84.8, 62.7, 20.4, 66.4, 46.6, 83.4, 83.7, 49.8]


def correct(alpha: float, task_index: int, split: str, seed: int) -> int:
    """Correct answers of 1000 at one point: grows with α, the task and the seed; validation 50 above test."""
    return 300 + round(200 * alpha) + 10 * task_index + 20 * seed + (50 if split == "val" else 0)


def mix_table(tasks=VIT_TASKS, alphas=ALPHAS, seeds=None, branches=PAPER_BRANCHES, base=0.5):
    """``mix``'s setting table as its evaluations give it: one point per α (and seed), λ = 1 (tuned branches)."""
    evaluations = []
    for alpha in alphas:
        for seed in seeds or [0]:
            point = {"alpha": alpha, "first": branches[0], "second": branches[1]}
            if seeds is not None:
                point["seed"] = seed
            records = [
                {
                    "lam": 1.0,
                    "task": task,
                    "split": split,
                    "correct": correct(alpha, i, split, seed or 0),
                    "total": 1000,
                }
                for i, task in enumerate(tasks)
                for split in ("val", "test")
            ]
            evaluations.append({"method": "mix", "point": point, "records": records})
    return build_setting_table(evaluations, {task: {"test": base} for task in tasks})


def table8(settings, branches=PAPER_BRANCHES, **options) -> pd.DataFrame:
    return alpha_sweep_table(settings, branches=branches, paper_table="table8", **options)


def at(sweep: pd.DataFrame, alpha: float) -> pd.DataFrame:
    return sweep[sweep["alpha"].round(9) == alpha].set_index("Source")


# -- the α sweep of mix ----------------------------------------------------------------------------------------------


def test_table8_without_a_paper_is_our_sweep_titled_by_its_branches():
    sweep = table8(mix_table(DEMO_TASKS, [1.0, 0.0, 0.5]), tasks=DEMO_TASKS, normalized_by="measured")
    assert list(sweep.columns) == ["alpha", "digits", "shapes", "counts", "Avg", "Val Avg"]
    assert list(sweep["alpha"]) == [0.0, 0.5, 1.0]
    # test accuracy (300 + 200α + 10i)/1000 against the base 0.5
    assert list(sweep.iloc[1][["digits", "shapes", "counts"]]) == pytest.approx([80.0, 82.0, 84.0])
    assert sweep.iloc[1]["Avg"] == pytest.approx(82.0)
    assert sweep.iloc[2]["Val Avg"] == pytest.approx(112.0)  # validation (550 + 10i)/1000 against 0.5, i = 0, 1, 2
    assert sweep.attrs["title"] == (
        "The α sweep of α·KnOTS-TIES + (1−α)·LoRA-LEGO: per-task normalized test accuracy (%)"
    )
    assert sweep.attrs["notes"] == [
        "Normalization base: measured (accuracies are normalized by each adapter's fine-tuned test accuracy "
        "measured in this run)."
    ]
    assert r"\caption{The $\alpha$ sweep of $\alpha$$\cdot$KnOTS-TIES + (1-$\alpha$)$\cdot$LoRA-LEGO:" in to_latex(
        sweep
    )


def test_table8_with_the_paper_puts_table8s_rows_and_delta_under_ours():
    sweep = table8(mix_table(alphas=[0.0, 0.3, 0.25]), paper="vit-b32", normalized_by="measured")
    assert list(sweep.columns) == ["alpha", "Source", *VIT_COLUMNS, "Avg", "Val Avg"]
    assert list(sweep[sweep["Source"] == "ours"]["alpha"]) == [0.0, 0.25, 0.3]
    assert list(sweep[sweep["Source"] == "paper"]["alpha"]) == pytest.approx(ALPHAS)
    row = at(sweep, 0.3)
    assert list(row.index) == ["ours", "paper", "Δ"]
    ours = [100 * correct(0.3, i, "test", 0) / 500 for i in range(8)]
    assert list(row.loc["ours", VIT_COLUMNS]) == pytest.approx(ours)
    assert list(row.loc["paper", VIT_COLUMNS]) == PAPER_T8_03  # Table 8's, not Table 7's (83.5, 74.3, …)
    assert row.loc["paper", "Avg"] == 63.5
    assert list(row.loc["Δ", VIT_COLUMNS]) == pytest.approx([o - p for o, p in zip(ours, PAPER_T8_03, strict=True)])
    assert row.loc["Δ", "Avg"] == pytest.approx(sum(ours) / 8 - 63.5)
    assert pd.isna(row.loc["paper", "Val Avg"])
    assert list(at(sweep, 0.25).index) == ["ours"]  # the paper printed no α = 0.25
    assert list(at(sweep, 0.0).loc["paper", VIT_COLUMNS]) == PAPER_LEGO_T3
    assert any("the paper's Table 8 (vit-b32); Δ = ours − paper." in note for note in sweep.attrs["notes"])
    ours_back, paper_back = split_sources(pd.read_csv(io.StringIO(to_csv(sweep))))
    assert len(ours_back) == 3 and len(paper_back) == 11


@pytest.mark.parametrize(
    "branches",
    [("knots_ties", "cur_ties"), ("lora_lego", "knots_ties"), ("ties", "lora_lego")],
    ids=["hybrid's-branches", "swapped", "other-first"],
)
def test_table8_shows_the_papers_rows_only_for_knots_ties_then_lora_lego(branches):
    assert sweep_paper("vit-b32", "table8", PAPER_BRANCHES) == "vit-b32"
    assert sweep_paper(None, "table8", PAPER_BRANCHES) is None
    assert sweep_paper("vit-b32", "table8", branches) is None
    sweep = table8(mix_table(alphas=[0.0, 0.5, 1.0], branches=branches), branches=branches, paper="vit-b32")
    assert "Source" not in sweep.columns and list(sweep["alpha"]) == [0.0, 0.5, 1.0]
    notes = " ".join(sweep.attrs["notes"])
    assert "mixes KnOTS-TIES (α = 1) with LoRA-LEGO (α = 0): no published numbers here" in notes
    assert "Δ = ours − paper" not in notes


def test_the_hybrids_sweep_compares_with_table7_and_only_table7():
    hybrid = ("knots_ties", "cur_ties")
    assert sweep_paper("vit-b32", "table7", hybrid) == "vit-b32"
    assert sweep_paper("vit-b32", "table7", PAPER_BRANCHES) is None
    sweep = alpha_sweep_table(mix_table(alphas=[0.3]), branches=hybrid, paper_table="table7", paper="vit-b32")
    assert list(at(sweep, 0.3).loc["paper", VIT_COLUMNS[:2]]) == [83.5, 74.3]
    with pytest.raises(ValueError, match="none of the paper's α sweeps"):
        alpha_sweep_table(mix_table(alphas=[0.3]), branches=hybrid, paper_table="table5")


def test_table8_over_seed_replicates_shows_their_mean_and_spread():
    settings = mix_table(DEMO_TASKS, [0.0, 1.0], seeds=(0, 1, 2))
    with pytest.raises(ValueError, match="pin the other parameters"):
        table8(settings, tasks=DEMO_TASKS)  # three settings per α: the seeds must be replicates
    sweep = table8(settings, tasks=DEMO_TASKS, replicates={"seed": [0, 1, 2]})
    assert list(sweep["Source"]) == ["ours", "ours std", "ours", "ours std"]
    ours, spread = sweep.iloc[2], sweep.iloc[3]
    # seeds add 0, 20, 40 correct of 1000: mean +20, sample std 20 of 1000 → 4 points of the base 0.5
    assert ours["digits"] == pytest.approx(100 * (500 + 20) / 500)
    assert spread["digits"] == pytest.approx(4.0) and spread["Avg"] == pytest.approx(4.0)
    assert spread["Val Avg"] == pytest.approx(4.0)
    assert "104.00 ± 4.00" in to_markdown(sweep)
    assert pd.isna(spread["alpha"])  # the spread row's α is the row above's, so no renderer folds it into α ± …
    alphas = [line.split("|")[1].strip() for line in to_markdown(sweep).splitlines() if "| ours" in line]
    assert alphas == ["0", "1"]
    assert any("Mix: mean ± sample standard deviation" in note for note in sweep.attrs["notes"])
    one_seed = table8(mix_table(DEMO_TASKS, [0.0, 1.0], seeds=(0,)), tasks=DEMO_TASKS, replicates={"seed": [0]})
    assert "Source" not in one_seed.columns and len(one_seed) == 2  # one replicate has no spread


def test_the_packaged_table8_is_the_papers_and_its_ends_are_its_table3_rows():
    assert {"table7", "table8"} <= set(paper_tables("vit-b32"))
    assert "table8" not in paper_tables("llama3-8b")
    printed = read_paper_table("vit-b32", "table8")
    assert list(printed.columns) == ["alpha", *VIT_COLUMNS, "Avg"]
    assert list(printed["alpha"]) == pytest.approx(ALPHAS)
    table3 = read_paper_table("vit-b32", "table3").set_index("method")
    # the sweep's ends are the two branches alone, which the paper's Table 3 prints: LoRA-LEGO's row exactly,
    # KnOTS-TIES's within 0.1 (the paper prints DTD 73.7 and MNIST 69.0 here, 73.6 and 68.9 in Table 3)
    assert list(printed.iloc[0][VIT_COLUMNS]) == list(table3.loc["LoRA-LEGO", VIT_COLUMNS])
    assert list(printed.iloc[-1][VIT_COLUMNS]) == pytest.approx(list(table3.loc["KnOTS-TIES", VIT_COLUMNS]), abs=0.11)
    for _, row in printed.iterrows():  # each printed Avg is its row's mean up to rounding (±0.05 each side)
        assert math.isclose(row["Avg"], sum(row[VIT_COLUMNS]) / 8, abs_tol=0.1)


# -- which two methods a plan's sweep mixes ---------------------------------------------------------------------------


def plan_config(mix: dict) -> dict:
    ties = {"grid": {"top_k": [20]}, "defaults": {"top_k": 20}, "order": ["lam", "top_k"]}
    methods = {
        "knots_ties": ties,
        "cur_ties": ties,
        "ties": ties,
        "lora_lego": {"seeds": [0, 1], "order": ["lam"]},
        "hybrid": {"branches": "tuned", "grid": {"alpha": [0.0, 1.0]}, "order": ["alpha"]},
        "mix": mix,
    }
    return {"merge": {"lambdas": [0.5, 1.0], "methods": methods}}


def test_sweep_branches_come_from_the_plan():
    tuned = {"branches": "tuned", "fixed": {"first": "knots_ties", "second": "lora_lego"}, "grid": {"alpha": [0.5]}}
    plans = build_plan(plan_config({**tuned, "order": ["alpha"]}))
    assert sweep_branches(plans["mix"]) == ("knots_ties", "lora_lego")
    assert sweep_branches(plans["hybrid"]) == ("knots_ties", "cur_ties")
    as_given = {"fixed": {"first": "ties", "second": "knots_ties"}, "grid": {"alpha": [0.5]}}
    plans = build_plan(plan_config({**as_given, "order": ["lam", "alpha"], "defaults": {"alpha": 0.5}}))
    assert sweep_branches(plans["mix"]) == ("ties", "knots_ties")
    with pytest.raises(ConfigError, match="no α sweep"):
        sweep_branches(plans["ties"])


# -- the figure ------------------------------------------------------------------------------------------------------


def test_table8s_figure_is_written_reproducibly_and_names_its_branches(tmp_path: Path):
    sweep = table8(mix_table(alphas=ALPHAS), paper="vit-b32")
    ours, paper = split_sources(pd.read_csv(io.StringIO(to_csv(sweep))))

    def draw(folder: str, branches=PAPER_BRANCHES, **options) -> tuple[Path, Path]:
        return alpha_sweep_figure(
            ours, tmp_path / folder / "fig8_alpha", branches=branches, selected_alpha=0.7, **options
        )

    png, pdf = draw("a", paper=paper)
    assert (png.name, pdf.name) == ("fig8_alpha.png", "fig8_alpha.pdf")
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    assert png.stat().st_size > 1000 and b"CreationDate" not in pdf.read_bytes()
    again = draw("b", paper=paper)
    assert [p.read_bytes() for p in again] == [png.read_bytes(), pdf.read_bytes()]
    # the paper's line and the branch names (title and axis) are drawn
    assert draw("c")[0].read_bytes() != png.read_bytes()
    assert draw("d", branches=("knots_ties", "cur_ties"), paper=paper)[0].read_bytes() != png.read_bytes()
    with pytest.raises(ValueError, match="Val Avg"):
        alpha_sweep_figure(ours.drop(columns="Val Avg"), tmp_path / "e" / "fig8", branches=PAPER_BRANCHES)


# -- LoRA-LEGO's rows in Tables 3, 4, 5 and 9 -------------------------------------------------------------------------


def selection(tasks, values, val_mean, std=None) -> Selection:
    """A per-task search result whose greedy and grid choices both score ``values`` on test."""

    def split(mean):
        scores = {"per_task": dict(zip(tasks, values, strict=True)), "mean": mean, "accuracy": {}}
        if std is not None:
            scores["replicates"] = [{"seed": seed, **scores} for seed in (0, 1, 2)]
            scores["std"] = {"per_task": dict(zip(tasks, std, strict=True)), "mean": std[0]}
        return scores

    summary = {"params": {"lam": 1.0, "clusters": 16}, "test": split(sum(values) / len(values)), "val": split(val_mean)}
    data = {"method": "m", "tasks": list(tasks), "settings_evaluated": 1, "greedy_path": [], "greedy": summary}
    data |= {"grid": summary, "normalized_by": "published", "normalization_base": {}}
    if std is not None:
        data["replicates"] = {"seed": [0, 1, 2]}
    return Selection.from_json(data)


def test_table3_shows_lora_lego_as_ours_then_the_papers_row_and_delta():
    finetuned = {task: {"test": 0.7, "val": 0.7} for task in VIT_TASKS}
    lego = [value + 2.0 for value in PAPER_LEGO_T3]
    selections = {
        "ta": selection(VIT_TASKS, [60.0] * 8, 61.0),
        "lora_lego": selection(VIT_TASKS, lego, 65.0, std=[0.3] * 8),
    }
    table = table3_per_task(selections, finetuned, tasks=VIT_TASKS, paper="vit-b32", rules=["grid"])
    rows = table[table["Method"] == "LoRA-LEGO"]
    assert list(rows["Source"]) == ["ours", "ours std", "paper", "Δ"]
    assert list(rows["Selection"]) == ["grid", "grid", "", "grid"]
    rows = rows.set_index("Source")
    assert rows.loc["ours", "Hyper-parameters"] == "lam=1, clusters=16"
    assert list(rows.loc["paper", VIT_COLUMNS]) == PAPER_LEGO_T3
    assert list(rows.loc["Δ", VIT_COLUMNS]) == pytest.approx([2.0] * 8)
    assert rows.loc["Δ", "Average"] == pytest.approx(sum(lego) / 8 - 62.0)
    # LoRA-LEGO ran, so it is no longer among the paper-only rows at the end, nor in the note listing them
    ran = set(table.loc[table["Source"] == "ours", "Method"])
    paper_only = list(table.loc[~table["Method"].isin(ran), "Method"])
    assert "LoRA-LEGO" not in paper_only and {"RegMean", "Fisher", "KnOTS-TIES", "Ours-TIES"} <= set(paper_only)
    note = next(note for note in table.attrs["notes"] if "Rows of the paper only" in note)
    assert "LoRA-LEGO" not in note and "RegMean" in note
    without = table3_per_task({"ta": selections["ta"]}, finetuned, tasks=VIT_TASKS, paper="vit-b32", rules=["grid"])
    assert list(without.loc[without["Method"] == "LoRA-LEGO", "Source"]) == ["paper"]
    assert "LoRA-LEGO" in next(note for note in without.attrs["notes"] if "Rows of the paper only" in note)


def test_table4_shows_lora_lego_as_ours_then_the_papers_row_and_delta():
    tasks = ["snli", "mnli", "sick", "qnli", "rte", "scitail"]
    finetuned = {task: {"test": 0.9, "val": 0.9} for task in tasks}
    selections = {"lora_lego": selection(tasks, [90.0] * 6, 88.0)}
    table = table3_per_task(selections, finetuned, tasks=tasks, paper="llama3-8b", rules=["greedy"])
    rows = table[table["Method"] == "LoRA-LEGO"].set_index("Source")
    assert list(rows.index) == ["ours", "paper", "Δ"]
    assert list(rows.loc["paper", ["SNLI", "MNLI", "SICK", "QNLI", "RTE", "SciTail"]]) == PAPER_LEGO_T4
    assert list(rows.loc["Δ", ["SNLI", "MNLI"]]) == pytest.approx([90.0 - 92.2, 90.0 - 59.9])


def joint_selection(pooled: dict[int, float], per_task: dict[int, list[float]]) -> JointSelection:
    def split(values):
        return {
            "pooled": {str(k): v for k, v in values.items()},
            "per_task": {t: {str(k): per_task[k][i] for k in per_task} for i, t in enumerate(VIT_TASKS)},
            "total": dict.fromkeys(VIT_TASKS, 100),
        }

    summary = {"params": {"lam": 1.0, "clusters": 32}, "test": split(pooled), "val": split(pooled)}
    data = {"method": "m", "tasks": VIT_TASKS, "settings_evaluated": 1, "greedy_path": []}
    return JointSelection.from_json(data | {"greedy": summary, "grid": summary, "ks": sorted(per_task), "select_k": 1})


def test_tables5_and_9_show_lora_lego_as_ours_then_the_papers_row_and_delta():
    per_task = {k: [float(40 + k + i) for i in range(8)] for k in (1, 3, 5)}
    selections = {"lora_lego": joint_selection({1: 44.0, 3: 66.0, 5: 75.0}, per_task)}
    table5 = table5_joint(selections, paper="vit-b32", rules=["grid"])
    lego = table5[table5["Method"] == "LoRA-LEGO"].set_index("Source")
    assert list(lego.index) == ["ours", "paper", "Δ"]
    assert list(lego.loc["paper", ["Hits@1", "Hits@3", "Hits@5"]]) == PAPER_LEGO_T5
    assert list(lego.loc["Δ", ["Hits@1", "Hits@3", "Hits@5"]]) == pytest.approx([1.1, 1.5, 1.5])
    assert "LoRA-LEGO" not in next(note for note in table5.attrs["notes"] if "Rows of the paper only" in note)

    table9 = table9_joint_per_task(selections, paper="vit-b32", rules=["grid"])
    hits3 = table9[(table9["Method"] == "LoRA-LEGO") & (table9["Metric"] == "Hits@3")].set_index("Source")
    assert list(hits3.index) == ["ours", "paper", "Δ"]
    assert list(hits3.loc["paper", VIT_COLUMNS]) == PAPER_LEGO_T9_HITS3
    assert list(hits3.loc["Δ", VIT_COLUMNS]) == pytest.approx(
        [ours - paper for ours, paper in zip(per_task[3], PAPER_LEGO_T9_HITS3, strict=True)]
    )
    assert hits3.loc["Δ", "Union"] == pytest.approx(66.0 - 64.5)
    assert list(table9.loc[table9["Method"] == "LoRA-LEGO", "Source"]).count("paper") == 3  # no paper-only copies
