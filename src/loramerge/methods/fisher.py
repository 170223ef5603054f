"""Fisher merging (Matena & Raffel, 2022) on the LoRA updates: per module, over the tasks that have it, elementwise,

    ΔW* = λ·Σ_t c_t·F̃_t⊙ΔW_t / Σ_t c_t·F̃_t,   F̃_t = F_t + min_fisher,

F_t the task's diagonal Fisher of the module's dense weight (statistics folder). Without `normalize` every c_t is 1.
With it we follow FusionBench's `merging_with_fisher_weights`: c_t ∝ 1/(‖F_t‖₂ + min_fisher), the norm taken over
every module of task t that is merged (its Fisher before min_fisher is added), the c_t normalised to sum to 1 (a
common scale cancels in the ratio; the normalisation only records the weights as fractions). FusionBench's norm also
covers parameters outside the LoRA-targeted layers, which are not merged here. Its equal per-task coefficients
1/n cancel and are left out. The reference code has no λ; λ = 1 is its merge.

The norms need one pass over every Fisher before the first module is merged; beyond that, one module is in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from loramerge.errors import StatisticsError
from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import FisherParams
from loramerge.stats import Statistics, required_statistics
from loramerge.updates import DenseUpdate, Update


def task_weights(statistics: Statistics, min_fisher: float) -> list[float]:
    """c_t ∝ 1/(‖F_t‖₂ + min_fisher), ‖F_t‖₂ over every module task t has, summing to 1."""
    squared_norms = [0.0] * len(statistics.adapters)
    for name, stack in sorted(statistics.adapters.stacks.items()):
        for task in stack.tasks:
            squared_norms[task] += float(torch.linalg.vector_norm(statistics.fisher(task, name).double())) ** 2
    for task, squared_norm in enumerate(squared_norms):
        if squared_norm + min_fisher == 0:
            raise StatisticsError(
                statistics.task_folder(task),
                "the Fisher is zero in every module, so normalising by its norm divides by zero; set min_fisher > 0",
            )
    inverse = [1.0 / (squared_norm**0.5 + min_fisher) for squared_norm in squared_norms]
    return [weight / sum(inverse) for weight in inverse]


@register
class FisherMerging(MergeMethod):
    name = "fisher"
    params_type = FisherParams

    def merge(self, context: MergeContext, params: FisherParams) -> Iterator[tuple[str, Update]]:
        statistics = required_statistics(context.statistics, self.name)
        weights = task_weights(statistics, params.min_fisher) if params.normalize else [1.0] * len(statistics.adapters)
        for name, stack in sorted(context.adapters.stacks.items()):
            numerator = torch.zeros(stack.shape, dtype=torch.float64)  # Σ_t c_t·F̃_t⊙ΔW_t
            denominator = torch.zeros(stack.shape, dtype=torch.float64)  # Σ_t c_t·F̃_t
            for task, A, B in zip(stack.tasks, stack.A, stack.B, strict=True):
                weighted_fisher = weights[task] * (statistics.fisher(task, name).double() + params.min_fisher)
                numerator += weighted_fisher * (B.double() @ A.double())
                denominator += weighted_fisher
            if not bool((denominator > 0).all()):
                raise StatisticsError(
                    statistics.folder,
                    f"{name}: every task's Fisher is zero at some entries, so their weighted mean is 0/0; "
                    "set min_fisher > 0",
                )
            yield name, DenseUpdate((params.lam * numerator / denominator).float())
