"""The paper's tables as DataFrames, and a writer for byte-reproducible CSV + Markdown + LaTeX triples.

- Table 3 (:func:`table3_per_task`): per-task normalised test accuracy of every method's selected setting.
- Table 5 (:func:`table5_joint`) and Table 9 (:func:`table9_joint_per_task`): pooled and per-task Hits@k of every
  method's setting selected by the joint search.
- Table 7 (:func:`table7_alpha_sweep`): per-task normalised test accuracy of the SVD+CUR hybrid against α.
- Tables 1–2 (:func:`table1_svd_energy`, :func:`table2_cur_energy`): energy kept by SVD / CUR projection.
- :func:`finetuned_table`: each fine-tuned adapter's own accuracy, beside the published value.

With ``paper`` (a folder of :mod:`loramerge.repro.report.paper`, e.g. ``"vit-b32"``) a table gets a ``Source`` column and,
under each of our rows (``ours``), the paper's row (``paper``) and the difference ``Δ = ours − paper``; the paper's
rows for methods we do not run come last, with no row of ours. Methods scored over replicates (DARE seeds) show the
mean over replicates and, in the row after it (``ours std``), the sample standard deviation; Markdown and LaTeX print
the two as ``mean ± std``. Without a paper or replicates there is no ``Source`` column.

Every builder records how its float columns read in Markdown and LaTeX in ``df.attrs["markdown_floatfmt"]``, the
rows that hold a spread in ``df.attrs["std_rows"]``, and a title and notes (the normalisation base, what the paper's
rows are) in ``df.attrs["title"]`` and ``df.attrs["notes"]``; :func:`write_table` uses them, and one fixed
``float_format`` for the CSV, so two runs give identical bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from loramerge.atomic import write_text
from loramerge.repro.report.paper import COPIED_FROM_KNOTS, FULL_FINETUNE, paper_method_name, read_paper_table
from loramerge.repro.search import NORMALIZATION_NOTES, Finetuned, ParamValue, SettingTable, SplitScores, setting_key

METHOD_DISPLAY_NAMES = {
    "ta": "TA",
    "ties": "TIES",
    "dare_ties": "DARE-TIES",
    "knots_ties": "KnOTS-TIES",
    "knots_dare_ties": "KnOTS-DARE-TIES",
    "core_ties": "CoreSpace-TIES",
    "cur_ties": "CUR-TIES (UR)",
    "cur_r_ties": "CUR-TIES (R)",
    "hybrid": "Ours (SVD+CUR hybrid)",
}
METHOD_ORDER = tuple(METHOD_DISPLAY_NAMES)

TASK_DISPLAY_NAMES = {
    "stanford_cars": "Cars",
    "cars": "Cars",
    "dtd": "DTD",
    "eurosat": "EuroSAT",
    "gtsrb": "GTSRB",
    "mnist": "MNIST",
    "resisc45": "RESISC45",
    "sun397": "SUN397",
    "svhn": "SVHN",
    "snli": "SNLI",
    "mnli": "MNLI",
    "sick": "SICK",
    "qnli": "QNLI",
    "rte": "RTE",
    "scitail": "SciTail",
}

FINETUNED_ROW = "Fine-tuned"
AVERAGE_COLUMN = "Average"
VAL_AVERAGE_COLUMN = "Val Average"
PARAMS_COLUMN = "Hyper-parameters"
SWEEP_AVERAGE_COLUMN = "Avg"
SWEEP_VAL_AVERAGE_COLUMN = "Val Avg"
UNION_COLUMN = "Union"
ENERGY_COLUMNS = ("task", "original", "svd", "svd_ratio", "cur", "cur_ratio")
SOURCE_COLUMN = "Source"
OURS, OURS_STD, PAPER, DELTA = "ours", "ours std", "paper", "Δ"
SPREAD = "±"
CSV_FLOAT_FORMAT = "%.4f"
MARKDOWN_FLOATFMT = ".2f"

Row = dict[str, Any]


def task_display_name(task: str) -> str:
    """``stanford_cars`` → ``Cars``, ``eurosat`` → ``EuroSAT``; unknown tasks keep their name."""
    return TASK_DISPLAY_NAMES.get(task, task)


def method_display_name(method: str) -> str:
    """``knots_ties`` → ``KnOTS-TIES``; unknown methods keep their name."""
    return METHOD_DISPLAY_NAMES.get(method, method)


def format_params(params: Mapping[str, ParamValue]) -> str:
    """A compact, stable string of a setting: λ first, then the others by name (``lam=0.5, top_k=20``)."""
    names = sorted(params, key=lambda name: (name != "lam", name))
    return ", ".join(f"{name}={_format_value(params[name])}" for name in names)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _task_columns(tasks: Sequence[str]) -> list[str]:
    columns = [task_display_name(task) for task in tasks]
    if len(set(columns)) != len(columns):
        raise ValueError(f"tasks {list(tasks)} give repeated column names {columns}")
    return columns


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def _number(value: Any) -> float:
    """A JSON number as a float; null (the spread of a single replicate) as NaN."""
    return math.nan if value is None else float(value)


def _per_task(scores: Mapping[str, Any], tasks: Sequence[str], what: str) -> list[float]:
    per_task = scores["per_task"]
    missing = [task for task in tasks if task not in per_task]
    if missing:
        raise ValueError(f"{what} has no score for tasks {missing}")
    return [_number(per_task[task]) for task in tasks]


def _ordered_methods(selections: Mapping[str, Any], methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        methods = [m for m in METHOD_ORDER if m in selections] + sorted(set(selections) - set(METHOD_ORDER))
    absent = [method for method in methods if method not in selections]
    if absent:
        raise ValueError(f"no selection results for methods {absent}")
    return list(methods)


def _delta(ours: Row, paper: Row, columns: Sequence[str]) -> Row:
    """``ours − paper`` per column, NaN where either is missing."""
    delta = {}
    for column in columns:
        a, b = _number(ours.get(column)), _number(paper.get(column))
        delta[column] = a - b if math.isfinite(a) and math.isfinite(b) else math.nan
    return delta


class _Rows:
    """Rows of a table under construction, with the positions of the ``ours std`` rows."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.std_rows: list[int] = []

    def ours(self, labels: Row, values: Row, std: Row | None = None) -> None:
        self.rows.append({**labels, SOURCE_COLUMN: OURS, **values})
        if std is not None:
            # the spread of a setting's numbers; its hyper-parameters are the row above's
            blank = {PARAMS_COLUMN: ""} if PARAMS_COLUMN in labels else {}
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


