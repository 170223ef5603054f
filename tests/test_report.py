"""Report tables and figures: shapes, values, row order, and identical bytes when written twice."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from loramerge.report import tables
from loramerge.report.figures import (
    figure1_overlap_heatmap,
    figure2_cur_spaces,
    figure3_alpha_curve,
    overlap_matrix,
    parse_module_path,
)
from loramerge.search import build_setting_table

TASKS = ("dtd", "mnist", "stanford_cars")
FINETUNED = {"dtd": {"test": 0.5, "val": 0.6}, "mnist": {"test": 0.99, "val": 0.98}, "stanford_cars": {"test": 0.8}}


def selection(params: dict, test: dict[str, float], val_mean: float) -> dict:
    summary = {
        "params": params,
        "test": {"per_task": test, "mean": sum(test.values()) / len(test), "accuracy": {}},
        "val": {"per_task": {}, "mean": val_mean, "accuracy": {}},
    }
    return {"greedy": summary, "grid": {**summary, "params": {**params, "lam": 9.0}}}


SELECTIONS = {
    "hybrid": selection({"alpha": 0.6, "lam": 1.0}, {"dtd": 90.0, "mnist": 80.0, "stanford_cars": 70.0}, 85.0),
    "ta": selection({"lam": 0.3}, {"dtd": 60.0, "mnist": 50.0, "stanford_cars": 40.0}, 55.5),
    "knots_ties": selection({"lam": 1.0, "top_k": 20}, {"dtd": 70.0, "mnist": 71.0, "stanford_cars": 72.0}, 71.0),
}


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
    table = tables.table3_per_task(SELECTIONS, FINETUNED)
    assert list(table.columns) == [
        "Method",
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
    table = tables.table3_per_task(SELECTIONS, FINETUNED, methods=["knots_ties", "ta"], rules=["grid"])
    assert list(table["Method"]) == ["Fine-tuned", "KnOTS-TIES", "TA"]
    with pytest.raises(ValueError, match="cur_ties"):
        tables.table3_per_task(SELECTIONS, FINETUNED, methods=["cur_ties"])


def test_table7_alpha_rows_ascending_with_normalised_test_and_val_average():
    sweep = tables.table7_alpha_sweep(hybrid_table(), fixed={"lam": 1.0, "alpha": 0.6})
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
        tables.table7_alpha_sweep(more)
    assert len(tables.table7_alpha_sweep(more, fixed={"lam": 0.5})) == 1
    assert len(tables.table7_alpha_sweep(table)) == 3


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
    table1 = tables.table1_svd_energy(tmp_path / "energy.csv")
    assert list(table1.columns) == ["Dataset", "Original Energy", "SVD Energy", "O-S", "Energy Ratio"]
    assert list(table1["Dataset"]) == ["Cars", "DTD", "EuroSAT"]
    assert list(table1["O-S"]) == pytest.approx([1.35, 0.76, 1.37])
    assert list(table1["Energy Ratio"]) == [0.958, 0.671, 0.929]
    table2 = tables.table2_cur_energy(ENERGY, tasks=["eurosat", "dtd"])
    assert list(table2.columns) == ["Dataset", "Original Energy", "Projected Energy", "O-C", "Energy Ratio"]
    assert list(table2["Dataset"]) == ["EuroSAT", "DTD"]
    assert list(table2["O-C"]) == pytest.approx([0.20, 0.14])
    with pytest.raises(ValueError, match="svhn"):
        tables.table1_svd_energy(ENERGY, tasks=["svhn"])


def test_written_tables_are_byte_identical_and_read_back(tmp_path: Path):
    table = tables.table3_per_task(SELECTIONS, FINETUNED)
    csv_path, md_path = tables.write_table(table, tmp_path / "out" / "table3")
    first = (csv_path.read_bytes(), md_path.read_bytes())
    tables.write_table(tables.table3_per_task(SELECTIONS, FINETUNED), tmp_path / "out" / "table3")
    assert (csv_path.read_bytes(), md_path.read_bytes()) == first
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table3.csv", "table3.md"]  # no temp files left
    text = first[0].decode()
    assert text.splitlines()[0] == "Method,Selection,DTD,MNIST,Cars,Average,Val Average,Hyper-parameters"
    assert "\r" not in text and "TA,greedy,60.0000,50.0000,40.0000,50.0000,55.5000,lam=0.3" in text
    back = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert back.shape == table.shape
    markdown = first[1].decode()
    assert markdown.startswith("| Method ")
    assert "| Fine-tuned " in markdown and "nan" not in markdown
    assert "| 60.00 |" in markdown and "| lam=1, top_k=20 " in markdown


def test_markdown_energy_ratio_has_three_decimals():
    markdown = tables.to_markdown(tables.table1_svd_energy(ENERGY))
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
    sweep = tables.table7_alpha_sweep(hybrid_table())
    cur_ur = selection({"lam": 1.0}, {"dtd": 90.0, "mnist": 95.0, "stanford_cars": 70.0}, 80.0)
    cur_r = selection({"lam": 0.8}, {"dtd": 85.0, "mnist": 60.0, "stanford_cars": 69.0}, 70.0)

    def draw(folder: Path) -> list[Path]:
        return [
            *figure1_overlap_heatmap(overlap_csv, folder / "figure1"),
            *figure2_cur_spaces(cur_ur, cur_r, folder / "figure2"),
            *figure3_alpha_curve(sweep, folder / "figure3", selected_alpha=0.5),
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
