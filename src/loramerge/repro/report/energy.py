"""Tables 1 and 2: the energy of each task's update kept by projection on the SVD subspace and on the CUR columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from loramerge.repro.report.naming import task_columns as display_columns
from loramerge.repro.report.paper import read_paper_table
from loramerge.repro.report.rows import SOURCE_COLUMN, Row, Rows, paper_note

ENERGY_COLUMNS = ("task", "original", "svd", "svd_ratio", "cur", "cur_ratio")


def load_energy(path: str | Path) -> pd.DataFrame:
    """Read ``energy.csv`` (``task,original,svd,svd_ratio,cur,cur_ratio``) and check its columns."""
    energy = pd.read_csv(path)
    missing = [column for column in ENERGY_COLUMNS if column not in energy.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return energy


def _energy_table(
    energy: pd.DataFrame | str | Path,
    tasks: Sequence[str] | None,
    projected: str,
    columns: Sequence[str],
    paper: str | None,
    paper_table: str,
    title: str,
) -> pd.DataFrame:
    if not isinstance(energy, pd.DataFrame):
        energy = load_energy(energy)
    energy = energy.set_index(energy["task"].astype(str), drop=False)
    if energy.index.has_duplicates:
        raise ValueError(f"energy table repeats tasks {sorted(set(energy.index[energy.index.duplicated()]))}")
    order = list(tasks) if tasks is not None else list(energy.index)
    missing = [task for task in order if task not in energy.index]
    if missing:
        raise ValueError(f"energy table has no rows for tasks {missing}")
    names = display_columns(order)
    published: dict[str, Row] = {}
    if paper is not None:
        printed = read_paper_table(paper, paper_table)
        published = {str(row[columns[0]]): {c: float(row[c]) for c in columns[1:]} for _, row in printed.iterrows()}

    rows = Rows()
    for task, name in zip(order, names, strict=True):
        original, kept = float(energy.at[task, "original"]), float(energy.at[task, projected])
        ours = {columns[1]: original, columns[2]: kept, columns[3]: original - kept}
        ours[columns[4]] = float(energy.at[task, f"{projected}_ratio"])
        rows.ours({columns[0]: name}, ours)
        if name in published:
            rows.paper({columns[0]: name}, published[name])
            rows.delta({columns[0]: name}, ours, published[name], columns[1:])
    paper_only = [name for name in published if name not in names]
    for name in paper_only:
        rows.paper({columns[0]: name}, published[name])
    notes = [
        "Energy: squared Frobenius norm of each task's update, summed over layers; the ratio is projected / original."
    ]
    if paper is not None:
        notes.append(paper_note(paper, paper_table, paper_only))
    table = rows.frame(
        [columns[0], SOURCE_COLUMN, *columns[1:]], with_source=paper is not None, title=title, notes=notes
    )
    table.attrs["markdown_floatfmt"] = {columns[4]: ".3f"}
    return table


def table1_svd_energy(
    energy: pd.DataFrame | str | Path, *, tasks: Sequence[str] | None = None, paper: str | None = None
) -> pd.DataFrame:
    """Table 1: ``Dataset, [Source], Original Energy, SVD Energy, O-S, Energy Ratio`` (O-S = original − svd), file
    row order unless ``tasks`` gives one."""
    return _energy_table(
        energy,
        tasks,
        "svd",
        ("Dataset", "Original Energy", "SVD Energy", "O-S", "Energy Ratio"),
        paper,
        "table1",
        "Energy of each task's update retained by projection on the rank-k_a SVD subspace",
    )


def table2_cur_energy(
    energy: pd.DataFrame | str | Path, *, tasks: Sequence[str] | None = None, paper: str | None = None
) -> pd.DataFrame:
    """Table 2: ``Dataset, [Source], Original Energy, Projected Energy, O-C, Energy Ratio`` (O-C = original − cur)."""
    return _energy_table(
        energy,
        tasks,
        "cur",
        ("Dataset", "Original Energy", "Projected Energy", "O-C", "Energy Ratio"),
        paper,
        "table2",
        "Energy of each task's update retained by projection on the span of the selected CUR columns",
    )
