"""The paper's tables as DataFrames, and a writer for byte-reproducible CSV + Markdown pairs.

- Table 3 (:func:`table3_per_task`): per-task normalised test accuracy of every method's selected setting.
- Table 7 (:func:`table7_alpha_sweep`): per-task normalised test accuracy of the SVD+CUR hybrid against α.
- Tables 1–2 (:func:`table1_svd_energy`, :func:`table2_cur_energy`): energy kept by SVD / CUR projection.

Every builder records how its float columns read in Markdown in ``df.attrs["markdown_floatfmt"]``;
:func:`write_table` uses it, and one fixed ``float_format`` for the CSV, so two runs give identical bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from loramerge.atomic import write_text
from loramerge.search import Finetuned, ParamValue, SettingTable, SplitScores, setting_key

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
ENERGY_COLUMNS = ("task", "original", "svd", "svd_ratio", "cur", "cur_ratio")
CSV_FLOAT_FORMAT = "%.4f"
MARKDOWN_FLOATFMT = ".2f"


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


def _per_task(scores: Mapping[str, Any], tasks: Sequence[str], what: str) -> list[float]:
    per_task = scores["per_task"]
    missing = [task for task in tasks if task not in per_task]
    if missing:
        raise ValueError(f"{what} has no score for tasks {missing}")
    return [float(per_task[task]) for task in tasks]


def table3_per_task(
    selections: Mapping[str, Mapping[str, Any]],
    finetuned: Finetuned,
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = ("greedy", "grid"),
    tasks: Sequence[str] | None = None,
    base_split: str = "test",
) -> pd.DataFrame:
    """Table 3: one row per (selection rule, method), normalised test accuracy per task, ``Average`` over them.

    ``selections`` maps a method to its :func:`loramerge.search.select_method` result. The first row is the fine-tuned
    models' absolute ``base_split`` accuracy in %. Rows follow ``rules`` then ``methods`` (default: the paper's order,
    then any other method by name). Columns: ``Method, Selection, <tasks…>, Average, Val Average, Hyper-parameters``.
    """
    tasks = list(tasks) if tasks is not None else sorted(finetuned)
    task_columns = _task_columns(tasks)
    if methods is None:
        methods = [m for m in METHOD_ORDER if m in selections] + sorted(set(selections) - set(METHOD_ORDER))
    absent = [method for method in methods if method not in selections]
    if absent:
        raise ValueError(f"no selection results for methods {absent}")

    finetuned_row = [100.0 * float(finetuned[task][base_split]) for task in tasks]
    rows: list[dict[str, Any]] = [
        {
            "Method": FINETUNED_ROW,
            "Selection": "",
            **dict(zip(task_columns, finetuned_row, strict=True)),
            AVERAGE_COLUMN: _mean(finetuned_row),
            VAL_AVERAGE_COLUMN: math.nan,
            PARAMS_COLUMN: "",
        }
    ]
    for rule in rules:
        for method in methods:
            if rule not in selections[method]:
                raise ValueError(f"selection results of {method!r} have no {rule!r} choice")
            chosen = selections[method][rule]
            values = _per_task(chosen["test"], tasks, f"{method} ({rule}) test")
            rows.append(
                {
                    "Method": method_display_name(method),
                    "Selection": rule,
                    **dict(zip(task_columns, values, strict=True)),
                    AVERAGE_COLUMN: _mean(values),
                    VAL_AVERAGE_COLUMN: float(chosen["val"]["mean"]),
                    PARAMS_COLUMN: format_params(chosen["params"]),
                }
            )
    table = pd.DataFrame(
        rows, columns=["Method", "Selection", *task_columns, AVERAGE_COLUMN, VAL_AVERAGE_COLUMN, PARAMS_COLUMN]
    )
    table.attrs["markdown_floatfmt"] = {}
    return table


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
) -> pd.DataFrame:
    """Table 7: one row per α (ascending), normalised test accuracy per task, ``Avg`` over them, and ``Val Avg``.

    ``table`` is the hybrid's :func:`loramerge.search.build_setting_table`; ``fixed`` pins its other parameters.
    """
    tasks = list(tasks) if tasks is not None else list(table.tasks)
    task_columns = _task_columns(tasks)
    rows = []
    for value, setting in sweep_settings(table, alpha_param, fixed):
        test: SplitScores = table.lookup(setting, test_split)
        values = _per_task({"per_task": test.normalized}, tasks, f"{table.method} {format_params(setting)}")
        rows.append(
            {
                alpha_param: float(value),
                **dict(zip(task_columns, values, strict=True)),
                SWEEP_AVERAGE_COLUMN: _mean(values),
                SWEEP_VAL_AVERAGE_COLUMN: table.lookup(setting, val_split).mean,
            }
        )
    sweep = pd.DataFrame(rows, columns=[alpha_param, *task_columns, SWEEP_AVERAGE_COLUMN, SWEEP_VAL_AVERAGE_COLUMN])
    sweep.attrs["markdown_floatfmt"] = {alpha_param: "g"}
    return sweep


def load_energy(path: str | Path) -> pd.DataFrame:
    """Read ``energy.csv`` (``task,original,svd,svd_ratio,cur,cur_ratio``) and check its columns."""
    energy = pd.read_csv(path)
    missing = [column for column in ENERGY_COLUMNS if column not in energy.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return energy


def _energy_table(
    energy: pd.DataFrame | str | Path, tasks: Sequence[str] | None, projected: str, columns: Sequence[str]
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
    rows = energy.loc[order]
    original = rows["original"].astype(float).to_numpy()
    kept = rows[projected].astype(float).to_numpy()
    table = pd.DataFrame(
        {
            columns[0]: _task_columns(order),
            columns[1]: original,
            columns[2]: kept,
            columns[3]: original - kept,
            columns[4]: rows[f"{projected}_ratio"].astype(float).to_numpy(),
        }
    )
    table.attrs["markdown_floatfmt"] = {columns[4]: ".3f"}
    return table


def table1_svd_energy(energy: pd.DataFrame | str | Path, *, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 1: ``Dataset, Original Energy, SVD Energy, O-S, Energy Ratio`` (O-S = original − svd), file row order
    unless ``tasks`` gives one."""
    return _energy_table(energy, tasks, "svd", ("Dataset", "Original Energy", "SVD Energy", "O-S", "Energy Ratio"))


def table2_cur_energy(energy: pd.DataFrame | str | Path, *, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 2: ``Dataset, Original Energy, Projected Energy, O-C, Energy Ratio`` (O-C = original − cur)."""
    return _energy_table(
        energy, tasks, "cur", ("Dataset", "Original Energy", "Projected Energy", "O-C", "Energy Ratio")
    )


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table: floats with ``table.attrs["markdown_floatfmt"]`` per column (default ``.2f``), NaN blank."""
    formats = table.attrs.get("markdown_floatfmt", {})
    cells = pd.DataFrame(index=table.index)
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
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def to_csv(table: pd.DataFrame, float_format: str = CSV_FLOAT_FORMAT) -> str:
    """CSV text with one fixed float format and ``\\n`` line ends, so equal tables give equal bytes."""
    return table.to_csv(index=False, float_format=float_format, lineterminator="\n")


def write_table(table: pd.DataFrame, stem: str | Path, *, float_format: str = CSV_FLOAT_FORMAT) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically; returns both paths."""
    stem = Path(stem)
    csv_path = write_text(stem.with_name(stem.name + ".csv"), to_csv(table, float_format))
    markdown_path = write_text(stem.with_name(stem.name + ".md"), to_markdown(table))
    return csv_path, markdown_path
