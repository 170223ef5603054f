"""Which statistics the planned merges read, and whether the suite can collect them; torch-free, since the workflow
builds its DAG from it at every invocation."""

from __future__ import annotations

from collections.abc import Mapping

from loramerge.methods.catalog import CATALOG
from loramerge.repro.plan import ConfigError, MethodPlan
from loramerge.repro.suites.base import Suite


def statistics_kind(plan: MethodPlan) -> str | None:
    """The statistics kind (`gram`, `fisher`) the merges of `plan` read, through the method or one of its branch
    methods; None when they read none. A merge reads one statistics folder, so two kinds are refused."""
    defaults = plan.search.defaults
    branch_methods = {*plan.branches.values(), *(defaults.get(p) for p in plan.facts.branch_prefixes or ())}
    names = sorted(name for name in {plan.method, *branch_methods} if name in CATALOG)
    kinds = {CATALOG[name].statistics_kind for name in names} - {None}
    if len(kinds) > 1:
        raise ConfigError(
            f"merge.methods.{plan.method}", f"its merges would read both {' and '.join(sorted(kinds))} statistics"
        )
    return kinds.pop() if kinds else None


def needed_kinds(suite: Suite, plans: Mapping[str, MethodPlan]) -> list[str]:
    """The statistics kinds the plans read (sorted), checked against what the suite can collect."""
    kinds: dict[str, str] = {}  # kind -> the first method that reads it, for the error message
    for name, plan in plans.items():
        kind = statistics_kind(plan)
        if kind is not None:
            kinds.setdefault(kind, name)
    if kinds:
        suite.check_statistics(f"merge.methods.{min(kinds.values())}")
    return sorted(kinds)
