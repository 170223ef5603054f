"""Hyper-parameter selection from evaluations: KnOTS's greedy linear search and the full-grid argmax.

A *setting* is one merged model at one scale: the structural parameters of the merge (the evaluation file's
``point``) plus ``{"lam": λ}``. Selection only ever looks at validation; test numbers are read for the chosen setting.

Per-task scores (§5.1 of the protocol): ``norm_task = 100 · acc_task / base_task`` and the setting's score is the
unweighted mean of ``norm_task`` over tasks (a mean of ratios, not a ratio of means). ``base_task`` is the fine-tuned
model's *test* accuracy of that task, also when the split scored is validation: measured here by evaluating each
adapter alone (``normalize_by="measured"``), or the values the paper's source published (``"published"``).

Joint scores (§5.2): every task's samples are ranked against the union of all label spaces. Per task,
``Top-k = hits_k / N_task``; the score is the pooled ``Hits@k = Σ_task hits_k / Σ_task N_task`` (so large datasets
weigh more), both in percent. The joint search selects on the pooled validation Hits@``select_k`` and its greedy
search keeps a value only if it is strictly better (``>``), where the per-task search keeps ties (``≥``).

Replicates: settings that differ only in a replicate parameter (a DARE seed) are one setting. Its score on a split is
the mean over replicates of each replicate's score, each per-task (and pooled) number is the mean over replicates, and
the summary of a chosen setting also gives the sample standard deviation over replicates (ddof=1) and every
replicate's own numbers.

Input files (written by the workflow):

- fine-tuned: ``{"task": "digits", "records": [{"split": "val", "correct": 280, "total": 300, "accuracy": ...}, ...]}``
- evaluation: ``{"method": "knots_ties", "point": {"top_k": 20}, "records": [{"lam": 0.5, "task": "digits",
  "split": "val", "correct": 250, "total": 300, "accuracy": ...}, ...]}``
- joint evaluation: ``{"method": ..., "point": {...}, "records": [{"lam": 0.5, "task": "cars", "split": "val",
  "total": 1608, "hits": {"1": 980, "3": 1300, "5": 1400}}, ...]}``

Accuracy is ``correct / total`` when both are present (exact, whatever rounding ``accuracy`` had), else ``accuracy``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from loramerge.errors import LoramergeError

ParamValue = int | float | str | bool
SettingKey = tuple[tuple[str, ParamValue], ...]
Finetuned = Mapping[str, Mapping[str, float]]  # task -> split -> accuracy in [0, 1]
PathLike = str | Path

SCALE_PARAM = "lam"
NORMALIZE_BY = ("measured", "published")
NORMALIZATION_NOTES = {
    "measured": "normalised by each adapter's fine-tuned test accuracy measured in this run",
    "published": "normalised by the published fine-tuned accuracy of each adapter",
}


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
    """Read merged-model evaluation files (per-task or joint) as they are, checking method, point and records."""
    evaluations = []
    for path in paths:
        data = _read_json(path)
        if not isinstance(data.get("method"), str) or not isinstance(data.get("point", {}), dict):
            raise SelectionError(f"{path}: expected 'method' (a string) and 'point' (an object)")
        data.setdefault("point", {})
        data["source"] = str(path)
        evaluations.append(data)
    return evaluations


# -- the normalisation base ------------------------------------------------------------------------------------------


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


def normalisation_base(
    finetuned: Finetuned,
    normalize_by: str = "measured",
    published: Mapping[str, float] | None = None,
    *,
    base_split: str = "test",
) -> dict[str, float]:
    """Per task of ``finetuned``, the accuracy in [0, 1] that every split is normalised by.

    ``measured``: the fine-tuned ``base_split`` accuracy in ``finetuned``. ``published``: ``published[task]``, given
    in percent as papers print it (74.0), for every task of ``finetuned``.
    """
    if normalize_by == "measured":
        return finetuned_base(finetuned, base_split)
    if normalize_by != "published":
        raise SelectionError(f"normalize_by must be one of {list(NORMALIZE_BY)}, not {normalize_by!r}")
    published = published or {}
    missing = [task for task in sorted(finetuned) if task not in published]
    if missing:
        raise SelectionError(f"normalize_by 'published' needs a published fine-tuned accuracy for tasks {missing}")
    base = {}
    for task in sorted(finetuned):
        value = float(published[task])
        if not 0 < value <= 100:
            raise SelectionError(f"published fine-tuned accuracy of {task!r} is {value}; expected percent in (0, 100]")
        base[task] = value / 100.0
    return base


# -- scores of one setting on one split --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitScores:
    """One setting on one split: raw accuracy and normalised accuracy per task, and their unweighted mean."""

    accuracy: dict[str, float]
    normalized: dict[str, float]
    mean: float

    SPREAD_KEYS: ClassVar[tuple[str, ...]] = ("mean", "per_task")

    @property
    def score(self) -> float:
        """What selection maximises: the mean normalised accuracy."""
        return self.mean

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


@dataclass(frozen=True)
class JointScores:
    """One setting on one split of the joint evaluation: hit counts per task and k, and the samples per task."""

    select_k: int
    total: dict[str, int]
    hits: dict[str, dict[int, int]]

    SPREAD_KEYS: ClassVar[tuple[str, ...]] = ("per_task", "pooled")

    @property
    def ks(self) -> list[int]:
        return sorted(next(iter(self.hits.values())))

    def top_k(self, task: str, k: int) -> float:
        """Per-task Top-k in percent: ``100 · hits_k / N_task``."""
        return 100.0 * self.hits[task][k] / self.total[task]

    def pooled(self, k: int) -> float:
        """Joint Hits@k in percent, pooled over samples: ``100 · Σ hits_k / Σ N`` (not the mean of per-task rates)."""
        return 100.0 * sum(hits[k] for hits in self.hits.values()) / sum(self.total.values())

    @property
    def score(self) -> float:
        """What selection maximises: pooled Hits@``select_k``."""
        return self.pooled(self.select_k)

    def to_json(self) -> dict[str, Any]:
        return {
            "per_task": {task: {str(k): self.top_k(task, k) for k in self.ks} for task in sorted(self.hits)},
            "pooled": {str(k): self.pooled(k) for k in self.ks},
            "total": dict(sorted(self.total.items())),
        }


def _mean_of(values: Sequence[float]) -> float:
    # Sample counts are the same in every replicate and stay integers.
    if all(isinstance(value, int) and value == values[0] for value in values):
        return values[0]
    return math.fsum(values) / len(values)


def _std_of(values: Sequence[float]) -> float | None:
    # Sample standard deviation (ddof=1); undefined, hence None (JSON null), for a single replicate.
    return statistics.stdev(values) if len(values) > 1 else None


def _leafwise(function: Callable[[Sequence[Any]], Any], trees: Sequence[Any]) -> Any:
    """``function`` applied to the values at each position of equally shaped nested dicts."""
    if isinstance(trees[0], Mapping):
        return {key: _leafwise(function, [tree[key] for tree in trees]) for key in trees[0]}
    return function(list(trees))


@dataclass(frozen=True)
class ReplicatedScores:
    """One setting on one split, scored once per replicate (e.g. per DARE seed)."""

    replicates: tuple[dict[str, ParamValue], ...]
    runs: tuple[SplitScores | JointScores, ...]

    @property
    def score(self) -> float:
        """The mean over replicates of each replicate's score."""
        return _mean_of([run.score for run in self.runs])

    def to_json(self) -> dict[str, Any]:
        """The replicates' JSON averaged leaf by leaf, ``std`` (ddof=1) of the spread keys, and every replicate."""
        runs = [run.to_json() for run in self.runs]
        summary = _leafwise(_mean_of, runs)
        summary["std"] = {key: _leafwise(_std_of, [run[key] for run in runs]) for key in self.runs[0].SPREAD_KEYS}
        summary["replicates"] = [{**replicate, **run} for replicate, run in zip(self.replicates, runs, strict=True)]
        return summary