def _check_paper_tasks(paper: str, table: str, columns: Sequence[str], task_columns: Sequence[str]) -> None:
    missing = [column for column in task_columns if column not in columns]
    if missing:
        raise ValueError(f"report.paper {paper!r}: the paper's {table} has no columns {missing} for our tasks")


def normalization_note(normalized_by: str | None) -> str:
    """The sentence a table prints about its normalisation base (``evaluate.normalize_by``)."""
    if normalized_by is None:
        return ""
    meaning = NORMALIZATION_NOTES.get(normalized_by, normalized_by)
    return f"Normalisation base: {normalized_by} (accuracies are {meaning})."


def _replicate_count(selection: Mapping[str, Any]) -> int:
    return math.prod(len(values) for values in selection.get("replicates", {}).values())


def _has_spread(chosen: Mapping[str, Any]) -> bool:
    """Whether a chosen setting was scored over two replicates or more (one replicate has no sample spread)."""
    return "std" in chosen["test"] and len(chosen["test"].get("replicates", [])) > 1


def _replicates_note(selections: Mapping[str, Mapping[str, Any]], methods: Sequence[str]) -> str:
    replicated = [method for method in methods if _replicate_count(selections[method]) > 1]
    if not replicated:
        return ""
    spec = "; ".join(f"{name} {values}" for name, values in sorted(selections[replicated[0]]["replicates"].items()))
    names = ", ".join(method_display_name(method) for method in replicated)
    return (
        f"{names}: mean {SPREAD} sample standard deviation (ddof=1) over the replicates ({spec}); "
        f"the CSV gives the standard deviation in the '{OURS_STD}' row."
    )


def _paper_note(paper: str, table: str, paper_only: Sequence[str]) -> str:
    name = table.replace("table", "Table ")
    note = f"paper: the published numbers of the paper's {name} ({paper}); {DELTA} = ours − paper."
    if paper_only:
        note += f" Rows of the paper only (not run here): {', '.join(paper_only)}."
    return note


def _normalized_by(selections: Mapping[str, Mapping[str, Any]], methods: Sequence[str]) -> str | None:
    bases = {selections[method].get("normalized_by") for method in methods}
    if len(bases) > 1:
        raise ValueError(f"the selections were normalised by different bases {sorted(map(str, bases))}")
    return next(iter(bases), None)


