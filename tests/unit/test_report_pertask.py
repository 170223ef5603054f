"""The per-task table under the paper's number for it: Table 4 (Llama-3-8B × 6 NLI tasks) with the paper's rows and
Δ beside ours, Table 3 for ViT-B/32 and for a suite without a paper; on synthetic selections."""

from __future__ import annotations

import pandas as pd
import pytest

from loramerge.methods.catalog import CATALOG
from loramerge.repro.report.naming import paper_method_name
from loramerge.repro.report.paper import read_paper_table
from loramerge.repro.report.render import to_latex, to_markdown, write_table
from loramerge.repro.report.table3 import TITLE, pertask_table, table3_per_task
from loramerge.repro.search import Selection

NLI_TASKS = ["snli", "mnli", "sick", "qnli", "rte", "scitail"]
NLI_COLUMNS = ["SNLI", "MNLI", "SICK", "QNLI", "RTE", "SciTail"]
VIT_TASKS = ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]
NLI_FINETUNED = {task: {"val": 0.9 + i / 100, "test": 0.85 + i / 100} for i, task in enumerate(NLI_TASKS)}
# rows of the paper's Table 4, as printed
PAPER_FINETUNED = [92.5, 90.3, 91.6, 94.5, 89.9, 96.5]
PAPER_TIES = [92.3, 96.1, 66.2, 80.3, 96.0, 94.9]
PAPER_DARE = [94.3, 95.1, 87.6, 69.2, 97.8, 96.8]
PAPER_OURS = [92.9, 94.8, 93.2, 82.0, 97.0, 97.9]


def nli_selection(
    values: list[float], val_mean: float, std: list[float] | None = None, tasks: list[str] = NLI_TASKS
) -> Selection:
    """A search result over `tasks` whose greedy and grid choices both score `values` on test."""

    def split(mean: float) -> dict:
        scores = {"per_task": dict(zip(tasks, values, strict=True)), "mean": mean, "accuracy": {}}
        if std is not None:
            # (the replicates' own numbers are not read)
            scores["replicates"] = [{"seed": seed, **scores} for seed in (0, 1, 2)]
            scores["std"] = {"per_task": dict(zip(tasks, std, strict=True)), "mean": std[0] / 2}
        return scores

    summary = {"params": {"lam": 0.7, "top_k": 20}, "test": split(sum(values) / len(values)), "val": split(val_mean)}
    data = {
        "method": "m",
        "tasks": tasks,
        "settings_evaluated": 1,
        "greedy_path": [],
        "normalized_by": "published",
        "normalization_base": {},
        "greedy": summary,
        "grid": summary,
    }
    if std is not None:
        data["replicates"] = {"seed": [0, 1, 2]}
    return Selection.from_json(data)


def shifted(values: list[float], by: float) -> list[float]:
    return [value + by for value in values]


SELECTIONS = {
    "ties": nli_selection(shifted(PAPER_TIES, 1.0), 90.0),
    "dare_ties": nli_selection(shifted(PAPER_DARE, -2.0), 89.0, std=[0.5] * 6),
    "hybrid": nli_selection(shifted(PAPER_OURS, 0.5), 93.0),
    "cur_ties": nli_selection([80.0] * 6, 81.0),  # no row in the paper's Table 4
}


def table4() -> pd.DataFrame:
    return table3_per_task(SELECTIONS, NLI_FINETUNED, tasks=NLI_TASKS, paper="llama3-8b", rules=["grid"])


def rows_of(table: pd.DataFrame, method: str) -> pd.DataFrame:
    return table[table["Method"] == method].set_index("Source")


def test_the_per_task_table_is_table3_without_a_paper_and_for_vit_b32():
    assert pertask_table(None) == "table3"  # the demo and suites without a paper
    assert pertask_table("vit-b32") == "table3"
    with pytest.raises(ValueError, match="not one of the papers"):
        pertask_table("llama-70b")


def test_the_llama_papers_per_task_table_is_table4():
    assert pertask_table("llama3-8b") == "table4"


def test_the_packaged_table4_is_the_papers_and_names_our_methods_rows():
    printed = read_paper_table("llama3-8b", "table4")
    assert list(printed.columns) == ["method", *NLI_COLUMNS, "Average", "kind", "source"]
    assert list(printed["method"]) == [
        "Full Finetune", "TIES", "DARE-TIES", "KnOTS-TIES", "KnOTS-DARE-TIES", "CoreSpace-TIES", "LoRA-LEGO",
        "Ours-TIES",
    ]  # fmt: skip
    names = {method: paper_method_name("table4", method) for method in CATALOG}
    assert {method: name for method, name in names.items() if name is not None} == {
        "ties": "TIES",
        "dare_ties": "DARE-TIES",
        "knots_ties": "KnOTS-TIES",
        "knots_dare_ties": "KnOTS-DARE-TIES",
        "core_ties": "CoreSpace-TIES",
        "lora_lego": "LoRA-LEGO",
        "hybrid": "Ours-TIES",
    }  # Table 4 has no TA row