Scores = SplitScores | JointScores | ReplicatedScores


@dataclass
class SettingTable:
    """Every evaluated setting of one method, scored on each split it was evaluated on."""

    method: str
    tasks: tuple[str, ...]
    params: dict[SettingKey, dict[str, ParamValue]] = field(default_factory=dict)
    scores: dict[SettingKey, dict[str, Scores]] = field(default_factory=dict)

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

    def lookup(self, params: Mapping[str, ParamValue], split: str) -> Scores:
        """The scores of one setting on ``split``; an error naming the setting if it was not evaluated."""
        key = self._key(params)
        by_split = self.scores[key]
        if split not in by_split:
            raise SelectionError(
                f"{self.method}: setting {describe_setting(params)} has no {split!r} evaluation "
                f"(splits evaluated: {sorted(by_split)})"
            )
        return by_split[split]

    def score(self, params: Mapping[str, ParamValue], split: str) -> float:
        """The number selection maximises for one setting on ``split``."""
        return self.lookup(params, split).score

    def _key(self, params: Mapping[str, ParamValue]) -> SettingKey:
        key = setting_key(params)
        if key not in self.params:
            raise SelectionError(f"{self.method}: setting {describe_setting(params)} was not evaluated")
        return key


def _collect(
    evaluations: Iterable[Mapping[str, Any]],
    expected: Sequence[str] | None,
    read: Callable[[Mapping[str, Any], str], Any],
) -> tuple[str, dict[SettingKey, dict[str, ParamValue]], dict[SettingKey, dict[str, dict[str, Any]]]]:
    """Every record's value (``read(record, source)``) by setting, split and task; one method, no conflicts."""
    method: str | None = None
    params: dict[SettingKey, dict[str, ParamValue]] = {}
    values: dict[SettingKey, dict[str, dict[str, Any]]] = {}
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
            if expected is not None and task not in expected:
                raise SelectionError(f"{source}: task {task!r} is not one of the tasks scored {list(expected)}")
            value = read(record, source)
            by_task = values.setdefault(key, {}).setdefault(split, {})
            if task in by_task and by_task[task] != value:
                raise SelectionError(
                    f"{source}: setting {describe_setting(setting)} has two different {split} results for {task!r}"
                )
            by_task[task] = value
    if method is None:
        raise SelectionError("no evaluations given")
    return method, params, values


