"""Iso-C (Marczak et al., ICML 2025) in Core Space: Σ_t M_t with its non-zero singular values replaced by their
mean, ΔW = λ·σ̄·U_B·U_ρ·V_ρᵀ·V_Aᵀ (ρ = rank Σ_t M_t), a LoRA of rank ρ.

The Core Space code's `isotropize` averages every singular value of the q × q sum, zeros included; with full-rank
tasks there are none, and where there are, their vectors are arbitrary, so they are left out here.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import ScaleParams
from loramerge.spectra import core_update, numerical_rank
from loramerge.updates import Update


def isotropic_factors(total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ̄·U_ρ, V_ρᵀ) of `total` = U·diag(σ)·Vᵀ, σ̄ the mean of its ρ non-zero singular values."""
    U, S, Vh = torch.linalg.svd(total, full_matrices=False)
    rank = numerical_rank(S, total.shape)
    return S[:rank].mean() * U[:, :rank], Vh[:rank]


@register
class CoreIso(MergeMethod):
    name = "core_iso"
    params_type = ScaleParams

    def merge(self, context: MergeContext, params: ScaleParams) -> Iterator[tuple[str, Update]]:
        for name, stack in sorted(context.adapters.stacks.items()):
            yield name, core_update(stack, lambda cores: isotropic_factors(sum(cores)), params.lam)
