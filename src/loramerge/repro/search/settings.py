"""Setting tables: every evaluated setting of one method, scored on each split it was evaluated on.

A *setting* is one merged model at one scale: the structural parameters of the merge (the evaluation file's
``point``) plus ``{"lam": λ}``. Replicate tables merge the settings that differ only in a replicate parameter (a DARE
seed) into one, scored over all its replicates (:class:`~loramerge.repro.search.scores.ReplicatedScores`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loramerge.repro.search.records import Finetuned, ParamValue, SelectionError, record_accuracy
from loramerge.repro.search.scores import JointScores, ReplicatedScores, Scores, finetuned_base, normalize

SettingKey = tuple[tuple[str, ParamValue], ...]
SCALE_PARAM = "lam"


def plain_value(value: Any) -> Any:
    """``value`` as a plain Python value: numpy scalars from a caller's grid (np.arange) would not survive JSON."""
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


def canonical_value(value: ParamValue) -> ParamValue:
    """``value`` with floats rounded to 12 significant digits: grids from configs and points from JSON may spell the
    same float differently (0.3 vs 0.30000000000000004)."""
    value = plain_value(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def setting_key(params: Mapping[str, ParamValue]) -> SettingKey:
    """The hashable identity of a setting: its parameters sorted by name, floats rounded to 12 significant digits."""
    return tuple(sorted((name, canonical_value(value)) for name, value in params.items()))


def describe_setting(params: Mapping[str, ParamValue]) -> str:
    """``{lam=0.5, top_k=20}``: how errors name a setting."""
    return "{" + ", ".join(f"{name}={value!r}" for name, value in sorted(params.items())) + "}"


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

    Scores are normalized by ``base`` (accuracy in [0, 1] per task, see :func:`normalization_base`), by default the
    fine-tuned ``base_split`` accuracy. ``tasks`` defaults to every task with a fine-tuned file; each setting must
    have a record for each of them on each split it was evaluated on, else an error names the setting, split and
    missing tasks.
    """
    base = dict(base) if base is not None else finetuned_base(finetuned, base_split)
    expected = tuple(sorted(tasks if tasks is not None else base))
    unknown = sorted(set(expected) - set(base))
    if unknown:
        raise SelectionError(f"tasks {unknown} have no fine-tuned accuracy")
    method, params, accuracies = _collect(evaluations, expected, record_accuracy)

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
