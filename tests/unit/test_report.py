"""Report tables and figures: shapes, values, row order, and identical bytes when written twice."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from loramerge.repro.report.alpha_sweep import alpha_sweep_table
from loramerge.repro.report.energy import table1_svd_energy, table2_cur_energy
from loramerge.repro.report.figures import (
    alpha_sweep_figure,
    figure1_overlap_heatmap,
    figure2_cur_spaces,
    overlap_matrix,
    parse_module_path,
    split_sources,
)
from loramerge.repro.report.finetuned import finetuned_table
from loramerge.repro.report.joint import table5_joint, table9_joint_per_task
from loramerge.repro.report.paper import read_paper_table
from loramerge.repro.report.render import latex_escape, to_csv, to_latex, to_markdown, write_table
from loramerge.repro.report.table3 import table3_per_task
from loramerge.repro.search import JointSelection, Selection, build_setting_table, select_method

TASKS = ("dtd", "mnist", "stanford_cars")
FINETUNED = {"dtd": {"test": 0.5, "val": 0.6}, "mnist": {"test": 0.99, "val": 0.98}, "stanford_cars": {"test": 0.8}}


def search_result(tasks, **fields) -> Selection | JointSelection:
    """A search result as the search writes it, read back; the fields the tables do not read get neutral values."""
    data = {"method": "m", "tasks": list(tasks), "settings_evaluated": 1, "greedy_path": [], **fields}
    if "select_k" in data:
        return JointSelection.from_json(data)
    return Selection.from_json({"normalized_by": "measured", "normalization_base": {}, **data})


def selection(params: dict, test: dict[str, float], val_mean: float) -> Selection:
    summary = {
        "params": params,
        "test": {"per_task": test, "mean": sum(test.values()) / len(test), "accuracy": {}},
        "val": {"per_task": {}, "mean": val_mean, "accuracy": {}},
    }
    return search_result(test, greedy=summary, grid={**summary, "params": {**params, "lam": 9.0}})


SELECTIONS = {
    "hybrid": selection({"alpha": 0.6, "lam": 1.0}, {"dtd": 90.0, "mnist": 80.0, "stanford_cars": 70.0}, 85.0),
    "ta": selection({"lam": 0.3}, {"dtd": 60.0, "mnist": 50.0, "stanford_cars": 40.0}, 55.5),
    "knots_ties": selection({"lam": 1.0, "top_k": 20}, {"dtd": 70.0, "mnist": 71.0, "stanford_cars": 72.0}, 71.0),
}


HYBRID_BRANCHES = ("knots_ties", "cur_ties")


def table7_alpha_sweep(table, **options) -> pd.DataFrame:
    """Table 7: the α-sweep table of the hybrid."""
    return alpha_sweep_table(table, branches=HYBRID_BRANCHES, paper_table="table7", **options)


def hybrid_table():
    """The hybrid at α ∈ {0.5, 0, 1}: task i scores (base + 100α + 10i)/1000, base 400 on val and 300 on test."""
    evaluations = []
    for alpha in (0.5, 0.0, 1.0):
        alpha_records = [
            {"lam": 1.0, "task": task, "split": split, "correct": base + int(alpha * 100) + 10 * i, "total": 1000}
            for split, base in (("val", 400), ("test", 300))
            for i, task in enumerate(TASKS)
        ]
        evaluations.append({"method": "hybrid", "point": {"alpha": alpha}, "records": alpha_records})
    finetuned = {task: {"test": 0.5} for task in TASKS}
    return build_setting_table(evaluations, finetuned)


def test_table3_rows_columns_and_values():
    table = table3_per_task(SELECTIONS, FINETUNED)
    assert list(table.columns) == [
        "Method",
        "Data",
        "Selection",
        "DTD",
        "MNIST",
        "Cars",
        "Average",
        "Val Average",
        "Hyper-parameters",
    ]
    methods = ["TA", "KnOTS-TIES", "Ours (SVD+CUR hybrid)"]
    assert list(table["Method"]) == ["Fine-tuned", *methods, *methods]
    assert list(table["Selection"]) == ["", "greedy", "greedy", "greedy", "grid", "grid", "grid"]
    finetuned = table.iloc[0]
    assert [finetuned["DTD"], finetuned["MNIST"], finetuned["Cars"]] == pytest.approx([50.0, 99.0, 80.0])
    assert finetuned["Average"] == pytest.approx((50 + 99 + 80) / 3)
    assert pd.isna(finetuned["Val Average"])
    ta = table.iloc[1]
    assert [ta["DTD"], ta["MNIST"], ta["Cars"], ta["Average"], ta["Val Average"]] == pytest.approx(
        [60.0, 50.0, 40.0, 50.0, 55.5]
    )
    assert ta["Hyper-parameters"] == "lam=0.3"
    assert table.iloc[3]["Hyper-parameters"] == "lam=1, alpha=0.6"
    assert table.iloc[6]["Hyper-parameters"] == "lam=9, alpha=0.6"


def test_table3_method_order_rules_and_missing_method():
    table = table3_per_task(SELECTIONS, FINETUNED, methods=["knots_ties", "ta"], rules=["grid"])
    assert list(table["Method"]) == ["Fine-tuned", "KnOTS-TIES", "TA"]
    with pytest.raises(ValueError, match="cur_ties"):
        table3_per_task(SELECTIONS, FINETUNED, methods=["cur_ties"])


def test_table7_alpha_rows_ascending_with_normalized_test_and_val_average():
    sweep = table7_alpha_sweep(hybrid_table(), fixed={"lam": 1.0, "alpha": 0.6})
    assert list(sweep.columns) == ["alpha", "DTD", "MNIST", "Cars", "Avg", "Val Avg"]
    assert list(sweep["alpha"]) == [0.0, 0.5, 1.0]
    # test accuracy (300 + 100α + 10i)/1000 against fine-tuned 0.5
    assert list(sweep.iloc[1][["DTD", "MNIST", "Cars"]]) == pytest.approx([70.0, 72.0, 74.0])
    assert sweep.iloc[1]["Avg"] == pytest.approx(72.0)
    assert sweep.iloc[2]["Val Avg"] == pytest.approx(102.0)


def test_alpha_sweep_with_two_settings_per_alpha_needs_fixed():
    table = hybrid_table()
    records = [
        {"lam": lam, "task": task, "split": split, "correct": 1, "total": 2}
        for lam in (0.5, 1.0)
        for task in TASKS
        for split in ("val", "test")
    ]
    more = build_setting_table(
        [{"method": "hybrid", "point": {"alpha": 0.5}, "records": records}], {task: {"test": 0.5} for task in TASKS}
    )
    with pytest.raises(ValueError, match="pin the other parameters"):
        table7_alpha_sweep(more)
    assert len(table7_alpha_sweep(more, fixed={"lam": 0.5})) == 1
    assert len(table7_alpha_sweep(table)) == 3


ENERGY = pd.DataFrame(
    {
        "task": ["stanford_cars", "dtd", "eurosat"],
        "original": [31.69, 2.32, 19.40],
        "svd": [30.34, 1.56, 18.03],
        "svd_ratio": [0.958, 0.671, 0.929],
        "cur": [31.48, 2.18, 19.20],
        "cur_ratio": [0.993, 0.939, 0.990],
    }
)


def test_energy_tables(tmp_path: Path):
    ENERGY.to_csv(tmp_path / "energy.csv", index=False)
    table1 = table1_svd_energy(tmp_path / "energy.csv")
    assert list(table1.columns) == ["Dataset", "Original Energy", "SVD Energy", "O-S", "Energy Ratio"]
    assert list(table1["Dataset"]) == ["Cars", "DTD", "EuroSAT"]
    assert list(table1["O-S"]) == pytest.approx([1.35, 0.76, 1.37])
    assert list(table1["Energy Ratio"]) == [0.958, 0.671, 0.929]
    table2 = table2_cur_energy(ENERGY, tasks=["eurosat", "dtd"])
    assert list(table2.columns) == ["Dataset", "Original Energy", "Projected Energy", "O-C", "Energy Ratio"]
    assert list(table2["Dataset"]) == ["EuroSAT", "DTD"]
    assert list(table2["O-C"]) == pytest.approx([0.20, 0.14])
    with pytest.raises(ValueError, match="svhn"):
        table1_svd_energy(ENERGY, tasks=["svhn"])


def test_written_tables_are_byte_identical_and_read_back(tmp_path: Path):
    table = table3_per_task(SELECTIONS, FINETUNED)
    paths = write_table(table, tmp_path / "out" / "table3")
    first = [path.read_bytes() for path in paths]
    write_table(table3_per_task(SELECTIONS, FINETUNED), tmp_path / "out" / "table3")
    assert [path.read_bytes() for path in paths] == first
    # no temp files left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table3.csv", "table3.md", "table3.tex"]
    text = first[0].decode()
    assert text.splitlines()[0] == "Method,Data,Selection,DTD,MNIST,Cars,Average,Val Average,Hyper-parameters"
    assert "\r" not in text and "TA,none,greedy,60.0000,50.0000,40.0000,50.0000,55.5000,lam=0.3" in text
    back = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert back.shape == table.shape
    markdown = first[1].decode()
    assert markdown.startswith("| Method ")
    assert "| Fine-tuned " in markdown and "nan" not in markdown
    assert "| 60.00 |" in markdown and "| lam=1, top_k=20 " in markdown


def test_markdown_energy_ratio_has_three_decimals():
    markdown = to_markdown(table1_svd_energy(ENERGY))
    assert "0.958" in markdown and "31.69" in markdown


def test_module_paths_parse_for_clip_and_llama():
    assert parse_module_path("vision_model.encoder.layers.3.self_attn.q_proj") == (3, "q_proj")
    assert parse_module_path("model.layers.17.self_attn.k_proj") == (17, "k_proj")
    with pytest.raises(ValueError, match="layers"):
        parse_module_path("visual_projection")


def overlap_frame() -> pd.DataFrame:
    rows = []
    for layer in (10, 2, 0, 1):
        for module in ("out_proj", "v_proj", "q_proj", "k_proj"):
            rows.append((f"vision_model.encoder.layers.{layer}.self_attn.{module}", 16, layer / 20 + len(module) / 100))
    return pd.DataFrame(rows, columns=["module", "rank", "overlap"])


def test_overlap_matrix_layout():
    matrix = overlap_matrix(overlap_frame())
    assert list(matrix.index) == [0, 1, 2, 10]
    assert list(matrix.columns) == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert matrix.loc[10, "out_proj"] == pytest.approx(0.5 + 0.08)
    two_ranks = pd.concat([overlap_frame(), overlap_frame().assign(rank=8)])
    with pytest.raises(ValueError, match="ranks"):
        overlap_matrix(two_ranks)
    assert overlap_matrix(two_ranks, rank=8).shape == (4, 4)


def test_figures_are_written_and_reproducible(tmp_path: Path):
    overlap_csv = tmp_path / "overlap.csv"
    overlap_frame().to_csv(overlap_csv, index=False)
    sweep = table7_alpha_sweep(hybrid_table())
    cur_ur = selection({"lam": 1.0}, {"dtd": 90.0, "mnist": 95.0, "stanford_cars": 70.0}, 80.0)
    cur_r = selection({"lam": 0.8}, {"dtd": 85.0, "mnist": 60.0, "stanford_cars": 69.0}, 70.0)

    def draw(folder: Path) -> list[Path]:
        return [
            *figure1_overlap_heatmap(overlap_csv, folder / "figure1"),
            *figure2_cur_spaces(cur_ur, cur_r, folder / "figure2"),
            *alpha_sweep_figure(sweep, folder / "figure3", branches=HYBRID_BRANCHES, selected_alpha=0.5),
        ]

    first = draw(tmp_path / "a")
    second = draw(tmp_path / "b")
    assert [p.name for p in first] == [f"figure{i}.{ext}" for i in (1, 2, 3) for ext in ("png", "pdf")]
    for one, other in zip(first, second, strict=True):
        assert one.stat().st_size > 1000
        assert one.read_bytes() == other.read_bytes(), one.name
    assert first[0].read_bytes().startswith(b"\x89PNG")
    assert first[1].read_bytes().startswith(b"%PDF")
    assert b"CreationDate" not in first[1].read_bytes()


# -- LaTeX ---------------------------------------------------------------------------------------------------------


def parse_tabular(tex: str) -> tuple[str, list[list[str]]]:
    """The column spec and the cell rows of the one tabular in ``tex``; rules dropped, cells split on unescaped &."""
    match = re.search(r"\\begin\{tabular\}\{([lcr]+)\}\n(.*?)\\end\{tabular\}", tex, re.S)
    assert match, tex
    spec, body = match.groups()
    rows = []
    for line in body.splitlines():
        if line in ("\\toprule", "\\midrule", "\\bottomrule"):
            continue
        assert line.endswith(" \\\\"), line
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)&", line[: -len(" \\\\")])])
    return spec, rows


def test_latex_is_a_tabular_with_one_column_per_table_column(tmp_path: Path):
    table = table3_per_task(SELECTIONS, FINETUNED)
    tex = write_table(table, tmp_path / "table3")[2].read_text()
    spec, rows = parse_tabular(tex)
    assert spec == "lllrrrrrl"  # text left, numbers right
    assert all(len(row) == len(table.columns) for row in rows)
    assert rows[0] == [
        "Method", "Data", "Selection", "DTD", "MNIST", "Cars", "Average", "Val Average", "Hyper-parameters",
    ]  # fmt: skip
    assert len(rows) == 1 + len(table)
    assert rows[2] == ["TA", "none", "greedy", "60.00", "50.00", "40.00", "50.00", "55.50", "lam=0.3"]
    assert "lam=1, top\\_k=20" in tex  # _ escaped
    assert tex.count("\\begin{table}") == 1 and tex.count("\\end{table}") == 1
    assert "\\caption{" in tex and "(\\%)" in tex


def test_latex_escapes_specials_and_writes_greek_as_math():
    escaped = latex_escape("a_b & 50% #1 {x} ~ ^")
    assert escaped == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{}"
    assert latex_escape("Δ = ours − paper, α ± λ") == r"$\Delta$ = ours - paper, $\alpha$ $\pm$ $\lambda$"


# -- the suite with a paper: ViT-B/32 × 8 tasks ------------------------------------------------------------------------

VIT_TASKS = ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]
VIT_COLUMNS = ["Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SUN397", "SVHN"]
PAPER_TA = [82.0, 73.6, 48.8, 42.1, 53.1, 71.5, 97.5, 41.2]  # the paper's Table 3, row TA
PAPER_DARE = [82.7, 70.9, 42.9, 36.8, 56.3, 66.5, 95.4, 49.3]
VIT_FINETUNED = {task: {"val": 0.5 + i / 100, "test": 0.6 + i / 100} for i, task in enumerate(VIT_TASKS)}


def vit_selection(
    values: list[float], val_mean: float, std: list[float] | None = None, normalized_by="measured"
) -> Selection:
    def split(per_task, mean, spread):
        scores = {"per_task": dict(zip(VIT_TASKS, per_task, strict=True)), "mean": mean, "accuracy": {}}
        if spread is not None:
            # (the replicates' own numbers are not read)
            scores["replicates"] = [{"seed": seed, **scores} for seed in (0, 1, 2)]
            scores["std"] = {"per_task": dict(zip(VIT_TASKS, spread, strict=True)), "mean": spread[0] / 2}
        return scores

    summary = {
        "params": {"lam": 0.5},
        "test": split(values, sum(values) / 8, std),
        "val": split(values, val_mean, std),
    }
    selection = {"greedy": summary, "grid": summary, "normalized_by": normalized_by}
    if std is not None:
        selection["replicates"] = {"seed": [0, 1, 2]}
    return search_result(VIT_TASKS, **selection)


def test_table3_with_the_paper_puts_paper_and_delta_under_ours():
    ours_ta = [value + 1.5 for value in PAPER_TA]
    ours_dare = [60.0] * 8
    selections = {
        "ta": vit_selection(ours_ta, 70.0),
        "dare_ties": vit_selection(ours_dare, 61.0, std=[0.4] * 8),
        "cur_ties": vit_selection([50.0] * 8, 51.0),
    }
    table = table3_per_task(selections, VIT_FINETUNED, tasks=VIT_TASKS, paper="vit-b32", rules=["grid"])
    assert list(table.columns) == [
        "Method", "Data", "Selection", "Source", *VIT_COLUMNS, "Average", "Val Average", "Hyper-parameters",
    ]  # fmt: skip
    key = list(zip(table["Method"], table["Selection"], table["Source"], strict=True))
    assert key[:3] == [("Fine-tuned", "", "ours"), ("Fine-tuned", "", "paper"), ("Fine-tuned", "", "Δ")]
    finetuned = table.iloc[:3].set_index("Source")
    assert list(finetuned.loc["paper", VIT_COLUMNS]) == [74.0, 58.3, 99.0, 92.7, 99.3, 88.4, 64.5, 96.2]
    assert list(finetuned.loc["Δ", VIT_COLUMNS]) == pytest.approx(
        [
            100 * VIT_FINETUNED[t]["test"] - p
            for t, p in zip(VIT_TASKS, finetuned.loc["paper", VIT_COLUMNS], strict=True)
        ]
    )
    assert finetuned.loc["paper", "Average"] == 84.1  # as printed, not recomputed
    ta = table[table["Method"] == "TA"].set_index("Source")
    assert list(ta.index) == ["ours", "paper", "Δ"]
    assert list(ta.loc["paper", VIT_COLUMNS]) == PAPER_TA
    assert list(ta.loc["Δ", VIT_COLUMNS]) == pytest.approx([1.5] * 8)
    assert ta.loc["Δ", "Average"] == pytest.approx(sum(ours_ta) / 8 - 63.7)
    assert ta.loc["Δ", "Selection"] == "grid" and pd.isna(ta.loc["Δ", "Val Average"])
    dare = table[table["Method"] == "DARE-TIES"].set_index("Source")
    assert list(dare.index) == ["ours", "ours std", "paper", "Δ"]
    assert list(dare.loc["ours std", VIT_COLUMNS]) == [0.4] * 8
    assert dare.loc["ours std", "Average"] == pytest.approx(0.2)
    assert list(dare.loc["Δ", VIT_COLUMNS]) == pytest.approx([60.0 - p for p in PAPER_DARE])
    # CUR-TIES has no row in the paper's Table 3; RegMean, Fisher, … are the paper's only
    assert list(table[table["Method"] == "CUR-TIES (UR)"]["Source"]) == ["ours"]
    paper_only = table[~table["Method"].isin(table.loc[table["Source"] == "ours", "Method"])]
    assert set(paper_only["Source"]) == {"paper"} and set(paper_only["Selection"]) == {""}
    assert list(paper_only["Method"]) == [
        "RegMean", "Fisher", "TIES", "KnOTS-TIES", "KnOTS-DARE-TIES", "CoreSpace-TIES", "LoRA-LEGO", "Ours-TIES",
    ]  # fmt: skip

    markdown = to_markdown(table)
    assert "| 60.00 ± 0.40 |" in markdown and "| ours std" not in markdown
    assert "Normalization base: measured" in markdown
    assert "not run here): RegMean, Fisher" in markdown
    assert "from KnOTS (Stoica et al., 2025)" in markdown
    spec, cells = parse_tabular(to_latex(table))
    assert all(len(row) == len(table.columns) for row in cells) and len(spec) == len(table.columns)
    assert len(cells) == len(table)  # the header row replaces the folded std row
    assert "60.00 $\\pm$ 0.40" in {cell for row in cells for cell in row}


def test_table3_states_a_published_base_and_rejects_mixed_bases():
    selections = {"ta": vit_selection(PAPER_TA, 70.0, normalized_by="published")}
    table = table3_per_task(selections, VIT_FINETUNED, tasks=VIT_TASKS)
    assert any("Normalization base: published" in note for note in table.attrs["notes"])
    assert "Source" not in table.columns  # no paper, no replicates: the demo's layout
    selections["ties"] = vit_selection(PAPER_TA, 70.0, normalized_by="measured")
    with pytest.raises(ValueError, match="different bases"):
        table3_per_task(selections, VIT_FINETUNED, tasks=VIT_TASKS)


def test_paper_tables_need_the_papers_tasks():
    digits = {"ta": selection({"lam": 0.3}, {"digits": 90.0}, 90.0)}
    with pytest.raises(ValueError, match=r"vit-b32.*Table 3 has no columns \['digits'\]"):
        table3_per_task(digits, {"digits": {"test": 0.9}}, paper="vit-b32")
    with pytest.raises(ValueError, match="not one of the papers"):
        table3_per_task(SELECTIONS, FINETUNED, paper="llama-70b")


def joint_selection(
    pooled: dict[int, float], per_task: dict[int, list[float]], std: float | None = None
) -> JointSelection:
    def split(pooled_values):
        scores = {
            "pooled": {str(k): v for k, v in pooled_values.items()},
            "per_task": {t: {str(k): per_task[k][i] for k in per_task} for i, t in enumerate(VIT_TASKS)},
            "total": {t: 100 for t in VIT_TASKS},
        }
        if std is not None:
            scores["replicates"] = [{"seed": seed, **scores} for seed in (0, 1, 2)]
            scores["std"] = {
                "pooled": {str(k): std for k in pooled_values},
                "per_task": {t: {str(k): std for k in per_task} for t in VIT_TASKS},
            }
        return scores

    summary = {
        "params": {"lam": 0.6, "top_k": 30},
        "test": split(pooled),
        "val": split({k: v + 1 for k, v in pooled.items()}),
    }
    selection = {"greedy": summary, "grid": summary, "ks": sorted(per_task), "select_k": 3}
    if std is not None:
        selection["replicates"] = {"seed": [0, 1, 2]}
    return search_result(VIT_TASKS, **selection)


def test_table5_and_table9_with_the_paper():
    per_task = {k: [float(10 * k + i) for i in range(8)] for k in (1, 3, 5)}
    selections = {
        "ties": joint_selection({1: 44.0, 3: 66.0, 5: 75.0}, per_task),
        "dare_ties": joint_selection({1: 40.0, 3: 60.0, 5: 70.0}, per_task, std=0.5),
        "hybrid": joint_selection({1: 48.0, 3: 69.0, 5: 77.0}, per_task),
    }
    table5 = table5_joint(selections, paper="vit-b32", rules=["greedy"])
    assert list(table5.columns) == [
        "Method", "Data", "Selection", "Source", "Hits@1", "Hits@3", "Hits@5", "Val Hits@3", "Hyper-parameters",
    ]  # fmt: skip
    ties = table5[table5["Method"] == "TIES"].set_index("Source")
    assert list(ties.loc["paper", ["Hits@1", "Hits@3", "Hits@5"]]) == [43.7, 65.4, 73.9]
    assert list(ties.loc["Δ", ["Hits@1", "Hits@3", "Hits@5"]]) == pytest.approx([0.3, 0.6, 1.1])
    assert ties.loc["ours", "Val Hits@3"] == 67.0 and ties.loc["ours", "Hyper-parameters"] == "lam=0.6, top_k=30"
    hybrid = table5[table5["Method"] == "Ours (SVD+CUR hybrid)"].set_index("Source")
    assert list(hybrid.loc["paper", ["Hits@1", "Hits@3", "Hits@5"]]) == [47.9, 68.6, 76.2]  # the paper's "Ours"
    dare = table5[table5["Method"] == "DARE-TIES"]
    assert list(dare["Source"]) == ["ours", "ours std", "paper", "Δ"]
    paper_only = table5[table5["Selection"].eq("") & ~table5["Method"].isin(["TIES", "DARE-TIES"])]
    assert {"Ensemble", "LoRA-LEGO", "K-TIES", "K-DARE-TIES", "TA"} <= set(paper_only["Method"])
    assert "Ensemble" in to_markdown(table5).split("Rows of the paper only")[1]
    assert "40.00 ± 0.50" in to_markdown(table5)

    table9 = table9_joint_per_task(selections, paper="vit-b32", rules=["grid"])
    assert list(table9.columns) == ["Method", "Data", "Selection", "Source", "Metric", *VIT_COLUMNS, "Union"]
    ties3 = table9[(table9["Method"] == "TIES") & (table9["Metric"] == "Hits@3")].set_index("Source")
    paper_ties3 = [85.0, 61.4, 20.6, 63.5, 48.2, 82.7, 83.8, 53.6]
    assert list(ties3.loc["ours", VIT_COLUMNS]) == per_task[3]
    assert list(ties3.loc["paper", VIT_COLUMNS]) == paper_ties3
    assert list(ties3.loc["Δ", VIT_COLUMNS]) == pytest.approx(
        [o - p for o, p in zip(per_task[3], paper_ties3, strict=True)]
    )
    assert ties3.loc["ours", "Union"] == 66.0 and ties3.loc["Δ", "Union"] == pytest.approx(66.0 - 65.4)
    ensemble = table9[table9["Method"] == "Ensemble"]
    assert list(ensemble["Source"]) == ["paper"] * 3 and list(ensemble["Metric"]) == ["Hits@1", "Hits@3", "Hits@5"]
    spec, cells = parse_tabular(to_latex(table9))
    assert len(spec) == len(table9.columns) and all(len(row) == len(spec) for row in cells)

    plain = table5_joint({"ties": selections["ties"]})
    assert "Source" not in plain.columns and list(plain["Selection"]) == ["greedy", "grid"]
    assert any("Σ hits / Σ N" in note for note in plain.attrs["notes"])


def test_joint_tables_with_hits_at_10_which_the_paper_does_not_print():
    # KnOTS's scripts count Hits@{1,3,5,10}; the paper's Tables 5 and 9 print 1, 3 and 5
    per_task = {k: [float(10 * k + i) for i in range(8)] for k in (1, 3, 5, 10)}
    selections = {
        "ties": joint_selection({1: 44.0, 3: 66.0, 5: 75.0, 10: 85.0}, per_task),
        "dare_ties": joint_selection({1: 40.0, 3: 60.0, 5: 70.0, 10: 80.0}, per_task, std=0.5),
    }
    table5 = table5_joint(selections, paper="vit-b32", rules=["grid"])
    assert [c for c in table5.columns if c.startswith("Hits@")] == ["Hits@1", "Hits@3", "Hits@5", "Hits@10"]
    ties = table5[table5["Method"] == "TIES"].set_index("Source")
    assert ties.loc["ours", "Hits@10"] == 85.0
    assert list(ties.loc["paper", ["Hits@1", "Hits@3", "Hits@5"]]) == [43.7, 65.4, 73.9]
    assert pd.isna(ties.loc["paper", "Hits@10"]) and pd.isna(ties.loc["Δ", "Hits@10"])
    assert ties.loc["Δ", "Hits@5"] == pytest.approx(75.0 - 73.9)
    assert any("prints no Hits@10" in note for note in table5.attrs["notes"])
    lines = [line for line in to_markdown(table5).splitlines() if line.startswith("| TIES")]
    assert lines[0].count("85.00") == 1 and "nan" not in to_markdown(table5).lower()
    spec, cells = parse_tabular(to_latex(table5))
    assert all(len(row) == len(spec) for row in cells)

    table9 = table9_joint_per_task(selections, paper="vit-b32", rules=["grid"])
    ties10 = table9[(table9["Method"] == "TIES") & (table9["Metric"] == "Hits@10")]
    assert list(ties10["Source"]) == ["ours"] and list(ties10["Union"]) == [85.0]  # no paper row to set beside it
    dare10 = table9[(table9["Method"] == "DARE-TIES") & (table9["Metric"] == "Hits@10")]
    assert list(dare10["Source"]) == ["ours", "ours std"]
    assert list(table9[(table9["Method"] == "TIES") & (table9["Metric"] == "Hits@5")]["Source"]) == [
        "ours", "paper", "Δ",
    ]  # fmt: skip
    assert any("prints no Hits@10" in note for note in table9.attrs["notes"])
    assert not any("prints no" in note for note in table5_joint(selections).attrs["notes"])  # no paper, no note


def test_table7_and_energy_tables_with_the_paper():
    finetuned = {task: {"test": 0.5} for task in VIT_TASKS}
    evaluations = [
        {
            "method": "hybrid",
            "point": {"alpha": alpha},
            "records": [
                {"lam": 1.0, "task": task, "split": split, "correct": 300 + int(100 * alpha), "total": 1000}
                for task in VIT_TASKS
                for split in ("val", "test")
            ],
        }
        for alpha in (0.0, 0.3, 0.25)
    ]
    sweep = table7_alpha_sweep(build_setting_table(evaluations, finetuned), paper="vit-b32", normalized_by="measured")
    ours = sweep[sweep["Source"] == "ours"]
    assert list(ours["alpha"]) == [0.0, 0.25, 0.3]
    assert list(sweep[sweep["Source"] == "paper"]["alpha"]) == pytest.approx([0.1 * i for i in range(11)])
    at_03 = sweep[sweep["alpha"].round(9) == 0.3].set_index("Source")
    assert list(at_03.index) == ["ours", "paper", "Δ"]
    assert at_03.loc["ours", "Cars"] == pytest.approx(66.0)  # 0.33 / 0.5
    assert at_03.loc["Δ", "Cars"] == pytest.approx(66.0 - 83.5)
    assert at_03.loc["Δ", "Avg"] == pytest.approx(66.0 - 69.1)
    assert list(sweep[sweep["alpha"] == 0.25]["Source"]) == ["ours"]  # the paper has no α = 0.25
    assert pd.isna(at_03.loc["paper", "Val Avg"])
    ours_back, paper_back = split_sources(pd.read_csv(io.StringIO(to_csv(sweep))))
    assert len(ours_back) == 3 and len(paper_back) == 11

    energy = ENERGY.assign(task=["cars", "dtd", "eurosat"])
    table1 = table1_svd_energy(energy, paper="vit-b32")
    cars = table1[table1["Dataset"] == "Cars"].set_index("Source")
    assert list(cars.index) == ["ours", "paper", "Δ"]
    assert list(cars.loc["paper", ["Original Energy", "SVD Energy", "O-S", "Energy Ratio"]]) == [
        31.69,
        30.34,
        1.35,
        0.958,
    ]
    assert list(cars.loc["Δ", ["Original Energy", "Energy Ratio"]]) == pytest.approx([0.0, 0.0])
    assert list(table1[table1["Dataset"] == "SVHN"]["Source"]) == ["paper"]  # a task we do not have
    table2 = table2_cur_energy(energy, paper="vit-b32")
    dtd = table2[table2["Dataset"] == "DTD"].set_index("Source")
    assert dtd.loc["paper", "Energy Ratio"] == 0.939 and dtd.loc["Δ", "O-C"] == pytest.approx(0.14 - 0.14)


def test_finetuned_table_with_and_without_published_values():
    published = dict(zip(VIT_TASKS, [74.0, 58.3, 99.0, 92.7, 99.3, 88.4, 64.5, 96.2], strict=True))
    table = finetuned_table(VIT_FINETUNED, tasks=VIT_TASKS, published=published, normalized_by="published")
    assert list(table.columns) == ["Dataset", "Val", "Test", "Published", "Δ"]
    assert list(table["Dataset"]) == [*VIT_COLUMNS, "Average"]
    cars = table.iloc[0]
    assert [cars["Val"], cars["Test"], cars["Published"], cars["Δ"]] == pytest.approx([50.0, 60.0, 74.0, -14.0])
    assert table.iloc[-1]["Published"] == pytest.approx(84.05)
    assert table.iloc[-1]["Δ"] == pytest.approx(table["Δ"].iloc[:-1].mean())
    assert "Normalization base: published" in to_markdown(table)
    demo = finetuned_table(FINETUNED | {"stanford_cars": {"test": 0.8, "val": 0.7}}, normalized_by="measured")
    assert list(demo.columns) == ["Dataset", "Val", "Test"]
    with pytest.raises(ValueError, match="svhn"):
        finetuned_table(VIT_FINETUNED, tasks=VIT_TASKS, published={"cars": 74.0})


def test_table3_from_a_replicated_search():
    # dare_ties at two λ, three seeds: the table shows the seed mean and its sample std from select_method
    records = lambda seed: [  # noqa: E731
        {"lam": lam, "task": task, "split": split, "correct": 40 + 10 * seed + int(10 * lam), "total": 100}
        for lam in (0.5, 1.0)
        for task in TASKS
        for split in ("val", "test")
    ]
    evaluations = [
        {"method": "dare_ties", "point": {"drop_p": 0.1, "seed": seed, "top_k": 100}, "records": records(seed)}
        for seed in (0, 1, 2)
    ]
    finetuned = {task: {"test": 0.5, "val": 0.5} for task in TASKS}
    selection = select_method(
        evaluations, finetuned, ["lam"], {"lam": [0.5, 1.0]}, {"drop_p": 0.1}, replicates={"seed": [0, 1, 2]}
    )
    table = table3_per_task({"dare_ties": selection}, finetuned, rules=["grid"])
    ours, spread = table.iloc[1], table.iloc[2]
    assert ours["Hyper-parameters"] == "lam=1, drop_p=0.1, top_k=100"  # no seed
    assert ours["DTD"] == pytest.approx(120.0)  # (0.5, 0.6, 0.7) / 0.5 → mean 120
    assert (
        spread["Source"] == "ours std"
        and spread["DTD"] == pytest.approx(20.0)
        and spread["Average"] == pytest.approx(20.0)
    )
    assert "120.00 ± 20.00" in to_markdown(table)
    # one seed has no sample spread: no std row, and without a paper the demo's layout
    one = select_method(
        evaluations[:1], finetuned, ["lam"], {"lam": [0.5, 1.0]}, {"drop_p": 0.1}, replicates={"seed": [0]}
    )
    single = table3_per_task({"dare_ties": one}, finetuned, rules=["grid"])
    assert "Source" not in single.columns and len(single) == 2
    assert single.iloc[1]["DTD"] == pytest.approx(100.0) and "±" not in to_markdown(single)


def test_figure3_overlays_the_papers_curve(tmp_path: Path):
    sweep = table7_alpha_sweep(hybrid_table())
    paper = pd.DataFrame({"alpha": [0.0, 0.5, 1.0], "Avg": [67.5, 69.7, 67.7]})
    draw = lambda folder, **paper: alpha_sweep_figure(  # noqa: E731
        sweep, tmp_path / folder / "fig3", branches=HYBRID_BRANCHES, selected_alpha=0.5, **paper
    )
    with_paper, again, without = draw("a", paper=paper), draw("b", paper=paper), draw("c")
    assert [p.read_bytes() for p in with_paper] == [p.read_bytes() for p in again]
    assert with_paper[0].read_bytes() != without[0].read_bytes()


def test_paper_tables_are_read_from_the_package():
    table3 = read_paper_table("vit-b32", "table3")
    assert list(table3.columns[1:9]) == VIT_COLUMNS and "Ours-TIES" in set(table3["method"])
    assert read_paper_table("vit-b32", "table5").shape == (3, 9)
    with pytest.raises(ValueError, match="table4"):
        read_paper_table("vit-b32", "table4")
