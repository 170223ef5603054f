"""Accuracy (and joint Hits@k) of a backbone plus a scaled weight update on tasks with fixed heads, for any suite.

The suite says how to encode a batch into the features a head scores and where an update's modules live in its
backbone; this loop applies each λ in place (`loramerge.apply.updated`) and restores the weights, so one loaded
model serves every merge and λ of a job.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from loramerge.apply import updated
from loramerge.repro.splits import DataError

if TYPE_CHECKING:
    from loramerge.repro.suites.base import Suite


@dataclass(frozen=True)
class EvalTask:
    name: str
    split: str
    inputs: Any  # what the suite's `encode` takes: uint8 N×3×S×S images, padded token ids
    labels: torch.Tensor  # int64 N
    head: torch.Tensor  # n_classes × feature dimension
    masked: tuple[int, ...] = ()  # classes this task never predicts (their logits are −inf)


def count_correct(features: torch.Tensor, head: torch.Tensor, labels: torch.Tensor, masked: Sequence[int] = ()) -> int:
    """Number of rows whose argmax(features @ head.T), with the `masked` classes' logits at −inf, is the label."""
    if features.shape[1] != head.shape[1]:
        raise DataError("head", f"has dimension {head.shape[1]} but the features have {features.shape[1]}")
    if any(not 0 <= index < head.shape[0] for index in masked):
        raise DataError("head", f"masked classes {list(masked)} are not among its {head.shape[0]} classes")
    logits = features.float() @ head.float().T
    logits[:, list(masked)] = float("-inf")
    return int((logits.argmax(dim=1) == labels).sum())


def _records(lam: float, tasks: Sequence[EvalTask], features: Sequence[torch.Tensor]) -> list[dict]:
    records = []
    for task, task_features in zip(tasks, features, strict=True):
        correct, total = count_correct(task_features, task.head, task.labels, task.masked), len(task.labels)
        records.append(
            {
                "lam": float(lam),
                "task": task.name,
                "split": task.split,
                "correct": correct,
                "total": total,
                "accuracy": correct / total if total else float("nan"),
            }
        )
    return records


def _features_per_scale(
    suite: type[Suite] | Suite,
    model: torch.nn.Module,
    tasks: Sequence[EvalTask],
    scales: Sequence[float],
    update: Mapping[str, torch.Tensor] | None,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    fp16: bool,
) -> Iterator[tuple[float, list[torch.Tensor]]]:
    """(λ, features of every task) for each scale; without an update the model is encoded once for all scales."""
    model.to(device)

    def encode_all() -> list[torch.Tensor]:
        return [suite.encode(model, task.inputs, batch_size, device, progress, fp16) for task in tasks]

    if update is None:
        features = encode_all()
        yield from ((lam, features) for lam in scales)
        return
    for lam in scales:
        with updated(model, update, lam, suite.module_prefixes):
            features = encode_all()
        yield lam, features


def evaluate(
    suite: type[Suite] | Suite,
    model: torch.nn.Module,
    tasks: Sequence[EvalTask],
    scales: Sequence[float],
    update: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[dict]:
    """One record per (scale, task): accuracy of W + scale · ΔW with the task's own head (fp16 autocast on CUDA, as
    KnOTS evaluates per task); weights are restored afterwards."""
    per_scale = _features_per_scale(suite, model, tasks, scales, update, batch_size, device, progress, fp16=True)
    return [record for lam, features in per_scale for record in _records(lam, tasks, features)]


def count_hits(features: torch.Tensor, head: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> dict[str, int]:
    """{str(k): number of rows whose label is among the k highest scores of features @ head.T} (KnOTS joint Hits@k;
    the label's rank is the number of classes scoring strictly higher)."""
    if features.shape[1] != head.shape[1]:
        raise DataError("joint head", f"has dimension {head.shape[1]} but the features have {features.shape[1]}")
    scores = features.float() @ head.float().T
    rank = (scores > scores.gather(1, labels.view(-1, 1))).sum(dim=1)
    return {str(k): int((rank < k).sum()) for k in ks}


def evaluate_joint(
    suite: type[Suite] | Suite,
    model: torch.nn.Module,
    tasks: Sequence[EvalTask],
    joint_labels: Sequence[torch.Tensor],
    scales: Sequence[float],
    ks: Sequence[int],
    update: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[dict]:
    """One record per (scale, task) with Hits@k counts against the one joint head every task shares (`task.head`),
    labels mapped into the joint label space; fp32 throughout, as KnOTS evaluates the joint setting."""
    records = []
    per_scale = _features_per_scale(suite, model, tasks, scales, update, batch_size, device, progress, fp16=False)
    for lam, features in per_scale:
        for task, labels, task_features in zip(tasks, joint_labels, features, strict=True):
            hits = count_hits(task_features, task.head, labels, ks)
            records.append(
                {"lam": float(lam), "task": task.name, "split": task.split, "total": len(labels), "hits": hits}
            )
    return records
