"""The scores of one setting on one split: normalized per-task accuracy, joint Hits@k, and means over replicates.

Per-task scores (`docs/protocol.md` §5.1): ``norm_task = 100 · acc_task / base_task`` and the setting's score is
the unweighted mean of ``norm_task`` over tasks (a mean of ratios, not a ratio of means). ``base_task`` is the
fine-tuned model's *test* accuracy of that task, also when the split scored is validation: measured here by evaluating
each adapter alone (``normalize_by="measured"``), or the values the paper's source published (``"published"``).

Joint scores (`docs/protocol.md` §5.2): every task's samples are ranked against the union of all label spaces. Per
task, ``Top-k = hits_k / N_task``; the score is the pooled ``Hits@k = Σ_task hits_k / Σ_task N_task`` (so large
datasets weigh more), both in percent.

Replicates: settings that differ only in a replicate parameter (a DARE seed) are one setting. Its score on a split is
the mean over replicates of each replicate's score, each per-task (and pooled) number is the mean over replicates, and
the summary of a chosen setting also gives the sample standard deviation over replicates (ddof=1) and every
replicate's own numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from loramerge.repro.search.records import Finetuned, ParamValue, SelectionError

NORMALIZE_BY = ("measured", "published")
NORMALIZATION_NOTES = {
    "measured": "normalized by each adapter's fine-tuned test accuracy measured in this run",
    "published": "normalized by the published fine-tuned accuracy of each adapter",
}


def finetuned_base(finetuned: Finetuned, base_split: str = "test") -> dict[str, float]:
    """The per-task fine-tuned accuracy every split is normalized by (KnOTS: the test accuracy)."""
    base = {}
    for task, splits in finetuned.items():
        if base_split not in splits:
            raise SelectionError(f"fine-tuned task {task!r} has no {base_split!r} accuracy to normalize by")
        if splits[base_split] <= 0:
            raise SelectionError(f"fine-tuned task {task!r} has {base_split} accuracy {splits[base_split]}")
        base[task] = float(splits[base_split])
    return dict(sorted(base.items()))


def normalization_base(
    finetuned: Finetuned,
    normalize_by: str = "measured",
    published: Mapping[str, float] | None = None,
    *,
    base_split: str = "test",
) -> dict[str, float]:
    """Per task of ``finetuned``, the accuracy in [0, 1] that every split is normalized by.

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


@dataclass(frozen=True)
class SplitScores:
    """One setting on one split: raw accuracy and normalized accuracy per task, and their unweighted mean."""

    accuracy: dict[str, float]
    normalized: dict[str, float]
    mean: float

    SPREAD_KEYS: ClassVar[tuple[str, ...]] = ("mean", "per_task")

    @property
    def score(self) -> float:
        """What selection maximises: the mean normalized accuracy."""
        return self.mean

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": dict(self.accuracy), "mean": self.mean, "per_task": dict(self.normalized)}


def normalize(accuracy: Mapping[str, float], base: Mapping[str, float]) -> SplitScores:
    """``norm_task = 100 · acc_task / base_task`` and their unweighted mean over the tasks of ``accuracy``."""
    missing = sorted(set(accuracy) - set(base))
    if missing:
        raise SelectionError(f"no fine-tuned accuracy to normalize tasks {missing}")
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
