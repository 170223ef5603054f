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


def deltas64(adapters: AdapterSet) -> Coefficients:
    """ΔW_t in float64, so that a rank-r update has exactly r singular values above rounding noise."""
    result: Coefficients = {}
    for task, adapter in enumerate(adapters.adapters):
        for module, lora in adapter.modules.items():
            result.setdefault(module, {})[task] = (lora.scale * lora.B.double()) @ lora.A.double()
    return result


def dense_cores(adapters: AdapterSet) -> dict[str, tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]]:
    """Like core_bases, with every M_t = U_Bᵀ·ΔW_t·V_A kept in float64."""
    result = {}
    for module, per_task in deltas64(adapters).items():
        stack = adapters.stacks[module]
        U_B = torch.linalg.svd(torch.cat([b.double() for b in stack.B], dim=1), full_matrices=False).U
        V_A = torch.linalg.svd(torch.cat([a.double() for a in stack.A], dim=0), full_matrices=False).Vh.T
        result[module] = (U_B, V_A, {t: U_B.T @ d @ V_A for t, d in per_task.items()})
    return result


def core_space_code_tsv(adapters: AdapterSet, lam: float) -> dict[str, torch.Tensor]:
    """The Core Space code's `get_tsv_delta_w` on M_t, as written there: ⌊k/T⌋ triplets per task placed in
    zero-initialised k-column stacks, whitened by the SVDs of the stacks, ΔW = λ·U_B·M*·V_Aᵀ."""
    result = {}
    for module, (U_B, V_A, cores) in dense_cores(adapters).items():
        matrices = [cores[t] for t in sorted(cores)]
        for i, core in enumerate(matrices):
            u, s, v = torch.linalg.svd(core, full_matrices=False)
            if i == 0:
                sum_u, sum_s, sum_v = torch.zeros_like(u), torch.zeros_like(s), torch.zeros_like(v)
            kept = int(s.shape[0] * (1 / len(matrices)))
            sum_u[:, i * kept : (i + 1) * kept] = u[:, :kept]
            sum_s[i * kept : (i + 1) * kept] = s[:kept]
            sum_v[i * kept : (i + 1) * kept, :] = v[:kept, :]
        u_u, _, v_u = torch.linalg.svd(sum_u, full_matrices=False)
        u_v, _, v_v = torch.linalg.svd(sum_v, full_matrices=False)
        merged = u_u @ v_u @ torch.diag(sum_s) @ u_v @ v_v
        result[module] = lam * U_B @ merged @ V_A.T
    return result


def tsv(matrices: list[torch.Tensor], lam: float) -> torch.Tensor:
    """TSV on dense matrices: per task the top min(⌊k/T⌋, rank) triplets, stacked, U and V whitened as U·Vᵀ of their
    SVDs, reassembled with the kept σ."""
    per_task = min(matrices[0].shape) // len(matrices)
    us, ss, vs = [], [], []
    for matrix in matrices:
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
        kept = min(per_task, int(torch.linalg.matrix_rank(matrix.double())))
        us.append(u[:, :kept])
        ss.append(s[:kept])
        vs.append(vh[:kept].T)
    U, S, V = torch.cat(us, dim=1), torch.cat(ss), torch.cat(vs, dim=1)
    uu, _, uvh = torch.linalg.svd(U, full_matrices=False)
    vu, _, vvh = torch.linalg.svd(V, full_matrices=False)
    return lam * (uu @ uvh) @ torch.diag(S) @ (vu @ vvh).T


def core_tsv(adapters: AdapterSet, lam: float) -> dict[str, torch.Tensor]:
    return {
        module: U_B @ tsv([cores[t] for t in sorted(cores)], lam) @ V_A.T
        for module, (U_B, V_A, cores) in dense_cores(adapters).items()
    }


def iso_c(total: torch.Tensor, lam: float) -> torch.Tensor:
    """Iso-C: the matrix with its non-zero singular values replaced by their mean."""
    u, s, vh = torch.linalg.svd(total.double(), full_matrices=False)
    rank = int(torch.linalg.matrix_rank(total.double()))
    return lam * s[:rank].mean() * u[:, :rank] @ vh[:rank]


def _direction(x: torch.Tensor) -> torch.Tensor:
    norm = x.norm()
    return x / norm if norm > 0 else torch.zeros_like(x)


def _nearest(features: list[torch.Tensor], centroids: list[torch.Tensor]) -> list[int]:
    assignment = []
    for feature in features:
        distances = [float(((feature - centroid) ** 2).sum()) for centroid in centroids]
        assignment.append(distances.index(min(distances)))
    return assignment


def _lloyd(features: list[torch.Tensor], first: list[int], iterations: int) -> list[int]:
    centroids = [features[i].clone() for i in first]
    assignment = _nearest(features, centroids)
    for _ in range(iterations):
        for k in range(len(centroids)):
            members = [features[i] for i, c in enumerate(assignment) if c == k]
            if members:
                centroids[k] = torch.stack(members).mean(dim=0)
        assignment = _nearest(features, centroids)
    return assignment


def lora_lego(adapters: AdapterSet, clusters: int | None, iterations: int, norm: str, seed: int, lam: float):
    """LoRA-LEGO by brute force: loops over the rank-1 units, per-pair distances, `iterations` full Lloyd steps from
    the same initial units as the library (its per-module generator draws them)."""
    from loramerge.methods.lora_lego import cluster_seed

    p = float("inf") if norm == "linf" else 2.0
    result = {}
    for module, stack in adapters.stacks.items():
        units = []  # (a, b) in task then rank order
        for task in stack.tasks:
            lora = adapters.adapters[task].modules[module]
            units += [(lora.A[j].double(), lora.scale * lora.B[:, j].double()) for j in range(lora.A.shape[0])]
        rank = max(stack.ranks)
        K = clusters if clusters is not None else rank
        features = [torch.cat([_direction(a), _direction(b)]) for a, b in units]
        if len(units) <= K:
            assignment = list(range(len(units)))
        else:
            generator = torch.Generator().manual_seed(cluster_seed(seed, module))
            assignment = _lloyd(features, torch.randperm(len(units), generator=generator)[:K].tolist(), iterations)
        total = torch.zeros(stack.shape, dtype=torch.float64)
        for k in sorted(set(assignment)):
            members = [torch.cat(units[i]) for i, c in enumerate(assignment) if c == k]
            centroid = torch.stack(members).mean(dim=0)
            target = sum(float(torch.linalg.vector_norm(m, ord=p)) for m in members) / len(members)
            length = float(torch.linalg.vector_norm(centroid, ord=p))
            if length > 0:
                centroid = centroid * (target / length)
            total += torch.outer(centroid[stack.shape[1] :], centroid[: stack.shape[1]])
        result[module] = lam * (rank / K) ** 0.5 * total
    return result