# -- Table 3 ---------------------------------------------------------------------------------------------------------


def table3_per_task(
    selections: Mapping[str, Mapping[str, Any]],
    finetuned: Finetuned,
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = ("greedy", "grid"),
    tasks: Sequence[str] | None = None,
    base_split: str = "test",
    paper: str | None = None,
) -> pd.DataFrame:
    """Table 3: one row per (selection rule, method), normalised test accuracy per task, ``Average`` over them.

    ``selections`` maps a method to its :func:`loramerge.repro.search.select_method` result. The first row is the fine-tuned
    models' absolute ``base_split`` accuracy in %, as measured here. Rows follow ``rules`` then ``methods`` (default:
    the paper's order, then any other method by name). Columns: ``Method, Selection, [Source], <tasks…>, Average,
    Val Average, Hyper-parameters``.
    """
    tasks = list(tasks) if tasks is not None else sorted(finetuned)
    task_columns = _task_columns(tasks)
    values_columns = [*task_columns, AVERAGE_COLUMN]
    methods = _ordered_methods(selections, methods)
    for method in methods:
        for rule in rules:
            if rule not in selections[method]:
                raise ValueError(f"selection results of {method!r} have no {rule!r} choice")

    published: dict[str, Row] = {}
    copied: list[str] = []
    if paper is not None:
        printed = read_paper_table(paper, "table3")
        _check_paper_tasks(paper, "Table 3", printed.columns, task_columns)
        for _, row in printed.iterrows():
            published[str(row["method"])] = {column: float(row[column]) for column in values_columns}
            if row.get("source") == COPIED_FROM_KNOTS:
                copied.append(str(row["method"]))

    rows = _Rows()
    finetuned_values = [100.0 * float(finetuned[task][base_split]) for task in tasks]
    finetuned_row = {**dict(zip(task_columns, finetuned_values, strict=True)), AVERAGE_COLUMN: _mean(finetuned_values)}
    labels = {"Method": FINETUNED_ROW, "Selection": "", PARAMS_COLUMN: ""}
    rows.ours(labels, finetuned_row)
    if paper is not None:
        rows.paper(labels, published[FULL_FINETUNE])
        rows.delta(labels, finetuned_row, published[FULL_FINETUNE], values_columns)

    mapped = {}
    for rule in rules:
        for method in methods:
            chosen = selections[method][rule]
            values = _per_task(chosen["test"], tasks, f"{method} ({rule}) test")
            ours = {
                **dict(zip(task_columns, values, strict=True)),
                AVERAGE_COLUMN: _mean(values),
                VAL_AVERAGE_COLUMN: _number(chosen["val"]["mean"]),
            }
            std = None
            if _has_spread(chosen):
                spread = _per_task(chosen["test"]["std"], tasks, f"{method} ({rule}) test std")
                std = {
                    **dict(zip(task_columns, spread, strict=True)),
                    AVERAGE_COLUMN: _number(chosen["test"]["std"]["mean"]),
                    VAL_AVERAGE_COLUMN: _number(chosen["val"]["std"]["mean"]),
                }
            labels = {"Method": method_display_name(method), "Selection": rule}
            rows.ours({**labels, PARAMS_COLUMN: format_params(chosen["params"])}, ours, std)
            name = paper_method_name("table3", method) if paper is not None else None
            if name in published:
                mapped[name] = method
                rows.paper({**labels, "Selection": ""}, published[name])
                rows.delta(labels, ours, published[name], values_columns)
    paper_only = [name for name in published if name not in mapped and name != FULL_FINETUNE]
    for name in paper_only:
        rows.paper({"Method": name, "Selection": ""}, published[name])

    notes = [
        normalization_note(_normalized_by(selections, methods)),
        f"The {FINETUNED_ROW} row is each adapter's {base_split} accuracy (%) measured in this run.",
        _replicates_note(selections, methods),
    ]
    if paper is not None:
        notes.append(_paper_note(paper, "table3", paper_only))
        if copied:
            notes.append(f"The paper took its rows {', '.join(copied)} from KnOTS (Stoica et al., 2025).")
    return rows.frame(
        ["Method", "Selection", SOURCE_COLUMN, *values_columns, VAL_AVERAGE_COLUMN, PARAMS_COLUMN],
        with_source=paper is not None or bool(rows.std_rows),
        title=(
            "Per-task normalised test accuracy (%) of each method at its selected hyper-parameters "
            "(greedy: the KnOTS authors' linear search; grid: the full-grid argmax; both on validation)"
        ),
        notes=notes,
    )


