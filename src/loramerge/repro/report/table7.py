"""Table 7: the hybrid's α sweep, per-task normalized test accuracy at every evaluated α, beside the paper's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from loramerge.repro.report.naming import format_params
from loramerge.repro.report.naming import task_columns as display_columns
from loramerge.repro.report.paper import read_paper_table
from loramerge.repro.report.rows import (
    SOURCE_COLUMN,
    SWEEP_AVERAGE_COLUMN,
    SWEEP_VAL_AVERAGE_COLUMN,
    Row,
    Rows,
    check_paper_tasks,
    mean,
    normalization_note,
    paper_note,
    per_task_values,
)
from loramerge.repro.search import ParamValue, SettingTable, SplitScores, setting_key


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
    """Table 7: one row per α (ascending), normalized test accuracy per task, ``Avg`` over them, and ``Val Avg``.

    ``table`` is the hybrid's :func:`loramerge.repro.search.build_setting_table`; ``fixed`` pins its other
    parameters. With ``paper``, each α the paper printed gets its row and Δ after ours (an α only one side has gets
    only its row).
    """
    tasks = list(tasks) if tasks is not None else list(table.tasks)
    task_columns = display_columns(tasks)
    values_columns = [*task_columns, SWEEP_AVERAGE_COLUMN]
    ours_by_alpha: dict[float, Row] = {}
    for value, setting in sweep_settings(table, alpha_param, fixed):
        test: SplitScores = table.lookup(setting, test_split)
        values = per_task_values(test.normalized, tasks, f"{table.method} {format_params(setting)}")
        ours_by_alpha[float(value)] = {
            **dict(zip(task_columns, values, strict=True)),
            SWEEP_AVERAGE_COLUMN: mean(values),
            SWEEP_VAL_AVERAGE_COLUMN: table.lookup(setting, val_split).mean,
        }
    published: dict[float, Row] = {}
    if paper is not None:
        printed = read_paper_table(paper, "table7")
        check_paper_tasks(paper, "Table 7", printed.columns, task_columns)
        published = {float(row["alpha"]): {c: float(row[c]) for c in values_columns} for _, row in printed.iterrows()}

    rows = Rows()
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
        notes.append(paper_note(paper, "table7", []))
    sweep = rows.frame(
        [alpha_param, SOURCE_COLUMN, *values_columns, SWEEP_VAL_AVERAGE_COLUMN],
        with_source=paper is not None,
        title="The hybrid's α sweep (α = 1: KnOTS-TIES, α = 0: CUR-TIES): per-task normalized test accuracy (%)",
        notes=notes,
    )
    sweep.attrs["markdown_floatfmt"] = {alpha_param: "g"}
    return sweep