def test_table4_puts_the_papers_rows_and_delta_under_ours():
    table = table4()
    assert list(table.columns) == [
        "Method", "Data", "Selection", "Source", *NLI_COLUMNS, "Average", "Val Average", "Hyper-parameters",
    ]  # fmt: skip
    finetuned = table.iloc[:3].set_index("Source")
    assert list(table["Method"][:3]) == ["Fine-tuned"] * 3 and list(finetuned.index) == ["ours", "paper", "Δ"]
    assert list(finetuned.loc["paper", NLI_COLUMNS]) == PAPER_FINETUNED
    assert finetuned.loc["paper", "Average"] == 92.2  # as printed, not recomputed
    ours_finetuned = [100 * NLI_FINETUNED[task]["test"] for task in NLI_TASKS]
    assert list(finetuned.loc["Δ", NLI_COLUMNS]) == pytest.approx(
        [ours - paper for ours, paper in zip(ours_finetuned, PAPER_FINETUNED, strict=True)]
    )

    ties = rows_of(table, "TIES")
    assert list(ties.index) == ["ours", "paper", "Δ"]
    assert list(ties.loc["paper", NLI_COLUMNS]) == PAPER_TIES
    assert list(ties.loc["Δ", NLI_COLUMNS]) == pytest.approx([1.0] * 6)
    assert ties.loc["Δ", "Average"] == pytest.approx(sum(shifted(PAPER_TIES, 1.0)) / 6 - 87.6)
    assert ties.loc["ours", "Hyper-parameters"] == "lam=0.7, top_k=20" and ties.loc["Δ", "Selection"] == "grid"
    dare = rows_of(table, "DARE-TIES")
    assert list(dare.index) == ["ours", "ours std", "paper", "Δ"]
    assert list(dare.loc["ours std", NLI_COLUMNS]) == [0.5] * 6
    assert list(dare.loc["Δ", NLI_COLUMNS]) == pytest.approx([-2.0] * 6)
    ours = rows_of(table, "Ours (SVD+CUR hybrid)")  # our display name, the paper's Ours-TIES row
    assert list(ours.loc["paper", NLI_COLUMNS]) == PAPER_OURS
    assert list(ours.loc["Δ", NLI_COLUMNS]) == pytest.approx([0.5] * 6)
    assert list(rows_of(table, "CUR-TIES (UR)").index) == ["ours"]

    ran = set(table.loc[table["Source"] == "ours", "Method"])
    paper_only = table[~table["Method"].isin(ran)]
    assert set(paper_only["Source"]) == {"paper"} and set(paper_only["Selection"]) == {""}
    assert list(paper_only["Method"]) == ["KnOTS-TIES", "KnOTS-DARE-TIES", "CoreSpace-TIES", "LoRA-LEGO"]
    assert list(rows_of(table, "LoRA-LEGO").loc["paper", NLI_COLUMNS]) == [92.2, 59.9, 69.0, 59.0, 83.9, 83.3]


def test_table4_names_the_papers_table_in_its_title_and_notes():
    table = table4()
    assert table.attrs["title"] == f"As in the paper's Table 4 (llama3-8b): {TITLE}"
    notes = " ".join(table.attrs["notes"])
    assert "the paper's Table 4 (llama3-8b); Δ = ours − paper." in notes
    assert notes.endswith("not run here): KnOTS-TIES, KnOTS-DARE-TIES, CoreSpace-TIES, LoRA-LEGO.")
    assert "Normalization base: published" in notes
    assert "Stoica" not in notes  # the paper ran every row of Table 4 itself
    markdown = to_markdown(table)
    assert "| 92.30 ± 0.50 |" in markdown  # DARE-TIES: mean ± std over the seeds
    assert "\\caption{As in the paper's Table 4 (llama3-8b)" in to_latex(table)


def test_table4_is_written_under_its_number(tmp_path):
    paths = write_table(table4(), tmp_path / f"{pertask_table('llama3-8b')}_pertask")
    assert [path.name for path in paths] == ["table4_pertask.csv", "table4_pertask.md", "table4_pertask.tex"]
    assert pd.read_csv(paths[0])["Source"].tolist()[:3] == ["ours", "paper", "Δ"]


def test_vit_b32s_table_is_table3_in_its_title_and_notes():
    selection = nli_selection([70.0] * 8, 70.0, tasks=VIT_TASKS)
    finetuned = {task: {"test": 0.8} for task in VIT_TASKS}
    table = table3_per_task({"ta": selection}, finetuned, tasks=VIT_TASKS, paper="vit-b32")
    assert table.attrs["title"] == f"As in the paper's Table 3 (vit-b32): {TITLE}"
    assert any("the paper's Table 3 (vit-b32)" in note for note in table.attrs["notes"])


def test_table3_of_vit_b32_needs_the_vision_tasks():
    with pytest.raises(ValueError, match=r"vit-b32.*Table 3 has no columns \['SNLI', 'MNLI'"):
        table3_per_task(SELECTIONS, NLI_FINETUNED, tasks=NLI_TASKS, paper="vit-b32")


def test_table4_needs_the_nli_tasks():
    assert pertask_table("llama3-8b") == "table4"
    vision_finetuned = {"cars": {"test": 0.7}, "dtd": {"test": 0.6}}
    with pytest.raises(ValueError, match=r"llama3-8b.*Table 4 has no columns \['Cars', 'DTD'\]"):
        table3_per_task(SELECTIONS, vision_finetuned, paper="llama3-8b")


def test_without_a_paper_the_nli_table_is_table3s_plain_layout():
    table = table3_per_task(SELECTIONS, NLI_FINETUNED, tasks=NLI_TASKS, rules=["grid"])
    assert table.attrs["title"] == TITLE  # unnumbered, as the demo's
    assert list(table.columns[:5]) == ["Method", "Data", "Selection", "Source", "SNLI"]  # Source: DARE's std rows
    assert set(table["Source"]) == {"ours", "ours std"}
    assert not any("paper" in note for note in table.attrs["notes"])
