"""The per-task table: per-task normalized test accuracy of every method's selected setting, beside the paper's.

The paper prints it once per suite, under its own number (Table 3 for ViT-B/32, Table 4 for Llama-3-8B): the paper's
folder says which by the name of the file it holds, ``table<N>_pertask.csv``, and our table takes that name, so the
workflow needs to know no suite. Without a paper it is Table 3's analogue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources

import pandas as pd

from loramerge.repro.report import paper as paper_package
from loramerge.repro.report.naming import (
    data_seen,
    format_params,
    method_display_name,
    ordered_methods,
    paper_method_name,
    paper_row_data_seen,
)
from loramerge.repro.report.naming import task_columns as display_columns
from loramerge.repro.report.paper import COPIED_FROM_KNOTS, FULL_FINETUNE, PAPERS, read_paper_table
from loramerge.repro.report.rows import (
    AVERAGE_COLUMN,
    DATA_COLUMN,
    FINETUNED_ROW,
    PARAMS_COLUMN,
    SOURCE_COLUMN,
    VAL_AVERAGE_COLUMN,
    Row,
    Rows,
    check_paper_tasks,
    data_note,
    mean,
    normalization_note,
    number,
    paper_note,
    per_task_values,
    replicates_note,
)
from loramerge.repro.search import RULES, Finetuned, Selection

DEFAULT_TABLE = "table3"  # the paper's first per-task table: the name without a paper
_PERTASK_FILE = re.compile(r"(table\d+)_pertask\.csv")
TITLE = (
    "Per-task normalized test accuracy (%) of each method at its selected hyper-parameters "
    "(greedy: the KnOTS authors' linear search; grid: the full-grid argmax; both on validation)"
)


def pertask_table(paper: str | None) -> str:
    """The paper's name of the per-task table (``table3``, ``table4``): the ``table<N>_pertask.csv`` its folder holds.

    Without a paper, ``table3``. The per-task table's files are ``<name>_pertask.{csv,md,tex}``.
    """
    if paper is None:
        return DEFAULT_TABLE
    if paper not in PAPERS:
        raise ValueError(f"report.paper {paper!r} is not one of the papers with published numbers {list(PAPERS)}")
    folder = resources.files(paper_package).joinpath(paper)
    tables = sorted(match[1] for entry in folder.iterdir() if (match := _PERTASK_FILE.fullmatch(entry.name)))
    if len(tables) != 1:
        raise ValueError(f"report.paper {paper!r}: expected one per-task table table<N>_pertask.csv, found {tables}")
    return tables[0]


def _display(table: str) -> str:
    return table.replace("table", "Table ")


def _normalized_by(selections: Mapping[str, Selection], methods: Sequence[str]) -> str | None:
    bases = {selections[method].normalized_by for method in methods}
    if len(bases) > 1:
        raise ValueError(f"the selections were normalized by different bases {sorted(map(str, bases))}")
    return next(iter(bases), None)


def _published_rows(
    paper: str, table: str, columns: Sequence[str], task_columns: Sequence[str]
) -> tuple[dict[str, Row], list[str]]:
    """The paper's rows of its per-task `table` by method name, and the methods whose rows it copied from KnOTS."""
    printed = read_paper_table(paper, table)
    check_paper_tasks(paper, _display(table), printed.columns, task_columns)
    published, copied = {}, []
    for _, row in printed.iterrows():
        published[str(row["method"])] = {column: float(row[column]) for column in columns}
        if row.get("source") == COPIED_FROM_KNOTS:
            copied.append(str(row["method"]))
    return published, copied


