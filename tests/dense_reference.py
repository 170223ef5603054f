"""Plain dense re-implementations of each method's definition (KnOTS / Core Space reference semantics).

Everything here forms ΔW_t and M = [ΔW_1 | … | ΔW_n] explicitly and uses torch.linalg.svd / pinv / kthvalue on
them, exactly as the reference code does; the library must agree with these without ever forming M.
"""

from __future__ import annotations

import torch

from loramerge.adapters import AdapterSet
from loramerge.bases.decompose import PINV_RTOL

Coefficients = dict[str, dict[int, torch.Tensor]]  # module -> task -> dense coefficient


def deltas(adapters: AdapterSet) -> Coefficients:
    """ΔW_t = s_t·B_t·A_t straight from each adapter's modules."""
    result: Coefficients = {}
    for task, adapter in enumerate(adapters.adapters):
        for module, lora in adapter.modules.items():
            result.setdefault(module, {})[task] = lora.scale * (lora.B @ lora.A)
    return result


def concatenated(coefficients: dict[int, torch.Tensor]) -> torch.Tensor:
    return torch.cat([coefficients[t].double() for t in sorted(coefficients)], dim=1)


def ties(coefficients: Coefficients, top_k: float, lam: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """KnOTS `ties_merging`: kthvalue trim, sum-of-values election with the majority sign, disjoint mean."""
    K = top_k / 100
    names = sorted(coefficients)
    groups = [names] if scope == "global" else [[name] for name in names]
    result = {}
    for group in groups:
        thresholds = {}
        for task in sorted({t for m in group for t in coefficients[m]}):
            flat = torch.cat([coefficients[m][task].flatten() for m in group if task in coefficients[m]])
            D = flat.numel()
            if K < 1:
                thresholds[task] = flat.abs().kthvalue(D - int(D * K)).values
        trimmed, elected = {}, {}
        for m in group:
            rows = []
            for task in sorted({t for g in group for t in coefficients[g]}):
                x = coefficients[m].get(task)
                if x is None:
                    x = torch.zeros_like(next(iter(coefficients[m].values())))
                elif task in thresholds:
                    x = x * (x.abs() >= thresholds[task])
                rows.append(x)
            trimmed[m] = torch.stack(rows)
            elected[m] = trimmed[m].sum(dim=0).sign()
        majority = torch.stack([elected[m].sum() for m in group]).sum().sign()
        for m in group:
            gamma = elected[m].clone()
            gamma[gamma == 0] = majority
            keep = torch.where(gamma > 0, trimmed[m] > 0, trimmed[m] < 0)
            result[m] = lam * (trimmed[m] * keep).sum(dim=0) / keep.sum(dim=0).clamp(min=1)
    return result


def knots_bases(adapters: AdapterSet) -> tuple[dict[str, torch.Tensor], Coefficients]:
    """Dense SVD of M (float64), σ > 1e-5 kept, Z_t = diag(S)·V_tᵀ (cast to float32 as KnOTS does)."""
    U_all, Z = {}, {}
    for module, per_task in deltas(adapters).items():
        U, S, Vh = torch.linalg.svd(concatenated(per_task), full_matrices=False)
        k = int((S > 1e-5).sum())
        U_all[module] = U[:, :k]
        width = next(iter(per_task.values())).shape[1]
        Z[module] = {
            t: (torch.diag(S[:k]) @ Vh[:k, i * width : (i + 1) * width]).float() for i, t in enumerate(sorted(per_task))
        }
    return U_all, Z


def cur_bases(adapters: AdapterSet, rank: int | None = None):
    """Dense CUR of M (float64): the largest-norm columns and rows, U = C⁺·M·R⁺; per module (M, C, U, R, R_t)."""
    result = {}
    for module, stack in adapters.stacks.items():
        M = torch.cat([(stack.B[i].double() @ stack.A[i].double()) for i in range(len(stack.tasks))], dim=1)
        k = rank if rank is not None else int((torch.linalg.svdvals(M) > 1e-5).sum())
        columns = torch.sort(M.norm(dim=0), descending=True, stable=True).indices[:k]
        rows = torch.sort(M.norm(dim=1), descending=True, stable=True).indices[:k]
        C, R = M[:, columns], M[rows, :]
        U = torch.linalg.pinv(C, rtol=PINV_RTOL) @ M @ torch.linalg.pinv(R, rtol=PINV_RTOL)
        width = M.shape[1] // len(stack.tasks)
        blocks = {t: R[:, i * width : (i + 1) * width] for i, t in enumerate(stack.tasks)}
        result[module] = (M, C, U, R, blocks)
    return result


def core_bases(adapters: AdapterSet):
    """Core Space: U_B from [s_tB_t], V_A from [A_t], M_t = U_Bᵀ·ΔW_t·V_A."""
    result = {}
    for module, per_task in deltas(adapters).items():
        stack = adapters.stacks[module]
        U_B = torch.linalg.svd(torch.cat([b.double() for b in stack.B], dim=1), full_matrices=False).U
        V_A = torch.linalg.svd(torch.cat([a.double() for a in stack.A], dim=0), full_matrices=False).Vh.T
        result[module] = (U_B, V_A, {t: (U_B.T @ d.double() @ V_A).float() for t, d in per_task.items()})
    return result
