"""What the two demos' training loops share: the checks of their labels and step counts, seeded shuffled batches, and
the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from loramerge.repro.splits import DataError

WARMUP_FRACTION = 0.05


def check_training_labels(labels: torch.Tensor, n_classes: int, steps: int, batch_size: int) -> None:
    if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
        raise DataError("training data", f"labels must lie in [0, {n_classes})")
    if steps < 1 or batch_size < 1:
        raise DataError("training data", f"steps and batch_size must be positive, got {steps} and {batch_size}")


def shuffled_batches(count: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of consecutive shuffled epochs, seeded; the last partial batch of an epoch is dropped."""
    batch_size = min(batch_size, count)
    per_epoch = count // batch_size
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        order = torch.randperm(count, generator=generator)
        batches.extend(order[k * batch_size : (k + 1) * batch_size] for k in range(per_epoch))
    return batches[:steps]


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    # Linear warm-up then cosine decay to zero: short runs converge without tuning a decay point.
    warmup = max(1, round(WARMUP_FRACTION * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