def _complete(
    method: str, params: dict[str, ParamValue], split: str, by_task: Mapping[str, Any], expected: Sequence[str]
) -> None:
    missing = sorted(set(expected) - set(by_task))
    if missing:
        raise SelectionError(f"{method}: setting {describe_setting(params)} lacks {split} results for tasks {missing}")


def build_setting_table(
    evaluations: Iterable[Mapping[str, Any]],
    finetuned: Finetuned,
    *,
    base_split: str = "test",
    tasks: Sequence[str] | None = None,
    base: Mapping[str, float] | None = None,
) -> SettingTable:
    """Score every (point, λ) setting of one method on every split its records cover.

    Scores are normalised by ``base`` (accuracy in [0, 1] per task, see :func:`normalisation_base`), by default the
    fine-tuned ``base_split`` accuracy. ``tasks`` defaults to every task with a fine-tuned file; each setting must
    have a record for each of them on each split it was evaluated on, else an error names the setting, split and
    missing tasks.
    """
    base = dict(base) if base is not None else finetuned_base(finetuned, base_split)
    expected = tuple(sorted(tasks if tasks is not None else base))
    unknown = sorted(set(expected) - set(base))
    if unknown:
        raise SelectionError(f"tasks {unknown} have no fine-tuned accuracy")
    method, params, accuracies = _collect(evaluations, expected, _record_accuracy)

    table = SettingTable(method=method, tasks=expected)
    for key in sorted(params, key=repr):
        scores: dict[str, Scores] = {}
        for split, by_task in sorted(accuracies[key].items()):
            _complete(method, params[key], split, by_task, expected)
            scores[split] = normalize(by_task, base)
        table.params[key] = params[key]
        table.scores[key] = scores
    return table


def _joint_counts(ks: Sequence[int]) -> Callable[[Mapping[str, Any], str], tuple[int, tuple[int, ...]]]:
    def read(record: Mapping[str, Any], source: str) -> tuple[int, tuple[int, ...]]:
        total, hits = record.get("total"), record.get("hits")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise SelectionError(f"{source}: joint record {dict(record)} needs a positive integer 'total'")
        if not isinstance(hits, Mapping):
            raise SelectionError(f"{source}: joint record {dict(record)} has no 'hits' object")
        missing = [k for k in ks if str(k) not in hits]
        if missing:
            raise SelectionError(f"{source}: joint record {dict(record)} has no hits for k = {missing}")
        counts = tuple(hits[str(k)] for k in ks)
        if any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= total for c in counts):
            raise SelectionError(f"{source}: joint record {dict(record)} has hits outside 0..total")
        if any(later < earlier for earlier, later in itertools.pairwise(counts)):
            raise SelectionError(f"{source}: joint record {dict(record)} has fewer hits at a larger k")
        return total, counts

    return read


