"""TSV-Merge (Gargiulo et al., CVPR 2025) on the Core Space matrices M_t, as the Core Space code runs it.

Per module: each task keeps its top min(⌊k/T⌋, rank M_t) singular triplets (k = min(q_B, q_A), the core's size; T the
tasks having the module), the stacked left and right singular vectors are whitened by their polar factors, and the
kept σ reassemble M* = P(U)·diag(σ)·P(V)ᵀ; ΔW = λ·U_B·M*·V_Aᵀ, a LoRA of rank Σ kept. A triplet of zero singular
value is never kept: its vectors are arbitrary, so the merge would depend on the SVD routine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import ScaleParams
from loramerge.spectra import core_update, numerical_rank, polar_factor
from loramerge.updates import Update


def task_singular_vectors(cores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, σ, V) of every task's kept triplets, stacked in task order (U: q_B × m, σ: m, V: q_A × m)."""
    per_task = min(cores[0].shape) // len(cores)
    lefts, sigmas, rights = [], [], []
    for core in cores:
        U, S, Vh = torch.linalg.svd(core, full_matrices=False)
        kept = min(per_task, numerical_rank(S, core.shape))
        lefts.append(U[:, :kept])
        sigmas.append(S[:kept])
        rights.append(Vh[:kept].T)
    return torch.cat(lefts, dim=1), torch.cat(sigmas), torch.cat(rights, dim=1)


def whitened_reconstruction(U: torch.Tensor, sigma: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M* = P(U)·diag(σ)·P(V)ᵀ as its two factors (P(U)·diag(σ), P(V)ᵀ)."""
    return polar_factor(U) * sigma, polar_factor(V).T


def tsv_core(cores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The whitened reconstruction of every task's kept triplets, as its two factors."""
    return whitened_reconstruction(*task_singular_vectors(cores))


@register
class CoreTsv(MergeMethod):
    name = "core_tsv"
    params_type = ScaleParams

    def merge(self, context: MergeContext, params: ScaleParams) -> Iterator[tuple[str, Update]]:
        for name, stack in sorted(context.adapters.stacks.items()):
            yield name, core_update(stack, tsv_core, params.lam)
