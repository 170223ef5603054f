"""Hyper-parameter selection from per-task evaluations: KnOTS's greedy linear search and the full-grid argmax.

A *setting* is one merged model at one scale: the structural parameters of the merge (the evaluation file's
``point``) plus ``{"lam": λ}``. Every setting is scored per split as KnOTS does it (§5.1 of the protocol):
``norm_task = 100 · acc_task / ft_acc_task`` with ``ft_acc`` the fine-tuned model's *test* accuracy of that task, also
when the split scored is validation, and the setting's score is the unweighted mean of ``norm_task`` over tasks (a mean
of ratios, not a ratio of means). Selection only ever looks at validation; test numbers are read for the chosen setting.

Input files (written by the workflow):

- fine-tuned: ``{"task": "digits", "records": [{"split": "val", "correct": 280, "total": 300, "accuracy": ...}, ...]}``
- evaluation: ``{"method": "knots_ties", "point": {"top_k": 20}, "records": [{"lam": 0.5, "task": "digits",
  "split": "val", "correct": 250, "total": 300, "accuracy": ...}, ...]}``

Accuracy is ``correct / total`` when both are present (exact, whatever rounding ``accuracy`` had), else ``accuracy``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loramerge.errors import LoramergeError

ParamValue = int | float | str | bool
SettingKey = tuple[tuple[str, ParamValue], ...]
Finetuned = Mapping[str, Mapping[str, float]]  # task -> split -> accuracy in [0, 1]
PathLike = str | Path

SCALE_PARAM = "lam"


class SelectionError(LoramergeError):
    """An evaluation or fine-tuned file, or a setting, that selection cannot use; the message names it."""


def _plain(value: Any) -> Any:
    # numpy scalars from a caller's grid (np.arange) would not survive json.dumps.
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


def _canonical(value: ParamValue) -> ParamValue:
    # Grids from configs and points from JSON may spell the same float differently (0.3 vs 0.30000000000000004).
    value = _plain(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def setting_key(params: Mapping[str, ParamValue]) -> SettingKey:
    """The hashable identity of a setting: its parameters sorted by name, floats rounded to 12 significant digits."""
    return tuple(sorted((name, _canonical(value)) for name, value in params.items()))


def describe_setting(params: Mapping[str, ParamValue]) -> str:
    """``{lam=0.5, top_k=20}``: how errors name a setting."""
    return "{" + ", ".join(f"{name}={value!r}" for name, value in sorted(params.items())) + "}"


def _record_accuracy(record: Mapping[str, Any], source: str) -> float:
    if "correct" in record and "total" in record:
        total = record["total"]
        if total <= 0:
            raise SelectionError(f"{source}: record {dict(record)} has total={total}")
        return float(record["correct"]) / float(total)
    if "accuracy" in record:
        return float(record["accuracy"])
    raise SelectionError(f"{source}: record {dict(record)} has neither correct/total nor accuracy")


def _read_json(path: PathLike) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise SelectionError(f"{path}: cannot read JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise SelectionError(f"{path}: expected an object with a 'records' list")
    return data


def load_finetuned(paths: Iterable[PathLike]) -> dict[str, dict[str, float]]:
    """Read fine-tuned evaluation files into ``{task: {split: accuracy}}`` (accuracy in [0, 1])."""
    finetuned: dict[str, dict[str, float]] = {}
    for path in paths:
        data = _read_json(path)
        task = data.get("task")
        if not isinstance(task, str):
            raise SelectionError(f"{path}: missing 'task'")
        if task in finetuned:
            raise SelectionError(f"{path}: task {task!r} appears in two fine-tuned files")
        splits: dict[str, float] = {}
        for record in data["records"]:
            splits[str(record["split"])] = _record_accuracy(record, str(path))
        finetuned[task] = dict(sorted(splits.items()))
    return dict(sorted(finetuned.items()))


def load_evaluations(paths: Iterable[PathLike]) -> list[dict[str, Any]]:
    """Read merged-model evaluation files as they are, checking that each has ``method``, ``point`` and ``records``."""
    evaluations = []
    for path in paths:
        data = _read_json(path)
        if not isinstance(data.get("method"), str) or not isinstance(data.get("point", {}), dict):
            raise SelectionError(f"{path}: expected 'method' (a string) and 'point' (an object)")
        data.setdefault("point", {})
        data["source"] = str(path)
        evaluations.append(data)
    return evaluations


def finetuned_base(finetuned: Finetuned, base_split: str = "test") -> dict[str, float]:
    """The per-task fine-tuned accuracy every split is normalised by (KnOTS: the test accuracy)."""
    base = {}
    for task, splits in finetuned.items():
        if base_split not in splits:
            raise SelectionError(f"fine-tuned task {task!r} has no {base_split!r} accuracy to normalise by")
        if splits[base_split] <= 0:
            raise SelectionError(f"fine-tuned task {task!r} has {base_split} accuracy {splits[base_split]}")
        base[task] = float(splits[base_split])
    return dict(sorted(base.items()))


@dataclass(frozen=True)
class SplitScores:
    """One setting on one split: raw accuracy and normalised accuracy per task, and their unweighted mean."""

    accuracy: dict[str, float]
    normalized: dict[str, float]
    mean: float

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": dict(self.accuracy), "mean": self.mean, "per_task": dict(self.normalized)}


def normalize(accuracy: Mapping[str, float], base: Mapping[str, float]) -> SplitScores:
    """``norm_task = 100 · acc_task / base_task`` and their unweighted mean over the tasks of ``accuracy``."""
    missing = sorted(set(accuracy) - set(base))
    if missing:
        raise SelectionError(f"no fine-tuned accuracy to normalise tasks {missing}")
    tasks = sorted(accuracy)
    normalized = {task: 100.0 * float(accuracy[task]) / float(base[task]) for task in tasks}
    mean = math.fsum(normalized.values()) / len(tasks) if tasks else math.nan
    return SplitScores({task: float(accuracy[task]) for task in tasks}, normalized, float(mean))


@dataclass
class SettingTable:
    """Every evaluated setting of one method, scored on each split it was evaluated on."""

    method: str
    tasks: tuple[str, ...]
    params: dict[SettingKey, dict[str, ParamValue]] = field(default_factory=dict)
    scores: dict[SettingKey, dict[str, SplitScores]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, params: object) -> bool:
        return isinstance(params, Mapping) and setting_key(params) in self.params

    def settings(self) -> list[dict[str, ParamValue]]:
        """Every setting's parameters, in sorted key order."""
        return [dict(self.params[key]) for key in sorted(self.params, key=repr)]

    def stored_params(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        """The parameters as the evaluation files spell them (so output reports 20, not 20.0)."""
        return dict(self.params[self._key(params)])

    def lookup(self, params: Mapping[str, ParamValue], split: str) -> SplitScores:
        """The scores of one setting on ``split``; an error naming the setting if it was not evaluated."""
        key = self._key(params)
        by_split = self.scores[key]
        if split not in by_split:
            raise SelectionError(
                f"{self.method}: setting {describe_setting(params)} has no {split!r} evaluation "
                f"(splits evaluated: {sorted(by_split)})"
            )
        return by_split[split]

    def _key(self, params: Mapping[str, ParamValue]) -> SettingKey:
        key = setting_key(params)
        if key not in self.params:
            raise SelectionError(f"{self.method}: setting {describe_setting(params)} was not evaluated")
        return key


def build_setting_table(
    evaluations: Iterable[Mapping[str, Any]],
    finetuned: Finetuned,
    *,
    base_split: str = "test",
    tasks: Sequence[str] | None = None,
) -> SettingTable:
    """Score every (point, λ) setting of one method on every split its records cover.

    ``tasks`` defaults to every task with a fine-tuned file; each setting must have a record for each of them on each
    split it was evaluated on, else an error names the setting, split and missing tasks.
    """
    base = finetuned_base(finetuned, base_split)
    expected = tuple(sorted(tasks if tasks is not None else base))
    unknown = sorted(set(expected) - set(base))
    if unknown:
        raise SelectionError(f"tasks {unknown} have no fine-tuned accuracy")

    method: str | None = None
    params: dict[SettingKey, dict[str, ParamValue]] = {}
    accuracies: dict[SettingKey, dict[str, dict[str, float]]] = {}
    for evaluation in evaluations:
        source = str(evaluation.get("source", evaluation.get("method", "evaluation")))
        if method is None:
            method = evaluation["method"]
        elif evaluation["method"] != method:
            raise SelectionError(f"{source}: method {evaluation['method']!r} mixed with {method!r}")
        point = dict(evaluation.get("point") or {})
        if SCALE_PARAM in point:
            raise SelectionError(f"{source}: point must not hold {SCALE_PARAM!r}; it belongs to each record")
        for record in evaluation["records"]:
            setting = {**point, SCALE_PARAM: record[SCALE_PARAM]}
            key = setting_key(setting)
            params.setdefault(key, setting)
            task, split = str(record["task"]), str(record["split"])
            if task not in expected:
                raise SelectionError(f"{source}: task {task!r} is not one of the tasks scored {list(expected)}")
            accuracy = _record_accuracy(record, source)
            by_task = accuracies.setdefault(key, {}).setdefault(split, {})
            if task in by_task and by_task[task] != accuracy:
                raise SelectionError(
                    f"{source}: setting {describe_setting(setting)} has two different {split} accuracies for {task!r}"
                )
            by_task[task] = accuracy
    if method is None:
        raise SelectionError("no evaluations given")

    table = SettingTable(method=method, tasks=expected)
    for key in sorted(params, key=repr):
        scores = {}
        for split, by_task in sorted(accuracies[key].items()):
            missing = sorted(set(expected) - set(by_task))
            if missing:
                raise SelectionError(
                    f"{method}: setting {describe_setting(params[key])} lacks {split} results for tasks {missing}"
                )
            scores[split] = normalize(by_task, base)
        table.params[key] = params[key]
        table.scores[key] = scores
    return table


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
        values = {_canonical(setting[name]) for setting in table.params.values() if name in setting}
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
) -> GreedyResult:
    """KnOTS's coordinate-wise linear search with early stopping, scored on ``split``.

    Parameters are tuned one at a time in ``order``. For parameter p the candidates are
    ``current | {p: v}`` for v in ``grids[p]`` in list order, where ``current`` starts as ``defaults`` and holds the
    winners of the parameters already tuned. Each candidate's mean normalised score is compared with ``best``, the
    best score of p's sweep so far: the candidate is kept (it becomes p's winner and ``best`` becomes its score) if
    ``score >= best`` — so a later equal value wins — and the sweep of p stops at the first candidate with
    ``score < best``. p is then fixed to its winner and the next parameter is swept.

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
            score = table.lookup(candidate, split).mean
            kept = score >= best
            path.append(
                {
                    "param": name,
                    "value": _plain(value),
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
    return GreedyResult(params=final, score=table.lookup(final, split).mean, path=path)


def grid_select(
    table: SettingTable,
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    split: str = "val",
    allow_missing: bool = False,
) -> dict[str, ParamValue]:
    """The setting of the full grid (``itertools.product`` over ``order``) with the highest mean score on ``split``.

    Ties go to the first setting in that product order (each grid in its configured order). Parameters not in
    ``order`` are fixed as in :func:`greedy_select`. A grid setting that was not evaluated is an error unless
    ``allow_missing``, in which case it is skipped.
    """
    _check_grids(order, grids)
    fixed = _starting_params(table, order, defaults, free=set(order))
    best_params: dict[str, ParamValue] | None = None
    best_score = -math.inf
    for values in itertools.product(*(grids[name] for name in order)):
        candidate = {**fixed, **dict(zip(order, values, strict=True))}
        if allow_missing and candidate not in table:
            continue
        score = table.lookup(candidate, split).mean
        if best_params is None or score > best_score:
            best_params, best_score = table.stored_params(candidate), score
    if best_params is None:
        raise SelectionError(f"{table.method}: no setting of the grid was evaluated")
    return best_params


def setting_summary(
    table: SettingTable, params: Mapping[str, ParamValue], *, val_split: str = "val", test_split: str = "test"
) -> dict[str, Any]:
    """``{"params", "val": {"per_task", "mean", "accuracy"}, "test": {...}}`` for one setting (JSON-ready)."""
    return {
        "params": dict(sorted(table.stored_params(params).items())),
        "test": table.lookup(params, test_split).to_json(),
        "val": table.lookup(params, val_split).to_json(),
    }


def select_method(
    evaluations: Iterable[Mapping[str, Any] | PathLike],
    finetuned: Finetuned | Iterable[PathLike],
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    base_split: str = "test",
    val_split: str = "val",
    test_split: str = "test",
    allow_missing: bool = False,
    carry_best_across_params: bool = False,
) -> dict[str, Any]:
    """Greedy and full-grid selection on ``val_split`` for one method, with test numbers of both choices.

    ``evaluations``: evaluation file paths or already loaded evaluation dicts; ``finetuned``: fine-tuned file paths
    or ``{task: {split: accuracy}}``. Returns ``{"method", "tasks", "normalized_by", "settings_evaluated",
    "greedy": S, "grid": S, "greedy_path": [...]}`` with S as from :func:`setting_summary`.
    """
    loaded = [item if isinstance(item, Mapping) else load_evaluations([item])[0] for item in evaluations]
    if not isinstance(finetuned, Mapping):
        finetuned = load_finetuned(finetuned)
    table = build_setting_table(loaded, finetuned, base_split=base_split)
    greedy = greedy_select(
        table, order, grids, defaults, split=val_split, carry_best_across_params=carry_best_across_params
    )
    grid = grid_select(table, order, grids, defaults, split=val_split, allow_missing=allow_missing)
    return {
        "greedy": setting_summary(table, greedy.params, val_split=val_split, test_split=test_split),
        "greedy_path": greedy.path,
        "grid": setting_summary(table, grid, val_split=val_split, test_split=test_split),
        "method": table.method,
        "normalized_by": f"fine-tuned {base_split} accuracy",
        "settings_evaluated": len(table),
        "tasks": list(table.tasks),
    }