def build_joint_table(
    evaluations: Iterable[Mapping[str, Any]],
    *,
    ks: Sequence[int],
    select_k: int,
    tasks: Sequence[str] | None = None,
) -> SettingTable:
    """Score every (point, λ) setting of one method's joint evaluation by pooled Hits@``select_k``.

    ``tasks`` defaults to every task in the records; each setting needs every task on each split it was evaluated on.
    """
    ks = sorted(int(k) for k in ks)
    if select_k not in ks:
        raise SelectionError(f"select_k={select_k} is not one of the evaluated ks {ks}")
    expected = tuple(sorted(tasks)) if tasks is not None else None
    method, params, counts = _collect(evaluations, expected, _joint_counts(ks))
    if expected is None:
        expected = tuple(sorted({task for by_split in counts.values() for c in by_split.values() for task in c}))

    table = SettingTable(method=method, tasks=expected)
    for key in sorted(params, key=repr):
        scores: dict[str, Scores] = {}
        for split, by_task in sorted(counts[key].items()):
            _complete(method, params[key], split, by_task, expected)
            scores[split] = JointScores(
                select_k=select_k,
                total={task: by_task[task][0] for task in expected},
                hits={task: dict(zip(ks, by_task[task][1], strict=True)) for task in expected},
            )
        table.params[key] = params[key]
        table.scores[key] = scores
    return table


def replicate_table(table: SettingTable, replicates: Mapping[str, Sequence[ParamValue]]) -> SettingTable:
    """The settings of ``table`` with the replicate parameters removed, each scored over all its replicates.

    ``replicates`` maps each replicate parameter to its values (e.g. ``{"seed": [0, 1, 2]}``); every setting must have
    been evaluated for every combination of them, on the same splits.
    """
    names = sorted(replicates)
    combinations = [dict(zip(names, values, strict=True)) for values in itertools.product(*map(replicates.get, names))]
    wanted = {setting_key(combination): combination for combination in combinations}
    groups: dict[SettingKey, dict[SettingKey, SettingKey]] = {}
    reduced: dict[SettingKey, dict[str, ParamValue]] = {}
    for key, params in table.params.items():
        absent = [name for name in names if name not in params]
        if absent:
            raise SelectionError(f"{table.method}: setting {describe_setting(params)} has no replicate {absent}")
        replicate = setting_key({name: params[name] for name in names})
        if replicate not in wanted:
            raise SelectionError(
                f"{table.method}: setting {describe_setting(params)} is not one of the replicates "
                f"{[describe_setting(c) for c in combinations]}"
            )
        rest = {name: value for name, value in params.items() if name not in replicates}
        reduced.setdefault(setting_key(rest), rest)
        groups.setdefault(setting_key(rest), {})[replicate] = key

    result = SettingTable(method=table.method, tasks=table.tasks)
    for key in sorted(groups, key=repr):
        missing = [describe_setting(wanted[r]) for r in wanted if r not in groups[key]]
        if missing:
            raise SelectionError(
                f"{table.method}: setting {describe_setting(reduced[key])} was not evaluated for replicates {missing}"
            )
        runs = [table.scores[groups[key][replicate]] for replicate in wanted]
        splits = sorted(set.intersection(*(set(run) for run in runs)))
        result.params[key] = reduced[key]
        result.scores[key] = {
            split: ReplicatedScores(tuple(combinations), tuple(run[split] for run in runs)) for split in splits
        }
    return result


# -- the searches ------------------------------------------------------------------------------------------------------


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
        score = table.score(candidate, split)
        if best_params is None or score > best_score:
            best_params, best_score = table.stored_params(candidate), score
    if best_params is None:
        raise SelectionError(f"{table.method}: no setting of the grid was evaluated")
    return best_params


def setting_summary(
    table: SettingTable, params: Mapping[str, ParamValue], *, val_split: str = "val", test_split: str = "test"
) -> dict[str, Any]:
    """``{"params", "val": {...}, "test": {...}}`` for one setting (JSON-ready), each split as its scores' JSON."""
    return {
        "params": dict(sorted(table.stored_params(params).items())),
        "test": table.lookup(params, test_split).to_json(),
        "val": table.lookup(params, val_split).to_json(),
    }


def _check_replicates(
    replicates: Mapping[str, Sequence[ParamValue]] | None, order: Sequence[str], defaults: Mapping[str, ParamValue]
) -> None:
    for name in replicates or {}:
        if name in order or name in defaults:
            raise SelectionError(f"replicate parameter {name!r} must not also be searched or have a default")
        if not replicates[name]:
            raise SelectionError(f"replicate parameter {name!r} has no values")


