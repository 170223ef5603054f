"""Spectral primitives on the small dense matrices that Core Space merges (q × q, q = Σ r_t)."""

from __future__ import annotations

import torch

from loramerge.updates import LowRankUpdate


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