# -- Tables 5 and 9 (joint) --------------------------------------------------------------------------------------------


def _joint_meta(selections: Mapping[str, Mapping[str, Any]], methods: Sequence[str]) -> tuple[list[int], int]:
    metas = {(tuple(selections[m]["ks"]), int(selections[m]["select_k"])) for m in methods}
    if len(metas) != 1:
        raise ValueError(f"the joint selections disagree on ks/select_k: {sorted(metas)}")
    ks, select_k = next(iter(metas))
    return list(ks), select_k


def _joint_notes(selections: Mapping[str, Mapping[str, Any]], methods: Sequence[str], select_k: int) -> list[str]:
    return [
        "Hits@k (%) on the test splits over the union of all tasks' classes; not normalised. Per task: hits / N; "
        f"{UNION_COLUMN} and the pooled Hits@k: Σ hits / Σ N over all tasks' samples. Selected on the pooled "
        f"validation Hits@{select_k}, the greedy search keeping a value only if it is strictly better (>).",
        _replicates_note(selections, methods),
    ]


def _paper_table5(paper: str) -> dict[str, Row]:
    printed = read_paper_table(paper, "table5").set_index("Metric")
    return {name: {metric: float(printed.loc[metric, name]) for metric in printed.index} for name in printed.columns}


def table5_joint(
    selections: Mapping[str, Mapping[str, Any]],
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = ("greedy", "grid"),
    paper: str | None = None,
) -> pd.DataFrame:
    """Table 5: pooled test Hits@k of every method's joint selection, one row per (selection rule, method).

    ``selections`` maps a method to its :func:`loramerge.repro.search.select_joint` result. Columns: ``Method, Selection,
    [Source], Hits@k…, Val Hits@<select_k>, Hyper-parameters``. The paper prints methods as columns; here they are
    rows, as in Table 3.
    """
    methods = _ordered_methods(selections, methods)
    ks, select_k = _joint_meta(selections, methods)
    hits_columns = [f"Hits@{k}" for k in ks]
    val_column = f"Val Hits@{select_k}"
    published = _paper_table5(paper) if paper is not None else {}

    rows = _Rows()
    mapped = set()
    for rule in rules:
        for method in methods:
            chosen = selections[method][rule]
            ours = {f"Hits@{k}": _number(chosen["test"]["pooled"][str(k)]) for k in ks}
            ours[val_column] = _number(chosen["val"]["pooled"][str(select_k)])
            std = None
            if _has_spread(chosen):
                std = {f"Hits@{k}": _number(chosen["test"]["std"]["pooled"][str(k)]) for k in ks}
                std[val_column] = _number(chosen["val"]["std"]["pooled"][str(select_k)])
            labels = {"Method": method_display_name(method), "Selection": rule}
            rows.ours({**labels, PARAMS_COLUMN: format_params(chosen["params"])}, ours, std)
            name = paper_method_name("table5", method) if paper is not None else None
            if name in published:
                mapped.add(name)
                rows.paper({**labels, "Selection": ""}, published[name])
                rows.delta(labels, ours, published[name], hits_columns)
    paper_only = [name for name in published if name not in mapped]
    for name in paper_only:
        rows.paper({"Method": name, "Selection": ""}, published[name])

    notes = _joint_notes(selections, methods, select_k)
    if paper is not None:
        notes.append(_paper_note(paper, "table5", paper_only))
    return rows.frame(
        ["Method", "Selection", SOURCE_COLUMN, *hits_columns, val_column, PARAMS_COLUMN],
        with_source=paper is not None or bool(rows.std_rows),
        title="Joint (union of label spaces) evaluation: pooled test Hits@k (%) at each method's joint selection",
        notes=notes,
    )


