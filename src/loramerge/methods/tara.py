"""TARA-Merging (CVPR 2026): learned per-direction coefficients on the tasks' LoRA directions.

Every parametrisation keeps the merged update in one low-rank form, ΔW(c) = L(c)·A_cat with A_cat = [A_1; …; A_T]
(Σ r_t × I), so the merge is a LoRA of rank Σ r_t whatever the coefficients:

| variant  | coefficients per module | L(c) (O × Σ r_t)                              |
|----------|-------------------------|-----------------------------------------------|
| `a`      | Σ r_t (task, rank)      | [c_1,1·s_1b_1,1 … c_T,r·s_Tb_T,r]             |
| `b`      | T × k (task, direction) | U·[diag(c_1)·P_1 | … | diag(c_T)·P_T]         |
| `weight` | T (AdaMerging)          | [c_1·s_1B_1 | … | c_T·s_TB_T]                 |

Variant `b` uses the KnOTS basis (U, k = its rank, P_t = Uᵀ·s_t·B_t), so U·diag(c_t)·P_t·A_t = U·diag(c_t)·Z_t.
Every coefficient starts at `init`, where ΔW = init·Σ_t ΔW_t (Task Arithmetic, sum, λ = init). The coefficients
the adaptation stage learned are read from a safetensors file (one float32 tensor per module path); without one the
merge is the initial point.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from loramerge.adapters import ModuleStack
from loramerge.bases.decompose import SvdBasis
from loramerge.errors import SubjectError
from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import TaraParams
from loramerge.updates import LowRankUpdate, Update


def coefficient_shape(stack: ModuleStack, variant: str, basis: SvdBasis | None) -> tuple[int, ...]:
    if variant == "a":
        return (sum(stack.ranks),)
    if variant == "weight":
        return (len(stack.tasks),)
    return (len(stack.tasks), basis.rank)


def initial_coefficients(stack: ModuleStack, variant: str, basis: SvdBasis | None, init: float) -> torch.Tensor:
    return torch.full(coefficient_shape(stack, variant, basis), float(init))


def left_factor(stack: ModuleStack, variant: str, basis: SvdBasis | None, coefficients: torch.Tensor) -> torch.Tensor:
    """L(c), O × Σ r_t, differentiable in `coefficients` (float64 when they are)."""
    dtype = coefficients.dtype
    if variant == "b":
        scaled = [coefficients[t, :, None] * basis.P[t].to(dtype) for t in range(len(stack.tasks))]
        return basis.U.to(dtype) @ torch.cat(scaled, dim=1)
    per_column = coefficients
    if variant == "weight":
        per_column = torch.repeat_interleave(coefficients, torch.tensor(stack.ranks))
    return torch.cat([b.to(dtype) for b in stack.B], dim=1) * per_column


def stacked_inputs(stack: ModuleStack) -> torch.Tensor:
    """A_cat = [A_1; …; A_T], Σ r_t × I."""
    return torch.cat(stack.A, dim=0)


def tara_update(stack: ModuleStack, variant: str, basis: SvdBasis | None, coefficients: torch.Tensor) -> LowRankUpdate:
    left = left_factor(stack, variant, basis, coefficients.double())
    return LowRankUpdate(B=left.float(), A=stacked_inputs(stack).float())


def read_coefficients(path: str | Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Every module's learned coefficients from `path`, each checked against the shape the adapters imply."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, not a dict)
    except FileNotFoundError:
        raise SubjectError(path, "coefficients file missing") from None
    except Exception as error:  # safetensors raises its own error types on corrupt or truncated files
        raise SubjectError(path, f"unreadable safetensors file: {error}") from error
    missing = sorted(set(shapes) - set(stored))
    extra = sorted(set(stored) - set(shapes))
    if missing or extra:
        raise SubjectError(path, f"modules missing {missing[:3]}, not in the adapters {extra[:3]}")
    for module, shape in shapes.items():
        tensor = stored[module]
        if tuple(tensor.shape) != shape or tensor.dtype != torch.float32:
            raise SubjectError(path, f"{module}: {tensor.dtype} {tuple(tensor.shape)}, expected float32 {shape}")
        if not torch.isfinite(tensor).all():
            raise SubjectError(path, f"{module}: NaN or Inf coefficients")
    return stored


@register
class Tara(MergeMethod):
    name = "tara"
    params_type = TaraParams

    def merge(self, context: MergeContext, params: TaraParams) -> Iterator[tuple[str, Update]]:
        stacks = dict(sorted(context.adapters.stacks.items()))
        bases = {name: context.bases().svd[name] if params.variant == "b" else None for name in stacks}
        learned = None
        if params.coefficients is not None:
            shapes = {name: coefficient_shape(stack, params.variant, bases[name]) for name, stack in stacks.items()}
            learned = read_coefficients(params.coefficients, shapes)
        for name, stack in stacks.items():
            basis = bases[name]
            if learned is None:
                coefficients = initial_coefficients(stack, params.variant, basis, params.init)
            else:
                coefficients = learned[name]
            update = tara_update(stack, params.variant, basis, coefficients)
            yield name, LowRankUpdate(B=params.lam * update.B, A=update.A)
