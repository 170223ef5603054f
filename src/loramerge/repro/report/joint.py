"""Tables 5 and 9: pooled and per-task Hits@k (%) of every method's setting selected by the joint search."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from loramerge.repro.report.naming import (
    data_seen,
    format_params,
    method_display_name,
    ordered_methods,
    paper_method_name,
    paper_row_data_seen,
)
from loramerge.repro.report.naming import task_columns as display_columns
from loramerge.repro.report.paper import read_paper_table
from loramerge.repro.report.rows import (
    DATA_COLUMN,
    DELTA,
    PARAMS_COLUMN,
    SOURCE_COLUMN,
    UNION_COLUMN,
    Row,
    Rows,
    check_paper_tasks,
    data_note,
    number,
    paper_note,
    replicates_note,
)
from loramerge.repro.search import RULES, HitsSplit, HitsSpread, JointSelection


def _joint_meta(selections: Mapping[str, JointSelection], methods: Sequence[str]) -> tuple[list[int], int]:
    for method in methods:
        if not isinstance(selections[method], JointSelection):
            raise ValueError(f"the joint tables need the joint selection of {method!r}, not {type(selections[method])}")
    metas = {(tuple(selections[m].ks), int(selections[m].select_k)) for m in methods}
    if len(metas) != 1:
        raise ValueError(f"the joint selections disagree on ks/select_k: {sorted(metas)}")
    ks, select_k = next(iter(metas))
    return list(ks), select_k


def _joint_notes(
    selections: Mapping[str, JointSelection], methods: Sequence[str], select_k: int, rows: Rows
) -> list[str]:
    return [
        "Hits@k (%) on the test splits over the union of all tasks' classes; not normalized. Per task: hits / N; "
        f"{UNION_COLUMN} and the pooled Hits@k: Σ hits / Σ N over all tasks' samples. Selected on the pooled "
        f"validation Hits@{select_k}, the greedy search keeping a value only if it is strictly better (>).",
        data_note(rows.rows),
        replicates_note(selections, methods),
    ]


def _unpublished_note(paper: str, table: str, ks: Sequence[int], published: Iterable[str]) -> str:
    """Which of our Hits@k the paper does not print (KnOTS's scripts count Hits@10 too; the paper prints 1, 3, 5)."""
    printed = set(published)
    missing = [f"Hits@{k}" for k in ks if f"Hits@{k}" not in printed]
    if not missing:
        return ""
    name = table.replace("table", "Table ")
    return f"The paper's {name} ({paper}) prints no {', '.join(missing)}: ours stand without paper or {DELTA} numbers."


def _paper_table5(paper: str) -> dict[str, Row]:
    printed = read_paper_table(paper, "table5").set_index("Metric")
    return {name: {metric: float(printed.loc[metric, name]) for metric in printed.index} for name in printed.columns}


def table5_joint(
    selections: Mapping[str, JointSelection],
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = RULES,
    paper: str | None = None,
) -> pd.DataFrame:
    """Table 5: pooled test Hits@k of every method's joint selection, one row per (selection rule, method).

    ``selections`` maps a method to its :func:`loramerge.repro.search.select_joint` result. Columns: ``Method, Data,
    Selection, [Source], Hits@k…, Val Hits@<select_k>, Hyper-parameters``; ``Data`` is what the method's merge read
    besides the adapters. The paper prints methods as columns; here they are rows, as in Table 3.
    """
    methods = ordered_methods(selections, methods)
    ks, select_k = _joint_meta(selections, methods)
    hits_columns = [f"Hits@{k}" for k in ks]
    val_column = f"Val Hits@{select_k}"
    published = _paper_table5(paper) if paper is not None else {}

    rows = Rows()
    mapped = set()
    for rule in rules:
        for method in methods:
            chosen = selections[method].chosen(rule)
            ours = {f"Hits@{k}": number(chosen.test.pooled[k]) for k in ks}
            ours[val_column] = number(chosen.val.pooled[select_k])
            std = None
            if chosen.has_spread:
                std = {f"Hits@{k}": number(chosen.test.std.pooled[k]) for k in ks}
                std[val_column] = number(chosen.val.std.pooled[select_k])
            labels = {
                "Method": method_display_name(method),
                DATA_COLUMN: data_seen(method, chosen.params),
                "Selection": rule,
            }
            rows.ours({**labels, PARAMS_COLUMN: format_params(chosen.params)}, ours, std)
            name = paper_method_name("table5", method) if paper is not None else None
            if name in published:
                mapped.add(name)
                rows.paper({**labels, "Selection": ""}, published[name])
                rows.delta(labels, ours, published[name], hits_columns)
    paper_only = [name for name in published if name not in mapped]
    for name in paper_only:
        rows.paper({"Method": name, DATA_COLUMN: paper_row_data_seen("table5", name), "Selection": ""}, published[name])

    notes = _joint_notes(selections, methods, select_k, rows)
    if paper is not None:
        notes.append(paper_note(paper, "table5", paper_only))
        notes.append(_unpublished_note(paper, "table5", ks, (metric for row in published.values() for metric in row)))
    return rows.frame(
        ["Method", DATA_COLUMN, "Selection", SOURCE_COLUMN, *hits_columns, val_column, PARAMS_COLUMN],
        with_source=paper is not None or bool(rows.std_rows),
        title="Joint (union of label spaces) evaluation: pooled test Hits@k (%) at each method's joint selection",
        notes=notes,
    )


def table9_joint_per_task(
    selections: Mapping[str, JointSelection],
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = RULES,
    tasks: Sequence[str] | None = None,
    paper: str | None = None,
) -> pd.DataFrame:
    """Table 9: per-task test Top-k and the pooled ``Union`` Hits@k of every method's joint selection.

    One row per (selection rule, method, k). Columns: ``Method, Data, Selection, [Source], Metric, <tasks…>, Union``,
    ``Data`` as in :func:`table5_joint`.
    """
    methods = ordered_methods(selections, methods)
    ks, select_k = _joint_meta(selections, methods)
    tasks = list(tasks) if tasks is not None else list(selections[methods[0]].tasks)
    task_columns = display_columns(tasks)
    values_columns = [*task_columns, UNION_COLUMN]
    published: dict[tuple[str, str], Row] = {}
    if paper is not None:
        printed = read_paper_table(paper, "table9")
        check_paper_tasks(paper, "Table 9", printed.columns, task_columns)
        for _, row in printed.iterrows():
            published[(str(row["method"]), str(row["metric"]))] = {c: float(row[c]) for c in values_columns}

    def split_values(scores: HitsSplit | HitsSpread, k: int, what: str) -> Row:
        missing = [task for task in tasks if task not in scores.per_task]
        if missing:
            raise ValueError(f"{what} has no Hits@{k} for tasks {missing}")
        values = {column: number(scores.per_task[task][k]) for column, task in zip(task_columns, tasks, strict=True)}
        return {**values, UNION_COLUMN: number(scores.pooled[k])}

    rows = Rows()
    mapped = set()
    for rule in rules:
        for method in methods:
            chosen = selections[method].chosen(rule)
            name = paper_method_name("table9", method) if paper is not None else None
            data = data_seen(method, chosen.params)
            for k in ks:
                metric = f"Hits@{k}"
                labels = {"Method": method_display_name(method), DATA_COLUMN: data, "Selection": rule, "Metric": metric}
                ours = split_values(chosen.test, k, f"{method} ({rule}) test")
                std = split_values(chosen.test.std, k, f"{method} std") if chosen.has_spread else None
                rows.ours(labels, ours, std)
                if (name, metric) in published:
                    mapped.add(name)
                    rows.paper({**labels, "Selection": ""}, published[(name, metric)])
                    rows.delta(labels, ours, published[(name, metric)], values_columns)
    paper_only = list(dict.fromkeys(name for name, _ in published if name not in mapped))
    for (name, metric), values in published.items():
        if name in paper_only:
            data = paper_row_data_seen("table9", name)
            rows.paper({"Method": name, DATA_COLUMN: data, "Selection": "", "Metric": metric}, values)

    notes = _joint_notes(selections, methods, select_k, rows)
    if paper is not None:
        notes.append(paper_note(paper, "table9", paper_only))
        notes.append(_unpublished_note(paper, "table9", ks, (metric for _, metric in published)))
    return rows.frame(
        ["Method", DATA_COLUMN, "Selection", SOURCE_COLUMN, "Metric", *values_columns],
        with_source=paper is not None or bool(rows.std_rows),
        title="Joint (union of label spaces) evaluation per task: test Top-k (%) per task and pooled (Union)",
        notes=notes,
    )
