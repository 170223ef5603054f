"""The α sweep of a two-branch merge ΔW = α·first + (1−α)·second: per-task normalized test accuracy at every evaluated
α, beside the paper's.

The paper prints two: Table 7 sweeps its hybrid (KnOTS-TIES with CUR-TIES), Table 8 the mix of KnOTS-TIES with
LoRA-LEGO (``mix`` with ``first: knots_ties, second: lora_lego``). Both are :func:`alpha_sweep_table`; the paper's rows
stand beside ours only when our merge mixes the same two methods as the paper's table (:func:`sweep_paper`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from loramerge.repro.plan import ConfigError, MethodPlan
from loramerge.repro.report.naming import format_params, method_display_name
from loramerge.repro.report.naming import task_columns as display_columns
from loramerge.repro.report.paper import ALPHA_SWEEP_BRANCHES, read_paper_table
from loramerge.repro.report.rows import (
    SOURCE_COLUMN,
    SWEEP_AVERAGE_COLUMN,
    SWEEP_VAL_AVERAGE_COLUMN,
    Row,
    Rows,
    check_paper_tasks,
    mean,
    normalization_note,
    number,
    paper_note,
    per_task_values,
    spread_note,
)
from loramerge.repro.search import (
    AccuracySplit,
    ParamValue,
    SettingTable,
    chosen_setting,
    replicate_table,
    setting_key,
)

# The hybrid's branches are fixed, and Table 7 was titled before any other sweep existed: its title stays as it was.
FIXED_TITLES = {"hybrid": "The hybrid's α sweep (α = 1: KnOTS-TIES, α = 0: CUR-TIES)"}


def sweep_branches(plan: MethodPlan) -> tuple[str, str]:
    """The two methods ``(first, second)`` a two-branch method's plan mixes, α weighting the first.

    Tuned branches are the configured methods whose searches tune them; otherwise the catalogue's fixed branches or the
    config's ``fixed`` ones (``mix``'s ``first``/``second``).
    """
    facts = plan.facts
    if not facts.is_two_branch():
        raise ConfigError(f"merge.methods.{plan.method}", f"{plan.method} mixes no two branches, so it has no α sweep")
    names = []
    for index, prefix in enumerate(facts.branch_prefixes):
        name = plan.branches.get(prefix) or plan.search.defaults.get(prefix)
        if name is None and facts.branches is not None:
            name = facts.branches[index]
        if not isinstance(name, str):
            raise ConfigError(f"merge.methods.{plan.method}.fixed.{prefix}", "names no branch method")
        names.append(name)
    return names[0], names[1]


def sweep_paper(paper: str | None, paper_table: str, branches: Sequence[str]) -> str | None:
    """``paper`` when its ``paper_table`` (``table7``, ``table8``) mixes exactly ``branches`` (first, second), else
    None: a sweep of two other methods has no published numbers to stand beside."""
    if paper is None:
        return None
    return paper if tuple(branches) == ALPHA_SWEEP_BRANCHES[paper_table] else None


def sweep_title(method: str, branches: Sequence[str]) -> str:
    """What the table shows: ``The α sweep of α·KnOTS-TIES + (1−α)·LoRA-LEGO`` (Table 7 keeps its own words)."""
    if method in FIXED_TITLES:
        return FIXED_TITLES[method]
    first, second = (method_display_name(branch) for branch in branches)
    return f"The α sweep of α·{first} + (1−α)·{second}"


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


def _paper_sweep(paper: str, paper_table: str, columns: Sequence[str], task_columns: Sequence[str]) -> dict[float, Row]:
    printed = read_paper_table(paper, paper_table)
    check_paper_tasks(paper, paper_table.replace("table", "Table "), printed.columns, task_columns)
    return {float(row["alpha"]): {column: float(row[column]) for column in columns} for _, row in printed.iterrows()}


def _other_branches_note(paper: str, paper_table: str) -> str:
    first, second = (method_display_name(branch) for branch in ALPHA_SWEEP_BRANCHES[paper_table])
    name = paper_table.replace("table", "Table ")
    return f"The paper's {name} ({paper}) mixes {first} (α = 1) with {second} (α = 0): no published numbers here."


def alpha_sweep_table(
    table: SettingTable,
    *,
    branches: Sequence[str],
    paper_table: str,
    alpha_param: str = "alpha",
    fixed: Mapping[str, ParamValue] | None = None,
    replicates: Mapping[str, Sequence[ParamValue]] | None = None,
    tasks: Sequence[str] | None = None,
    test_split: str = "test",
    val_split: str = "val",
    paper: str | None = None,
    normalized_by: str | None = None,
) -> pd.DataFrame:
    """One row per α (ascending), normalized test accuracy per task, ``Avg`` over them, and ``Val Avg``.

    ``table`` is the swept method's :func:`loramerge.repro.search.build_setting_table`; ``fixed`` pins its other
    parameters; ``replicates`` (its search's, e.g. ``{"seed": [0, 1, 2]}``) merges the settings that differ only in
    them, shown as the mean with an ``ours std`` row. ``branches`` are the two methods it mixes (first, weighted by α;
    second), see :func:`sweep_branches`; ``paper_table`` is the paper's number for the sweep (``table7`` for the
    hybrid, ``table8`` for ``mix``). With ``paper``, and only when the paper's table mixes the same two methods
    (:func:`sweep_paper`), each α the paper printed gets its row and Δ after ours (an α only one side has gets only
    its row); with other branches a note says why there are none.
    """
    if paper_table not in ALPHA_SWEEP_BRANCHES:
        raise ValueError(f"{paper_table!r} is none of the paper's α sweeps {sorted(ALPHA_SWEEP_BRANCHES)}")
    tasks = list(tasks) if tasks is not None else list(table.tasks)
    task_columns = display_columns(tasks)
    values_columns = [*task_columns, SWEEP_AVERAGE_COLUMN]
    if replicates:
        table = replicate_table(table, replicates)
    ours_by_alpha: dict[float, tuple[Row, Row | None]] = {}
    for value, setting in sweep_settings(table, alpha_param, fixed):
        scored = chosen_setting(table, setting, AccuracySplit, val_split=val_split, test_split=test_split)
        what = f"{table.method} {format_params(setting)}"
        values = per_task_values(scored.test.per_task, tasks, what)
        ours = {
            **dict(zip(task_columns, values, strict=True)),
            SWEEP_AVERAGE_COLUMN: mean(values),
            SWEEP_VAL_AVERAGE_COLUMN: number(scored.val.mean),
        }
        std = None
        if scored.has_spread:
            spread = per_task_values(scored.test.std.per_task, tasks, f"{what} std")
            std = {
                **dict(zip(task_columns, spread, strict=True)),
                SWEEP_AVERAGE_COLUMN: number(scored.test.std.mean),
                SWEEP_VAL_AVERAGE_COLUMN: number(scored.val.std.mean),
            }
        ours_by_alpha[float(value)] = (ours, std)
    compared = sweep_paper(paper, paper_table, branches)
    published = {} if compared is None else _paper_sweep(compared, paper_table, values_columns, task_columns)

    rows = Rows(setting_columns=[alpha_param])
    # α from the config and from the paper's CSV may differ in their last bits (0.30000000000000004 vs 0.3)
    ours_keys = {round(alpha, 9): alpha for alpha in ours_by_alpha}
    paper_keys = {round(alpha, 9): alpha for alpha in published}
    for key in sorted(set(ours_keys) | set(paper_keys)):
        alpha = ours_keys.get(key, paper_keys.get(key))
        labels = {alpha_param: alpha}
        if key in ours_keys:
            rows.ours(labels, *ours_by_alpha[ours_keys[key]])
        if key in paper_keys:
            rows.paper(labels, published[paper_keys[key]])
            if key in ours_keys:
                rows.delta(labels, ours_by_alpha[ours_keys[key]][0], published[paper_keys[key]], values_columns)
    notes = [normalization_note(normalized_by)]
    if rows.std_rows:
        notes.append(spread_note([table.method], replicates or {}))
    if compared is not None:
        notes.append(paper_note(compared, paper_table, []))
    elif paper is not None:
        notes.append(_other_branches_note(paper, paper_table))
    sweep = rows.frame(
        [alpha_param, SOURCE_COLUMN, *values_columns, SWEEP_VAL_AVERAGE_COLUMN],
        with_source=compared is not None or bool(rows.std_rows),
        title=f"{sweep_title(table.method, branches)}: per-task normalized test accuracy (%)",
        notes=notes,
    )
    sweep.attrs["markdown_floatfmt"] = {alpha_param: "g"}
    return sweep