def _select(
    table: SettingTable,
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    replicates: Mapping[str, Sequence[ParamValue]] | None,
    val_split: str,
    test_split: str,
    allow_missing: bool,
    carry_best_across_params: bool,
    strict: bool,
) -> dict[str, Any]:
    _check_replicates(replicates, order, defaults)
    if replicates:
        table = replicate_table(table, replicates)
    greedy = greedy_select(
        table, order, grids, defaults, split=val_split, carry_best_across_params=carry_best_across_params, strict=strict
    )
    grid = grid_select(table, order, grids, defaults, split=val_split, allow_missing=allow_missing)
    result = {
        "greedy": setting_summary(table, greedy.params, val_split=val_split, test_split=test_split),
        "greedy_path": greedy.path,
        "grid": setting_summary(table, grid, val_split=val_split, test_split=test_split),
        "method": table.method,
        "settings_evaluated": len(table),
        "tasks": list(table.tasks),
    }
    if replicates:
        result["replicates"] = {name: [_plain(value) for value in replicates[name]] for name in sorted(replicates)}
    return result


def select_method(
    evaluations: Iterable[Mapping[str, Any] | PathLike],
    finetuned: Finetuned | Iterable[PathLike],
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    normalize_by: str = "measured",
    published: Mapping[str, float] | None = None,
    replicates: Mapping[str, Sequence[ParamValue]] | None = None,
    base_split: str = "test",
    val_split: str = "val",
    test_split: str = "test",
    allow_missing: bool = False,
    carry_best_across_params: bool = False,
) -> dict[str, Any]:
    """Greedy and full-grid selection on ``val_split`` for one method, with test numbers of both choices.

    ``evaluations``: evaluation file paths or already loaded evaluation dicts; ``finetuned``: fine-tuned file paths
    or ``{task: {split: accuracy}}``; ``normalize_by``/``published`` choose the base (:func:`normalisation_base`);
    ``replicates`` (e.g. ``{"seed": [0, 1, 2]}``) merges the settings that differ only in those parameters.
    Returns ``{"method", "tasks", "normalized_by", "normalization_base", "settings_evaluated", "greedy": S,
    "grid": S, "greedy_path": [...]}`` (plus ``"replicates"`` when given) with S as from :func:`setting_summary`;
    ``normalization_base`` is in percent.
    """
    loaded = [item if isinstance(item, Mapping) else load_evaluations([item])[0] for item in evaluations]
    if not isinstance(finetuned, Mapping):
        finetuned = load_finetuned(finetuned)
    base = normalisation_base(finetuned, normalize_by, published, base_split=base_split)
    table = build_setting_table(loaded, finetuned, base=base)
    result = _select(
        table,
        order,
        grids,
        defaults,
        replicates=replicates,
        val_split=val_split,
        test_split=test_split,
        allow_missing=allow_missing,
        carry_best_across_params=carry_best_across_params,
        strict=False,
    )
    result["normalized_by"] = normalize_by
    result["normalization_base"] = {task: 100.0 * value for task, value in base.items()}
    return result


def select_joint(
    evaluations: Iterable[Mapping[str, Any] | PathLike],
    order: Sequence[str],
    grids: Mapping[str, Sequence[ParamValue]],
    defaults: Mapping[str, ParamValue],
    *,
    ks: Sequence[int],
    select_k: int,
    tasks: Sequence[str] | None = None,
    replicates: Mapping[str, Sequence[ParamValue]] | None = None,
    val_split: str = "val",
    test_split: str = "test",
    allow_missing: bool = False,
    carry_best_across_params: bool = False,
) -> dict[str, Any]:
    """Greedy (strict ``>``) and full-grid selection on pooled validation Hits@``select_k`` for one method.

    Returns ``{"method", "tasks", "ks", "select_k", "settings_evaluated", "greedy": S, "grid": S, "greedy_path"}``
    (plus ``"replicates"``); each split of S is ``{"per_task": {task: {k: Top-k %}}, "pooled": {k: Hits@k %},
    "total": {task: N}}`` with k as a string.
    """
    loaded = [item if isinstance(item, Mapping) else load_evaluations([item])[0] for item in evaluations]
    table = build_joint_table(loaded, ks=ks, select_k=select_k, tasks=tasks)
    result = _select(
        table,
        order,
        grids,
        defaults,
        replicates=replicates,
        val_split=val_split,
        test_split=test_split,
        allow_missing=allow_missing,
        carry_best_across_params=carry_best_across_params,
        strict=True,
    )
    result["ks"] = sorted(int(k) for k in ks)
    result["select_k"] = int(select_k)
    return result
