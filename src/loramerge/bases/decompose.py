"""Per-module SVD (KnOTS), CUR and Core-Space bases of M = [ΔW_1 | … | ΔW_n], computed from the LoRA factors.

M = [B_1 … B_n] · blkdiag(A_1, …, A_n) has rank ≤ Σ r_t, so every basis comes from QR factorisations of the factors
and decompositions of (Σ r_t)-sized cores, in float64; M (O × nI) is never formed. Per-task coefficients are kept
factored as (small matrix) @ A_t, which is exact and tiny to store; they are expanded to dense k × I only when merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from loramerge.adapters import AdapterSet, ModuleStack

KNOTS_SVD_TOL = 1e-5  # KnOTS keeps singular values above this absolute threshold (float64).
PINV_RTOL = 1e-10  # relative cut-off of the pseudo-inverses in U_c = C⁺·M·R⁺.


@dataclass(frozen=True)
class SvdBasis:
    """M = U·[Z_1 | … | Z_n] with U (O × k) orthonormal and Z_t = S·V_tᵀ = P_t @ A_t (k × I)."""

    U: torch.Tensor
    singular_values: torch.Tensor
    P: tuple[torch.Tensor, ...]  # P_t = Uᵀ·s_t·B_t, k × r_t

    @property
    def rank(self) -> int:
        return self.U.shape[1]


@dataclass(frozen=True)
class CurBasis:
    """C = M[:, columns] (O × k_c), R = M[rows, :] (k_c × nI), U = C⁺·M·R⁺ (k_c × k_c).

    R_t = G_t @ A_t is the t-th column block of R, and the task coefficients in UR space are Y_t = U·R_t.
    Column indices run over the nI columns of M, task-major in the order of the module's tasks.
    """

    columns: torch.Tensor
    rows: torch.Tensor
    C: torch.Tensor
    U: torch.Tensor
    G: tuple[torch.Tensor, ...]  # G_t = s_t·B_t[rows], k_c × r_t

    @property
    def rank(self) -> int:
        return self.C.shape[1]


@dataclass(frozen=True)
class CoreBasis:
    """Core Space: ΔW_t = U_B·M_t·V_Aᵀ with M_t = (U_Bᵀ·s_t·B_t)(A_t·V_A), lossless for every task."""

    U_B: torch.Tensor  # O × q_B
    V_A: torch.Tensor  # I × q_A
    left: tuple[torch.Tensor, ...]  # U_Bᵀ·s_t·B_t, q_B × r_t
    right: tuple[torch.Tensor, ...]  # A_t·V_A, r_t × q_A


@dataclass
class Decomposition:
    """SVD and CUR bases for every module of an adapter set, and the settings that produced them."""

    svd: dict[str, SvdBasis]
    cur: dict[str, CurBasis]
    svd_tol: float = KNOTS_SVD_TOL
    cur_rank: int | None = None
    adapters: list[dict] = field(default_factory=list)


def _input_triangles(A: list[torch.Tensor]) -> list[torch.Tensor]:
    """R_t of the thin QR A_tᵀ = Q_t·R_t: A_t = R_tᵀ·Q_tᵀ with Q_t orthonormal."""
    return [torch.linalg.qr(a.T).R for a in A]


def svd_basis(stack: ModuleStack, tol: float = KNOTS_SVD_TOL) -> SvdBasis:
    """Thin SVD of M from QR([s_tB_t]) and QR(A_tᵀ); keeps σ > tol as KnOTS does."""
    A, B = stack.float64()
    q_b, r_b = torch.linalg.qr(torch.cat(B, dim=1))
    core = r_b @ torch.block_diag(*[r.T for r in _input_triangles(A)])
    u_core, singular_values, _ = torch.linalg.svd(core, full_matrices=False)
    kept = singular_values > tol
    U = q_b @ u_core[:, kept]
    return SvdBasis(U=U, singular_values=singular_values[kept], P=tuple(U.T @ b for b in B))


def column_norms(stack: ModuleStack) -> torch.Tensor:
    """ℓ2 norms of the nI columns of M (task-major), from ‖s·B·a‖² = aᵀ(sB)ᵀ(sB)a."""
    A, B = stack.float64()
    return torch.cat([((b.T @ b @ a) * a).sum(dim=0) for a, b in zip(A, B, strict=True)]).clamp_min(0).sqrt()


def row_norms(stack: ModuleStack) -> torch.Tensor:
    """ℓ2 norms of the O rows of M, from Σ_t s·b_o·(A_tA_tᵀ)·s·b_oᵀ."""
    A, B = stack.float64()
    return sum(((b @ (a @ a.T)) * b).sum(dim=1) for a, b in zip(A, B, strict=True)).clamp_min(0).sqrt()


def columns_of_m(stack: ModuleStack, columns: torch.Tensor) -> torch.Tensor:
    """M[:, columns] (O × len(columns)) in float64 from the factors."""
    A, B = stack.float64()
    in_features = stack.shape[1]
    blocks = torch.div(columns, in_features, rounding_mode="floor")
    out = torch.empty(stack.shape[0], len(columns), dtype=torch.float64)
    for position, (a, b) in enumerate(zip(A, B, strict=True)):
        where = (blocks == position).nonzero().flatten()
        if len(where):
            out[:, where] = b @ a[:, columns[where] - position * in_features]
    return out


def top_indices(values: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` largest values, ties broken by the lower index (deterministic)."""
    return torch.sort(values, descending=True, stable=True).indices[:count]