def table9_joint_per_task(
    selections: Mapping[str, Mapping[str, Any]],
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = ("greedy", "grid"),
    tasks: Sequence[str] | None = None,
    paper: str | None = None,
) -> pd.DataFrame:
    """Table 9: per-task test Top-k and the pooled ``Union`` Hits@k of every method's joint selection.

    One row per (selection rule, method, k). Columns: ``Method, Selection, [Source], Metric, <tasks…>, Union``.
    """
    methods = _ordered_methods(selections, methods)
    ks, select_k = _joint_meta(selections, methods)
    tasks = list(tasks) if tasks is not None else list(selections[methods[0]]["tasks"])
    task_columns = _task_columns(tasks)
    values_columns = [*task_columns, UNION_COLUMN]
    published: dict[tuple[str, str], Row] = {}
    if paper is not None:
        printed = read_paper_table(paper, "table9")
        _check_paper_tasks(paper, "Table 9", printed.columns, task_columns)
        for _, row in printed.iterrows():
            published[(str(row["method"]), str(row["metric"]))] = {c: float(row[c]) for c in values_columns}

    def split_values(scores: Mapping[str, Any], k: int, what: str) -> Row:
        per_task = scores["per_task"]
        missing = [task for task in tasks if task not in per_task]
        if missing:
            raise ValueError(f"{what} has no Hits@{k} for tasks {missing}")
        values = {column: _number(per_task[task][str(k)]) for column, task in zip(task_columns, tasks, strict=True)}
        return {**values, UNION_COLUMN: _number(scores["pooled"][str(k)])}

    rows = _Rows()
    mapped = set()
    for rule in rules:
        for method in methods:
            chosen = selections[method][rule]
            name = paper_method_name("table9", method) if paper is not None else None
            for k in ks:
                metric = f"Hits@{k}"
                labels = {"Method": method_display_name(method), "Selection": rule, "Metric": metric}
                ours = split_values(chosen["test"], k, f"{method} ({rule}) test")
                std = split_values(chosen["test"]["std"], k, f"{method} std") if _has_spread(chosen) else None
                rows.ours(labels, ours, std)
                if (name, metric) in published:
                    mapped.add(name)
                    rows.paper({**labels, "Selection": ""}, published[(name, metric)])
                    rows.delta(labels, ours, published[(name, metric)], values_columns)
    paper_only = list(dict.fromkeys(name for name, _ in published if name not in mapped))
    for (name, metric), values in published.items():
        if name in paper_only:
            rows.paper({"Method": name, "Selection": "", "Metric": metric}, values)

    notes = _joint_notes(selections, methods, select_k)
    if paper is not None:
        notes.append(_paper_note(paper, "table9", paper_only))
    return rows.frame(
        ["Method", "Selection", SOURCE_COLUMN, "Metric", *values_columns],
        with_source=paper is not None or bool(rows.std_rows),
        title="Joint (union of label spaces) evaluation per task: test Top-k (%) per task and pooled (Union)",
        notes=notes,
    )


# -- Table 7 -----------------------------------------------------------------------------------------------------------


def sweep_settings(
    table: SettingTable, param: str, fixed: Mapping[str, ParamValue] | None = None
) -> list[tuple[ParamValue, dict[str, ParamValue]]]:
    """``(value, setting)`` for each evaluated value of ``param``, ascending, the other parameters matching ``fixed``.

    ``fixed`` (for example the selected setting) pins the other parameters; ``param`` itself in it is ignored. Two
    settings left for one value is an error: say which one to take through ``fixed``.
    """
    wanted = {name: value for name, value in setting_key(fixed or {}) if name != param}
    by_value: dict[ParamValue, list[dict[str, ParamValue]]] = {}
    for key, params in table.params.items():
        key_values = dict(key)
        if param not in key_values:
            continue
        if any(name in key_values and key_values[name] != value for name, value in wanted.items()):
            continue
        by_value.setdefault(key_values[param], []).append(params)
    if not by_value:
        raise ValueError(f"{table.method}: no evaluated setting has {param!r} matching {dict(wanted)}")
    sweep = []
    for value in sorted(by_value):
        settings = by_value[value]
        if len(settings) > 1:
            raise ValueError(
                f"{table.method}: {len(settings)} settings have {param}={value!r} "
                f"({[format_params(s) for s in settings]}); pin the other parameters with `fixed`"
            )
        sweep.append((settings[0][param], settings[0]))
    return sweep


