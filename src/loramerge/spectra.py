"""Spectral primitives on the small dense matrices that Core Space merges (q × q, q = Σ r_t)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from loramerge.adapters import ModuleStack
from loramerge.bases.decompose import core_basis
from loramerge.updates import LowRankUpdate

# The Core Space matrices M_t of a module -> the two factors (q_B × m, m × q_A) of the merged core M*.
CoreMerge = Callable[[Sequence[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def numerical_rank(singular_values: torch.Tensor, shape: tuple[int, ...]) -> int:
    """The number of singular values above max(shape)·eps·σ_max (numpy's and torch's `matrix_rank` default): the
    rest are rounding noise of an exactly rank-deficient matrix, and their singular vectors are arbitrary."""
    if singular_values.numel() == 0:
        return 0
    tolerance = singular_values.max() * max(shape) * torch.finfo(singular_values.dtype).eps
    return int((singular_values > tolerance).sum())


def polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """The orthonormal Q of the polar decomposition matrix = Q·H, i.e. U·Vᵀ of its thin SVD: the closest matrix with
    orthonormal columns (TSV's whitening of the stacked singular vectors)."""
    U, _, Vh = torch.linalg.svd(matrix, full_matrices=False)
    return U @ Vh


def zero_update(shape: tuple[int, int]) -> LowRankUpdate:
    """ΔW = 0 as a rank-1 LoRA (a rank-0 adapter is not a valid peft module)."""
    out_features, in_features = shape
    return LowRankUpdate(B=torch.zeros(out_features, 1), A=torch.zeros(1, in_features))


def core_update(stack: ModuleStack, merge_cores: CoreMerge, lam: float) -> LowRankUpdate:
    """ΔW = λ·U_B·M*·V_Aᵀ as a LoRA of rank m, M* merged from the module's core matrices by `merge_cores` (a zero
    update where M* has rank 0)."""
    basis = core_basis(stack)
    cores = [left @ right for left, right in zip(basis.left, basis.right, strict=True)]
    left, right = merge_cores(cores)
    if right.shape[0] == 0:
        return zero_update(stack.shape)
    return LowRankUpdate(B=(lam * basis.U_B @ left).float(), A=(right @ basis.V_A.T).float())
