"""RegMean (Jin et al., ICLR 2023) on the LoRA updates: per module, over the tasks that have it,

    ΔW* = λ·(Σ_t ΔW_t·G̃_t)(Σ_t G̃_t)⁻¹,   G̃_t = a·G_t + (1−a)·Diag(G_t),   G_t = gram_t / counted_t,

the least-squares merge of the tasks' linear maps on their own inputs. G_t is the per-row mean Gram (Σ xᵀx over the
module's input rows divided by how many rows were summed), as FusionBench keeps it; the RegMean paper sums, which
weighs a task by how many tokens it contributed and so differs when the tasks' counts differ. `a` (off_diagonal)
scales the off-diagonal entries and leaves the diagonal alone. The reference code has no λ; λ = 1 is its merge.

Σ_t G̃_t is symmetric positive semi-definite, so the system is solved in float64 through its Cholesky factor, never
an explicit inverse; a singular or numerically singular sum (a pivot below I·ε of its largest diagonal entry) stops
with an error naming the module and the statistics folder instead of returning NaN or huge values. ΔW_t·G̃_t is
formed from the factors, B_t·(A_t·G̃_t), added in place into the one O × I sum.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from loramerge.errors import StatisticsError
from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import RegmeanParams
from loramerge.stats import required_statistics
from loramerge.updates import DenseUpdate, Update


def regularised_gram(gram: torch.Tensor, counted: int, off_diagonal: float) -> torch.Tensor:
    """G̃ = a·G + (1−a)·Diag(G) for the per-row mean Gram G = gram / counted, in float64."""
    mean_gram = gram.double() / counted
    regularised = off_diagonal * mean_gram
    regularised.diagonal().copy_(mean_gram.diagonal())
    return regularised


def solve_right(total: torch.Tensor, products: torch.Tensor) -> torch.Tensor | None:
    """X with X·total = products for a symmetric positive semi-definite `total`; None when it is (numerically)
    singular."""
    factor, info = torch.linalg.cholesky_ex(total)
    smallest_pivot = float(factor.diagonal().min()) ** 2 if int(info) == 0 else 0.0
    tolerance = total.shape[0] * torch.finfo(torch.float64).eps * float(total.diagonal().max().clamp(min=0))
    if int(info) != 0 or smallest_pivot <= tolerance:
        return None
    return torch.cholesky_solve(products.T, factor).T  # total is symmetric: X·total = P ⇔ total·Xᵀ = Pᵀ


@register
class RegMean(MergeMethod):
    name = "regmean"
    params_type = RegmeanParams

    def merge(self, context: MergeContext, params: RegmeanParams) -> Iterator[tuple[str, Update]]:
        statistics = required_statistics(context.statistics, self.name)
        for name, stack in sorted(context.adapters.stacks.items()):
            out_features, in_features = stack.shape
            products = torch.zeros(out_features, in_features, dtype=torch.float64)  # Σ_t ΔW_t·G̃_t
            total = torch.zeros(in_features, in_features, dtype=torch.float64)  # Σ_t G̃_t
            for task, A, B in zip(stack.tasks, stack.A, stack.B, strict=True):
                gram = regularised_gram(statistics.gram(task, name), statistics.info[task].counted, params.off_diagonal)
                products.addmm_(B.double(), A.double() @ gram)
                total += gram
            merged = solve_right(total, products)
            if merged is None:
                raise StatisticsError(
                    statistics.folder,
                    f"{name}: the sum of the tasks' regularised Gram matrices is singular, so RegMean has no "
                    "unique merge (an input feature that is zero in every task, or fewer input rows than features "
                    "with off_diagonal = 1); lower off_diagonal or collect more inputs",
                )
            yield name, DenseUpdate((params.lam * merged).float())