def table7_alpha_sweep(
    table: SettingTable,
    *,
    alpha_param: str = "alpha",
    fixed: Mapping[str, ParamValue] | None = None,
    tasks: Sequence[str] | None = None,
    test_split: str = "test",
    val_split: str = "val",
    paper: str | None = None,
    normalized_by: str | None = None,
) -> pd.DataFrame:
    """Table 7: one row per α (ascending), normalised test accuracy per task, ``Avg`` over them, and ``Val Avg``.

    ``table`` is the hybrid's :func:`loramerge.repro.search.build_setting_table`; ``fixed`` pins its other parameters. With
    ``paper``, each α the paper printed gets its row and Δ after ours (an α only one side has gets only its row).
    """
    tasks = list(tasks) if tasks is not None else list(table.tasks)
    task_columns = _task_columns(tasks)
    values_columns = [*task_columns, SWEEP_AVERAGE_COLUMN]
    ours_by_alpha: dict[float, Row] = {}
    for value, setting in sweep_settings(table, alpha_param, fixed):
        test: SplitScores = table.lookup(setting, test_split)
        values = _per_task({"per_task": test.normalized}, tasks, f"{table.method} {format_params(setting)}")
        ours_by_alpha[float(value)] = {
            **dict(zip(task_columns, values, strict=True)),
            SWEEP_AVERAGE_COLUMN: _mean(values),
            SWEEP_VAL_AVERAGE_COLUMN: table.lookup(setting, val_split).mean,
        }
    published: dict[float, Row] = {}
    if paper is not None:
        printed = read_paper_table(paper, "table7")
        _check_paper_tasks(paper, "Table 7", printed.columns, task_columns)
        published = {float(row["alpha"]): {c: float(row[c]) for c in values_columns} for _, row in printed.iterrows()}

    rows = _Rows()
    # α from the config and from the paper's CSV may differ in their last bits (0.30000000000000004 vs 0.3)
    ours_keys = {round(alpha, 9): alpha for alpha in ours_by_alpha}
    paper_keys = {round(alpha, 9): alpha for alpha in published}
    for key in sorted(set(ours_keys) | set(paper_keys)):
        alpha = ours_keys.get(key, paper_keys.get(key))
        labels = {alpha_param: alpha}
        if key in ours_keys:
            rows.ours(labels, ours_by_alpha[ours_keys[key]])
        if key in paper_keys:
            rows.paper(labels, published[paper_keys[key]])
            if key in ours_keys:
                rows.delta(labels, ours_by_alpha[ours_keys[key]], published[paper_keys[key]], values_columns)
    notes = [normalization_note(normalized_by)]
    if paper is not None:
        notes.append(_paper_note(paper, "table7", []))
    sweep = rows.frame(
        [alpha_param, SOURCE_COLUMN, *values_columns, SWEEP_VAL_AVERAGE_COLUMN],
        with_source=paper is not None,
        title="The hybrid's α sweep (α = 1: KnOTS-TIES, α = 0: CUR-TIES): per-task normalised test accuracy (%)",
        notes=notes,
    )
    sweep.attrs["markdown_floatfmt"] = {alpha_param: "g"}
    return sweep


# -- Tables 1 and 2 (energy) ---------------------------------------------------------------------------------------


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
    names = _task_columns(order)
    published: dict[str, Row] = {}
    if paper is not None:
        printed = read_paper_table(paper, paper_table)
        published = {str(row[columns[0]]): {c: float(row[c]) for c in columns[1:]} for _, row in printed.iterrows()}

    rows = _Rows()
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
        notes.append(_paper_note(paper, paper_table, paper_only))
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


# -- the fine-tuned adapters ---------------------------------------------------------------------------------------


def finetuned_table(
    finetuned: Finetuned,
    *,
    tasks: Sequence[str] | None = None,
    published: Mapping[str, float] | None = None,
    normalized_by: str | None = None,
    val_split: str = "val",
    test_split: str = "test",
) -> pd.DataFrame:
    """Each fine-tuned adapter alone: ``Dataset, Val, Test, [Published, Δ]`` in %, one row per task and ``Average``.

    ``published`` (task → percent, as the suite config gives it) adds the published value and ``Δ = Test −
    Published``; it must then cover every task.
    """
    tasks = list(tasks) if tasks is not None else sorted(finetuned)
    names = _task_columns(tasks)
    published = dict(published or {})
    missing = [task for task in tasks if published and task not in published]
    if missing:
        raise ValueError(f"no published fine-tuned accuracy for tasks {missing}")
    columns = ["Dataset", "Val", "Test", *(["Published", DELTA] if published else [])]
    rows = []
    for task, name in zip(tasks, names, strict=True):
        for split in (val_split, test_split):
            if split not in finetuned[task]:
                raise ValueError(f"fine-tuned task {task!r} has no {split!r} accuracy")
        row = {"Dataset": name, "Val": 100.0 * finetuned[task][val_split], "Test": 100.0 * finetuned[task][test_split]}
        if published:
            row["Published"] = float(published[task])
            row[DELTA] = row["Test"] - row["Published"]
        rows.append(row)
    average = {"Dataset": AVERAGE_COLUMN, **{c: _mean([row[c] for row in rows]) for c in columns[1:]}}
    table = pd.DataFrame([*rows, average], columns=columns)
    table.attrs["markdown_floatfmt"] = {}
    table.attrs["std_rows"] = []
    table.attrs["title"] = "Accuracy (%) of each fine-tuned adapter alone on its own task"
    table.attrs["notes"] = [
        note
        for note in (
            normalization_note(normalized_by),
            f"Published: the value the suite config gives; {DELTA} = Test − Published." if published else "",
        )
        if note
    ]
    return table


