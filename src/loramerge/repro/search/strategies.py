"""The two searches over a :class:`~loramerge.repro.search.settings.SettingTable`: KnOTS's greedy linear search
(`docs/protocol.md` §6.1) and the full-grid argmax. Both only ever look at one split (validation); test numbers are
read for the chosen setting.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loramerge.repro.search.records import ParamValue, SelectionError
from loramerge.repro.search.settings import SettingTable, canonical_value, plain_value


def _starting_params(
    table: SettingTable, order: Sequence[str], defaults: Mapping[str, ParamValue], free: set[str]
) -> dict[str, ParamValue]:
    """Every parameter a setting holds, fixed from ``defaults`` or, failing that, from its only evaluated value.

    Parameters in ``free`` are overwritten before they are first used, so they need no starting value.
    """
    names = {name for setting in table.params.values() for name in setting} | set(order)
    start: dict[str, ParamValue] = {}
    for name in sorted(names):
        if name in defaults:
            start[name] = defaults[name]
            continue
        if name in free:
            continue
        values = {canonical_value(setting[name]) for setting in table.params.values() if name in setting}
        if len(values) != 1:
            raise SelectionError(
                f"{table.method}: parameter {name!r} has no default and the evaluations hold "
                f"{sorted(values, key=repr) if values else 'no value'} for it"
            )
        start[name] = next(setting[name] for setting in table.params.values() if name in setting)
    return start


def _check_grids(order: Sequence[str], grids: Mapping[str, Sequence[ParamValue]]) -> None:
    for name in order:
        if name not in grids or len(grids[name]) == 0:
            raise SelectionError(f"parameter {name!r} is in the search order but has no grid values")
    if len(set(order)) != len(order):
        raise SelectionError(f"search order {list(order)} repeats a parameter")


@dataclass(frozen=True)
class GreedyResult:
    """The greedy winner and every setting the search scored, in the order it scored them."""

    params: dict[str, ParamValue]
    score: float
    path: list[dict[str, Any]]


def greedy_select(
    table: SettingTable,
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    split: str = "val",
    carry_best_across_params: bool = False,
    strict: bool = False,
) -> GreedyResult:
    """KnOTS's coordinate-wise linear search with early stopping, scored on ``split``.

    Parameters are tuned one at a time in ``order``. For parameter p the candidates are
    ``current | {p: v}`` for v in ``grids[p]`` in list order, where ``current`` starts as ``defaults`` and holds the
    winners of the parameters already tuned. Each candidate's score (:meth:`SettingTable.score`) is compared with
    ``best``, the best score of p's sweep so far: the candidate is kept (it becomes p's winner and ``best`` becomes its
    score) if ``score >= best`` — so a later equal value wins — or, with ``strict`` (the authors' joint search),
    ``score > best`` — so an equal value does not improve and stops the sweep. The sweep of p stops at the first
    candidate that is not kept. p is then fixed to its winner and the next parameter is swept.

    What the first candidate of a sweep is compared with: in the authors' scripts
    (``eval_scripts/*_linearsearch.py``) ``best_val_results = {'Average_norm_acc': 0.0}`` is reset at the start of
    every parameter's sweep, so the first value of every sweep is compared with 0 and always kept; each parameter's
    winner therefore comes from its own grid even when it scores below the previous parameter's winner. That is the
    default here (−inf stands in for 0; scores are never negative). With ``carry_best_across_params=True`` ``best``
    is instead carried over from the previous parameter's winner, so a sweep whose first value scores below it stops
    at once and p keeps its default.

    Parameters not in ``order`` (a DARE seed, the λ of a method evaluated at one λ) keep their value from
    ``defaults``, or their only evaluated value. A candidate that was not evaluated is an error naming it.
    """
    _check_grids(order, grids)
    current = _starting_params(table, order, defaults, free=set(order[:1]))
    path: list[dict[str, Any]] = []
    best = -math.inf
    for name in order:
        if not carry_best_across_params:
            best = -math.inf
        winner = current.get(name)
        for value in grids[name]:
            candidate = {**current, name: value}
            score = table.score(candidate, split)
            kept = score > best if strict else score >= best
            path.append(
                {
                    "param": name,
                    "value": plain_value(value),
                    "params": table.stored_params(candidate),
                    "score": score,
                    "compared_with": None if math.isinf(best) else best,
                    "kept": kept,
                }
            )
            if not kept:
                break
            best, winner = score, value
        current[name] = winner
    final = table.stored_params(current)
    return GreedyResult(params=final, score=table.score(final, split), path=path)


def grid_select(
    table: SettingTable,
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    split: str = "val",
    allow_missing: bool = False,
) -> dict[str, ParamValue]:
    """The setting of the full grid (``itertools.product`` over ``order``) with the highest score on ``split``.

    Ties go to the first setting in that product order (each grid in its configured order). Parameters not in
    ``order`` are fixed as in :func:`greedy_select`. A grid setting that was not evaluated is an error unless
    ``allow_missing``, in which case it is skipped. Settings evaluated only for the greedy walk (at a default that is
    no grid value, such as KnOTS's DARE p = 1e-5) are never candidates.
    """
    _check_grids(order, grids)
    fixed = _starting_params(table, order, defaults, free=set(order))
    best_params: dict[str, ParamValue] | None = None
    best_score = -math.inf
    for values in itertools.product(*(grids[name] for name in order)):
        candidate = {**fixed, **dict(zip(order, values, strict=True))}
        if allow_missing and candidate not in table:
            continue
        score = table.score(candidate, split)
        if best_params is None or score > best_score:
            best_params, best_score = table.stored_params(candidate), score
    if best_params is None:
        raise SelectionError(f"{table.method}: no setting of the grid was evaluated")
    return best_params