def cur_basis(stack: ModuleStack, rank: int) -> CurBasis:
    """CUR of M with the `rank` largest-norm columns and rows and the optimal U = C⁺·M·R⁺."""
    A, B = stack.float64()
    out_features, in_features = stack.shape
    rank = min(rank, out_features, in_features * len(A))
    columns = top_indices(column_norms(stack), rank)
    rows = top_indices(row_norms(stack), rank)
    C = columns_of_m(stack, columns)
    G = tuple(b[rows] for b in B)
    # With A_t = R_tᵀQ_tᵀ: R = K·blkdiag(Q_t)ᵀ, K = [G_t·R_tᵀ]; R⁺ = blkdiag(Q_t)·K⁺ and M·R⁺ = [s_tB_t·R_tᵀ]·K⁺.
    triangles = _input_triangles(A)
    K = torch.cat([g @ t.T for g, t in zip(G, triangles, strict=True)], dim=1)
    m_times_r_pinv = torch.cat([b @ t.T for b, t in zip(B, triangles, strict=True)], dim=1) @ torch.linalg.pinv(
        K, rtol=PINV_RTOL
    )
    U = torch.linalg.pinv(C, rtol=PINV_RTOL) @ m_times_r_pinv
    return CurBasis(columns=columns, rows=rows, C=C, U=U, G=G)


def core_basis(stack: ModuleStack) -> CoreBasis:
    """Core Space bases (Panariello et al.): left singular vectors of [s_tB_t], right singular vectors of [A_t]."""
    A, B = stack.float64()
    U_B = torch.linalg.svd(torch.cat(B, dim=1), full_matrices=False).U
    V_A = torch.linalg.svd(torch.cat(A, dim=0), full_matrices=False).Vh.T
    return CoreBasis(U_B=U_B, V_A=V_A, left=tuple(U_B.T @ b for b in B), right=tuple(a @ V_A for a in A))


def decompose(
    adapters: AdapterSet,
    svd_tol: float = KNOTS_SVD_TOL,
    cur_rank: int | None = None,
    modules: Iterable[str] | None = None,
    progress: bool = False,
) -> Decomposition:
    """SVD and CUR bases of every module; the CUR rank defaults to each module's SVD rank k."""
    names = list(modules) if modules is not None else adapters.modules
    svd: dict[str, SvdBasis] = {}
    cur: dict[str, CurBasis] = {}
    for module in tqdm(names, desc="decompose", unit="module", disable=not progress, mininterval=1.0):
        stack = adapters.stacks[module]
        svd[module] = svd_basis(stack, svd_tol)
        cur[module] = cur_basis(stack, svd[module].rank if cur_rank is None else cur_rank)
    return Decomposition(svd=svd, cur=cur, svd_tol=svd_tol, cur_rank=cur_rank, adapters=adapters.provenance())
