"""How the report names things: methods and their order (from the method catalogue), the data each one reads, tasks,
and settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loramerge.methods.catalog import CATALOG, data_label, paper_method_name
from loramerge.repro.search import ParamValue

# The tables' method order: the catalogue's.
METHOD_ORDER = tuple(CATALOG)

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

__all__ = [
    "METHOD_ORDER",
    "TASK_DISPLAY_NAMES",
    "data_seen",
    "format_params",
    "method_display_name",
    "ordered_methods",
    "paper_method_name",
    "paper_row_data_seen",
    "task_columns",
    "task_display_name",
]


def task_display_name(task: str) -> str:
    """``stanford_cars`` → ``Cars``, ``eurosat`` → ``EuroSAT``; unknown tasks keep their name."""
    return TASK_DISPLAY_NAMES.get(task, task)


def method_display_name(method: str) -> str:
    """``knots_ties`` → ``KnOTS-TIES``; methods outside the catalogue keep their name."""
    facts = CATALOG.get(method)
    return method if facts is None else facts.display_name


def data_seen(method: str, params: Mapping[str, ParamValue] | None = None) -> str:
    """The catalogue's label of the data a merge of ``method`` at ``params`` reads besides the adapters (``none``,
    ``train inputs``, ``val inputs``); empty for a method outside the catalogue.

    A two-branch method reads what its branches read: the catalogue's fixed branches, or the ones its setting names
    (``mix``'s ``first``/``second``), so a mix with RegMean is not labelled training-free.
    """
    facts = CATALOG.get(method)
    if facts is None:
        return ""
    setting = params or {}
    branches = facts.branches or tuple(setting.get(prefix) for prefix in facts.branch_prefixes or ())
    needs = set(facts.needs)
    for branch in branches:
        if isinstance(branch, str) and branch in CATALOG:
            needs |= CATALOG[branch].needs
    return data_label(needs)


def paper_row_data_seen(table: str, row: str) -> str:
    """:func:`data_seen` of the method the paper's ``table`` calls ``row``; empty for a row that names none of ours
    (the paper's Ensemble, its fine-tuned row)."""
    method = next((name for name, facts in CATALOG.items() if facts.paper_names.get(table) == row), None)
    return "" if method is None else data_seen(method)


def task_columns(tasks: Sequence[str]) -> list[str]:
    """The column name of each task; two tasks with one display name are an error."""
    columns = [task_display_name(task) for task in tasks]
    if len(set(columns)) != len(columns):
        raise ValueError(f"tasks {list(tasks)} give repeated column names {columns}")
    return columns


def ordered_methods(selections: Mapping[str, Any], methods: Sequence[str] | None) -> list[str]:
    """``methods``, or by default the catalogue's order then any other method by name; each must have a selection."""
    if methods is None:
        methods = [m for m in METHOD_ORDER if m in selections] + sorted(set(selections) - set(METHOD_ORDER))
    absent = [method for method in methods if method not in selections]
    if absent:
        raise ValueError(f"no selection results for methods {absent}")
    return list(methods)


def format_params(params: Mapping[str, ParamValue]) -> str:
    """A compact, stable string of a setting: λ first, then the others by name (``lam=0.5, top_k=20``)."""
    names = sorted(params, key=lambda name: (name != "lam", name))
    return ", ".join(f"{name}={_format_value(params[name])}" for name in names)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