def table3_per_task(
    selections: Mapping[str, Selection],
    finetuned: Finetuned,
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = RULES,
    tasks: Sequence[str] | None = None,
    base_split: str = "test",
    paper: str | None = None,
) -> pd.DataFrame:
    """The per-task table (Table 3, or the paper's number for it, see :func:`pertask_table`): one row per (selection
    rule, method), normalized test accuracy per task, ``Average`` over them.

    ``selections`` maps a method to its :func:`loramerge.repro.search.select_method` result. The first row is the
    fine-tuned models' absolute ``base_split`` accuracy in %, as measured here. Rows follow ``rules`` then ``methods``
    (default: the catalogue's order, then any other method by name). Columns: ``Method, Data, Selection, [Source],
    <tasks…>, Average, Val Average, Hyper-parameters``; ``Data`` is what the method's merge read besides the adapters
    (:func:`~loramerge.repro.report.naming.data_seen`), empty for the fine-tuned row.
    """
    tasks = list(tasks) if tasks is not None else sorted(finetuned)
    task_columns = display_columns(tasks)
    values_columns = [*task_columns, AVERAGE_COLUMN]
    table = pertask_table(paper)
    methods = ordered_methods(selections, methods)
    for method in methods:
        if not isinstance(selections[method], Selection):
            raise ValueError(
                f"{_display(table)} needs the per-task selection of {method!r}, not {type(selections[method])}"
            )
        for rule in rules:
            selections[method].chosen(rule)
    published, copied = ({}, []) if paper is None else _published_rows(paper, table, values_columns, task_columns)

    rows = Rows()
    finetuned_values = [100.0 * float(finetuned[task][base_split]) for task in tasks]
    finetuned_row = {**dict(zip(task_columns, finetuned_values, strict=True)), AVERAGE_COLUMN: mean(finetuned_values)}
    labels = {"Method": FINETUNED_ROW, DATA_COLUMN: "", "Selection": "", PARAMS_COLUMN: ""}
    rows.ours(labels, finetuned_row)
    if paper is not None:
        rows.paper(labels, published[FULL_FINETUNE])
        rows.delta(labels, finetuned_row, published[FULL_FINETUNE], values_columns)

    mapped = {}
    for rule in rules:
        for method in methods:
            chosen = selections[method].chosen(rule)
            values = per_task_values(chosen.test.per_task, tasks, f"{method} ({rule}) test")
            ours = {
                **dict(zip(task_columns, values, strict=True)),
                AVERAGE_COLUMN: mean(values),
                VAL_AVERAGE_COLUMN: number(chosen.val.mean),
            }
            std = None
            if chosen.has_spread:
                spread = per_task_values(chosen.test.std.per_task, tasks, f"{method} ({rule}) test std")
                std = {
                    **dict(zip(task_columns, spread, strict=True)),
                    AVERAGE_COLUMN: number(chosen.test.std.mean),
                    VAL_AVERAGE_COLUMN: number(chosen.val.std.mean),
                }
            labels = {
                "Method": method_display_name(method),
                DATA_COLUMN: data_seen(method, chosen.params),
                "Selection": rule,
            }
            rows.ours({**labels, PARAMS_COLUMN: format_params(chosen.params)}, ours, std)
            name = paper_method_name(table, method) if paper is not None else None
            if name in published:
                mapped[name] = method
                rows.paper({**labels, "Selection": ""}, published[name])
                rows.delta(labels, ours, published[name], values_columns)
    paper_only = [name for name in published if name not in mapped and name != FULL_FINETUNE]
    for name in paper_only:
        rows.paper({"Method": name, DATA_COLUMN: paper_row_data_seen(table, name), "Selection": ""}, published[name])

    notes = [
        normalization_note(_normalized_by(selections, methods)),
        f"The {FINETUNED_ROW} row is each adapter's {base_split} accuracy (%) measured in this run.",
        data_note(rows.rows),
        replicates_note(selections, methods),
    ]
    if paper is not None:
        notes.append(paper_note(paper, table, paper_only))
        if copied:
            notes.append(f"The paper took its rows {', '.join(copied)} from KnOTS (Stoica et al., 2025).")
    return rows.frame(
        ["Method", DATA_COLUMN, "Selection", SOURCE_COLUMN, *values_columns, VAL_AVERAGE_COLUMN, PARAMS_COLUMN],
        with_source=paper is not None or bool(rows.std_rows),
        title=TITLE if paper is None else f"As in the paper's {_display(table)} ({paper}): {TITLE}",
        notes=notes,
    )
