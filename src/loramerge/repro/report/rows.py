"""Rows of a table under construction: ours, the spread over replicates, the paper's, and ``Δ = ours − paper``; the
column names every table shares; and the notes tables print under themselves.

The tables that compare methods label each row with the data its merge read besides the adapters (``Data``, from the
method catalogue), so that training-free rows stand apart from data-using ones.

With a paper, a table gets a ``Source`` column and, under each of our rows (``ours``), the paper's row (``paper``) and
the difference (``Δ``); methods scored over replicates show the mean and, in the row after it (``ours std``), the
sample standard deviation. Each table records its title, notes and ``std`` rows in ``df.attrs`` for the renderers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from loramerge.methods.catalog import DATA_JOINER, NEED_DATA, NO_DATA
from loramerge.repro.report.naming import method_display_name
from loramerge.repro.search import NORMALIZATION_NOTES, JointSelection, ParamValue, Selection

FINETUNED_ROW = "Fine-tuned"
AVERAGE_COLUMN = "Average"
VAL_AVERAGE_COLUMN = "Val Average"
PARAMS_COLUMN = "Hyper-parameters"
SWEEP_AVERAGE_COLUMN = "Avg"
SWEEP_VAL_AVERAGE_COLUMN = "Val Avg"
UNION_COLUMN = "Union"
SOURCE_COLUMN = "Source"
DATA_COLUMN = "Data"
OURS, OURS_STD, PAPER, DELTA = "ours", "ours std", "paper", "Δ"
SPREAD = "±"

Row = dict[str, Any]


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def number(value: Any) -> float:
    """A JSON number as a float; null (the spread of a single replicate) as NaN."""
    return math.nan if value is None else float(value)


def per_task_values(per_task: Mapping[str, Any], tasks: Sequence[str], what: str) -> list[float]:
    """The numbers of ``tasks`` in order; an error naming ``what`` if one is missing."""
    missing = [task for task in tasks if task not in per_task]
    if missing:
        raise ValueError(f"{what} has no score for tasks {missing}")
    return [number(per_task[task]) for task in tasks]


def _delta(ours: Row, paper: Row, columns: Sequence[str]) -> Row:
    """``ours − paper`` per column, NaN where either is missing."""
    delta = {}
    for column in columns:
        a, b = number(ours.get(column)), number(paper.get(column))
        delta[column] = a - b if math.isfinite(a) and math.isfinite(b) else math.nan
    return delta


class Rows:
    """Rows of a table under construction, with the positions of the ``ours std`` rows.

    ``setting_columns`` are the labels that state a row's setting (its hyper-parameters, an α sweep's α); the
    ``ours std`` row leaves them empty, its setting being the row above's (so a renderer folds no label into
    ``mean ± std``)."""

    def __init__(self, setting_columns: Sequence[str] = (PARAMS_COLUMN,)) -> None:
        self.rows: list[Row] = []
        self.std_rows: list[int] = []
        self.setting_columns = tuple(setting_columns)

    def ours(self, labels: Row, values: Row, std: Row | None = None) -> None:
        self.rows.append({**labels, SOURCE_COLUMN: OURS, **values})
        if std is not None:
            blank = {
                column: "" if isinstance(labels[column], str) else math.nan
                for column in self.setting_columns
                if column in labels
            }
            self.rows.append({**labels, **blank, SOURCE_COLUMN: OURS_STD, **std})
            self.std_rows.append(len(self.rows) - 1)

    def paper(self, labels: Row, values: Row) -> None:
        self.rows.append({**labels, SOURCE_COLUMN: PAPER, **values})

    def delta(self, labels: Row, ours: Row, paper: Row, columns: Sequence[str]) -> None:
        self.rows.append({**labels, SOURCE_COLUMN: DELTA, **_delta(ours, paper, columns)})

    def frame(self, columns: Sequence[str], *, with_source: bool, title: str, notes: Sequence[str]) -> pd.DataFrame:
        if not with_source:
            columns = [column for column in columns if column != SOURCE_COLUMN]
        table = pd.DataFrame(self.rows, columns=list(columns))
        for column in table.columns:
            if table[column].dtype == object:
                table[column] = table[column].where(table[column].notna(), "")
        table.attrs["markdown_floatfmt"] = {}
        table.attrs["std_rows"] = list(self.std_rows)
        table.attrs["title"] = title
        table.attrs["notes"] = [note for note in notes if note]
        return table


def check_paper_tasks(paper: str, table: str, columns: Sequence[str], task_columns: Sequence[str]) -> None:
    missing = [column for column in task_columns if column not in columns]
    if missing:
        raise ValueError(f"report.paper {paper!r}: the paper's {table} has no columns {missing} for our tasks")


def normalization_note(normalized_by: str | None) -> str:
    """The sentence a table prints about its normalization base (``evaluate.normalize_by``)."""
    if normalized_by is None:
        return ""
    meaning = NORMALIZATION_NOTES.get(normalized_by, normalized_by)
    return f"Normalization base: {normalized_by} (accuracies are {meaning})."


def replicates_note(selections: Mapping[str, Selection | JointSelection], methods: Sequence[str]) -> str:
    replicated = [method for method in methods if selections[method].replicate_count > 1]
    if not replicated:
        return ""
    return spread_note(replicated, selections[replicated[0]].replicates or {})


def spread_note(methods: Sequence[str], replicates: Mapping[str, Sequence[ParamValue]]) -> str:
    """The sentence under a table whose ``methods`` show mean ± spread over ``replicates`` (``{"seed": [0, 1, 2]}``)."""
    spec = "; ".join(f"{name} {list(values)}" for name, values in sorted(replicates.items()))
    names = ", ".join(method_display_name(method) for method in methods)
    return (
        f"{names}: mean {SPREAD} sample standard deviation (ddof=1) over the replicates ({spec}); "
        f"the CSV gives the standard deviation in the '{OURS_STD}' row."
    )


def data_note(rows: Iterable[Row]) -> str:
    """The legend of the ``Data`` column for the labels ``rows`` show, the data every selection reads, and which rows
    have no label (no merge of a catalogued method)."""
    rows = list(rows)  # read twice
    parts = {part for row in rows if row[DATA_COLUMN] for part in row[DATA_COLUMN].split(DATA_JOINER)}
    legend = [f"{NO_DATA}: training-free, the adapters alone"] if NO_DATA in parts else []
    legend += [f"{label}: {meaning}" for label, meaning in NEED_DATA.values() if label in parts]
    note = f"{DATA_COLUMN}: what a merge reads besides the adapters"
    note += f" ({'; '.join(legend)})." if legend else "."
    note += " Every method's hyper-parameters are also selected on labelled validation data."
    unlabelled = list(dict.fromkeys(row["Method"] for row in rows if not row[DATA_COLUMN]))
    if unlabelled:
        note += f" No {DATA_COLUMN} for {', '.join(unlabelled)}: no merge of a catalogued method."
    return note


def paper_note(paper: str, table: str, paper_only: Sequence[str]) -> str:
    name = table.replace("table", "Table ")
    note = f"paper: the published numbers of the paper's {name} ({paper}); {DELTA} = ours − paper."
    if paper_only:
        note += f" Rows of the paper only (not run here): {', '.join(paper_only)}."
    return note