# -- writing -----------------------------------------------------------------------------------------------------------


def _cells(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Every cell as text (floats by ``markdown_floatfmt``, NaN blank), each ``std_rows`` row folded into the row
    before it as ``mean ± std``; and each column's alignment."""
    formats = table.attrs.get("markdown_floatfmt", {})
    cells = pd.DataFrame(index=range(len(table)))
    align = []
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            fmt = formats.get(column, MARKDOWN_FLOATFMT)
            cells[column] = [("" if pd.isna(v) else format(float(v), fmt)) for v in values]
            align.append("right")
        else:
            cells[column] = ["" if pd.isna(v) else str(v) for v in values]
            align.append("left")
    std_rows = list(table.attrs.get("std_rows", []))
    for position in std_rows:
        for index, column in enumerate(table.columns):
            mean, spread = cells.at[position - 1, column], cells.at[position, column]
            if align[index] == "right" and mean and spread:
                cells.at[position - 1, column] = f"{mean} {SPREAD} {spread}"
    return cells.drop(index=std_rows).reset_index(drop=True), align


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (floats per ``table.attrs["markdown_floatfmt"]``, default ``.2f``, NaN blank), then the notes."""
    cells, align = _cells(table)
    text = cells.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
    for note in table.attrs.get("notes", []):
        text += f"\n{note}\n"
    return text


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "α": r"$\alpha$",
    "λ": r"$\lambda$",
    "Σ": r"$\Sigma$",
    "·": r"$\cdot$",
    "−": "-",
    "–": "--",
    "→": r"$\rightarrow$",
    "≥": r"$\geq$",
}


def latex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX tabular or caption (special characters escaped, Greek and ± as math)."""
    return "".join(_LATEX_ESCAPES.get(character, character) for character in text)


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs ``table`` float: one ``tabular`` column per table column (``l`` text, ``r`` numbers), spreads as
    ``mean $\\pm$ std``, and the title and notes as its caption."""
    cells, align = _cells(table)
    spec = "".join("r" if side == "right" else "l" for side in align)
    lines = [
        "% generated by loramerge; needs \\usepackage{booktabs}",
        "\\begin{table}[ht]",
        "\\centering",
        "\\footnotesize",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(str(column)) for column in cells.columns) + " \\\\",
        "\\midrule",
        *(" & ".join(latex_escape(cell) for cell in row) + " \\\\" for row in cells.itertuples(index=False)),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    caption = " ".join(
        part
        for part in (table.attrs.get("title", "") and table.attrs["title"] + ".", *table.attrs.get("notes", []))
        if part
    )
    if caption:
        lines.append(f"\\caption{{{latex_escape(caption)}}}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame, float_format: str = CSV_FLOAT_FORMAT) -> str:
    """CSV text with one fixed float format and ``\\n`` line ends, so equal tables give equal bytes."""
    return table.to_csv(index=False, float_format=float_format, lineterminator="\n")


def write_table(
    table: pd.DataFrame, stem: str | Path, *, float_format: str = CSV_FLOAT_FORMAT
) -> tuple[Path, Path, Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` atomically; returns the three paths."""
    stem = Path(stem)
    csv_path = write_text(stem.with_name(stem.name + ".csv"), to_csv(table, float_format))
    markdown_path = write_text(stem.with_name(stem.name + ".md"), to_markdown(table))
    latex_path = write_text(stem.with_name(stem.name + ".tex"), to_latex(table))
    return csv_path, markdown_path, latex_path
