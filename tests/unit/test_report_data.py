"""The Data column of the tables that compare methods: what each row's merge read besides the adapters, from the
method catalogue, in the CSV, the Markdown and the LaTeX, for our rows and the paper's."""

from __future__ import annotations

import io

import pandas as pd
from test_report import VIT_FINETUNED, VIT_TASKS, joint_selection, parse_tabular, vit_selection

from loramerge.repro.report.joint import table5_joint, table9_joint_per_task
from loramerge.repro.report.naming import data_seen, paper_row_data_seen
from loramerge.repro.report.render import to_csv, to_latex, to_markdown
from loramerge.repro.report.table3 import table3_per_task

EXPECTED = {
    "TA": "none",
    "Ours (SVD+CUR hybrid)": "none",
    "RegMean": "train inputs",
    "Fisher": "train inputs",
    "TARA-Merging": "val inputs",
}


def pertask_selections() -> dict:
    selections = {method: vit_selection([60.0 + i] * 8, 61.0) for i, method in enumerate(("ta", "regmean", "tara"))}
    selections["fisher"] = vit_selection([55.0] * 8, 56.0, std=[0.5] * 8)  # a replicated row, folded as mean ± std
    selections["hybrid"] = vit_selection([70.0] * 8, 71.0)
    return selections


def joint_selections() -> dict:
    per_task = {k: [float(10 * k + i) for i in range(8)] for k in (1, 3, 5)}
    methods = ("ta", "regmean", "fisher", "tara", "hybrid")
    return {method: joint_selection({1: 40.0 + i, 3: 60.0, 5: 70.0}, per_task) for i, method in enumerate(methods)}


def data_by_method(table: pd.DataFrame) -> dict[str, set[str]]:
    return {method: set(rows["Data"]) for method, rows in table.groupby("Method")}


def markdown_cells(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]  # past header and rule


def assert_rendered_labels(table: pd.DataFrame, expected: dict[str, str]) -> None:
    """The CSV, Markdown and LaTeX of ``table`` give each method in ``expected`` its label, in the Data column."""
    written = pd.read_csv(io.StringIO(to_csv(table)), keep_default_na=False)
    header, *latex_rows = parse_tabular(to_latex(table))[1]
    markdown_rows = markdown_cells(to_markdown(table))
    data = list(table.columns).index("Data")
    assert header[data] == "Data"
    for method, label in expected.items():
        assert set(written.loc[written["Method"] == method, "Data"]) == {label}, method
        assert {row[data] for row in markdown_rows if row[0] == method} == {label}, method
        assert {row[data] for row in latex_rows if row[0] == method} == {label}, method


def test_table3_labels_each_methods_rows_with_the_data_it_read():
    table = table3_per_task(pertask_selections(), VIT_FINETUNED, tasks=VIT_TASKS)
    assert list(table.columns[:3]) == ["Method", "Data", "Selection"]
    assert data_by_method(table) == {**{method: {label} for method, label in EXPECTED.items()}, "Fine-tuned": {""}}
    assert_rendered_labels(table, EXPECTED)
    assert "| Fisher | train inputs | greedy | ours | 55.00 ± 0.50 |" in " ".join(to_markdown(table).split())


def test_table3_notes_explain_the_labels_and_the_labelled_selection_once():
    table = table3_per_task(pertask_selections(), VIT_FINETUNED, tasks=VIT_TASKS)
    (note,) = [note for note in table.attrs["notes"] if note.startswith("Data:")]
    assert "train inputs: statistics collected on each task's unlabelled training inputs" in note
    assert "val inputs: coefficients learned on the tasks' unlabelled validation inputs" in note
    assert "none: training-free" in note and "selected on labelled validation data" in note
    assert "No Data for Fine-tuned" in note
    assert note in to_markdown(table) and "unlabelled training inputs" in to_latex(table)

    training_free = table3_per_task({"ta": pertask_selections()["ta"]}, VIT_FINETUNED, tasks=VIT_TASKS)
    (plain,) = [note for note in training_free.attrs["notes"] if note.startswith("Data:")]
    assert "none: training-free" in plain and "train inputs" not in plain and "val inputs" not in plain


def test_the_papers_rows_take_the_label_of_the_method_they_stand_for():
    ta = {"ta": pertask_selections()["ta"]}
    table = table3_per_task(ta, VIT_FINETUNED, tasks=VIT_TASKS, paper="vit-b32", rules=["grid"])
    paper_rows = table[table["Source"] == "paper"].set_index("Method")["Data"]
    assert paper_rows["RegMean"] == paper_rows["Fisher"] == "train inputs"  # not run here: from the catalogue
    assert paper_rows["TA"] == paper_rows["Ours-TIES"] == paper_rows["LoRA-LEGO"] == "none"
    assert paper_rows["Fine-tuned"] == ""  # the paper's Full Finetune row
    assert set(table.loc[table["Method"] == "TA", "Data"]) == {"none"}  # ours, the paper's and Δ
    assert_rendered_labels(table, {"RegMean": "train inputs", "Fisher": "train inputs", "TA": "none"})


def test_table5_labels_ours_and_the_papers_rows():
    table5 = table5_joint(joint_selections(), paper="vit-b32")
    assert list(table5.columns[:3]) == ["Method", "Data", "Selection"]
    assert data_by_method(table5) == {
        **{method: {label} for method, label in EXPECTED.items()},
        "Ensemble": {""},  # the paper's only, no catalogued method
        **{paper_row: {"none"} for paper_row in ("TIES", "DARE-TIES", "K-TIES", "K-DARE-TIES", "LoRA-LEGO")},
    }
    assert_rendered_labels(table5, EXPECTED)
    assert any(note.startswith("Data:") and "No Data for Ensemble" in note for note in table5.attrs["notes"])


def test_table9_labels_every_metric_row():
    table9 = table9_joint_per_task(joint_selections(), rules=["grid"])
    assert list(table9.columns[:3]) == ["Method", "Data", "Selection"]
    assert data_by_method(table9) == {method: {label} for method, label in EXPECTED.items()}
    assert (table9["Method"] == "RegMean").sum() == 3  # Hits@1, 3, 5
    assert_rendered_labels(table9, EXPECTED)


def test_a_two_branch_merge_reads_what_its_branches_read():
    assert data_seen("mix", {"first": "knots_ties", "second": "lora_lego", "alpha": 0.5}) == "none"
    assert data_seen("mix", {"first": "regmean", "second": "ta"}) == "train inputs"
    assert data_seen("mix", {"first": "tara", "second": "fisher"}) == "train inputs + val inputs"
    assert data_seen("hybrid", {"svd.lam": 1.0}) == "none"  # its branches are the catalogue's
    assert data_seen("not_catalogued") == ""


def test_paper_rows_map_through_each_tables_names():
    assert paper_row_data_seen("table3", "RegMean") == "train inputs"
    assert paper_row_data_seen("table5", "K-TIES") == paper_row_data_seen("table4", "Ours-TIES") == "none"
    assert paper_row_data_seen("table5", "Ensemble") == paper_row_data_seen("table3", "Full Finetune") == ""
    assert paper_row_data_seen("table5", "KnOTS-TIES") == ""  # Table 5 calls it K-TIES
