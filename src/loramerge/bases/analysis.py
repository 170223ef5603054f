"""The paper's representation analyses (§3): SVD/CUR subspace overlap (eq. 12–13) and projected energy (eq. 14–15).

Both use rank k_a: Q1 = the top-k_a left singular vectors of M, Q2 = an orthonormal basis of the k_a largest-norm
columns of M (QR). Everything is computed from the factors in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from loramerge.adapters import AdapterSet, ModuleStack
from loramerge.bases.decompose import column_norms, columns_of_m, svd_basis, top_indices


@dataclass(frozen=True)
class ModuleOverlap:
    module: str
    rank: int
    overlap: float


@dataclass(frozen=True)
class TaskEnergy:
    task: str
    original: float
    svd: float
    cur: float

    @property
    def svd_ratio(self) -> float:
        return self.svd / self.original if self.original else 0.0

    @property
    def cur_ratio(self) -> float:
        return self.cur / self.original if self.original else 0.0


def projection_bases(stack: ModuleStack, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q1, Q2): top-`rank` SVD basis of M and orthonormalized `rank` largest-norm columns of M."""
    U = svd_basis(stack).U[:, :rank]
    columns = columns_of_m(stack, top_indices(column_norms(stack), rank))
    return U, torch.linalg.qr(columns).Q


def subspace_overlap(Q1: torch.Tensor, Q2: torch.Tensor) -> float:
    """Mean squared singular value of Q1ᵀQ2 (the mean squared cosine of the principal angles)."""
    rank = min(Q1.shape[1], Q2.shape[1])
    if rank == 0:
        return 0.0
    return float(torch.linalg.svdvals(Q1.T @ Q2)[:rank].square().sum() / rank)


def overlaps(adapters: AdapterSet, rank: int) -> list[ModuleOverlap]:
    result = []
    for name in adapters.modules:
        Q1, Q2 = projection_bases(adapters.stacks[name], rank)
        result.append(ModuleOverlap(name, min(Q1.shape[1], Q2.shape[1]), subspace_overlap(Q1, Q2)))
    return result


def energies(adapters: AdapterSet, rank: int) -> list[TaskEnergy]:
    """Per task, Σ over modules of ‖ΔW_t‖², ‖Q1Q1ᵀΔW_t‖² and ‖Q2Q2ᵀΔW_t‖² (‖QᵀsB·A‖² via small Grams)."""
    totals = torch.zeros(len(adapters), 3, dtype=torch.float64)
    for name in adapters.modules:
        stack = adapters.stacks[name]
        Q1, Q2 = projection_bases(stack, rank)
        A, B = stack.float64()
        for task, a, b in zip(stack.tasks, A, B, strict=True):
            gram = a @ a.T
            for column, left in enumerate((b, Q1.T @ b, Q2.T @ b)):
                totals[task, column] += ((left.T @ left) * gram).sum()
    return [TaskEnergy(name, *map(float, row)) for name, row in zip(adapters.task_names, totals, strict=True)]
