"""The spaces in which the TIES family merges: per module and task, a coefficient x_t = left_t @ right_t.

| space      | x_t                        | merged update                 |
|------------|----------------------------|-------------------------------|
| full       | ΔW_t = (s_tB_t) @ A_t      | λ·X* (dense)                  |
| svd        | Z_t = (Uᵀs_tB_t) @ A_t     | (λ·U) @ X*                    |
| cur (UR)   | Y_t = (U_c·G_t) @ A_t      | (λ·C) @ X*                    |
| cur_r (R)  | R_t = G_t @ A_t            | (λ·C·U_c) @ X*                |
| core       | M_t = (U_Bᵀs_tB_t)(A_tV_A) | (λ·U_B·X*) @ V_Aᵀ             |

Coefficients are produced a block of rows at a time into caller-owned buffers, so a merge touches O(n·rows·I)
memory whatever the model size; full-space coefficients are computed in float32 as the reference code does, the
basis coefficients in float64 and then rounded to float32, as KnOTS does after its float64 SVD.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from loramerge.adapters import AdapterSet
from loramerge.bases.decompose import Decomposition, core_basis
from loramerge.updates import DenseUpdate, LowRankUpdate, Update

CHUNK_ELEMENTS = 1 << 18  # ≈1 MB of float32 per task and block: stays in cache, so elementwise passes are cheap.


@dataclass(frozen=True)
class ModuleCoefficients:
    tasks: tuple[int, ...]
    left: tuple[torch.Tensor, ...]
    right: tuple[torch.Tensor, ...]
    basis_left: torch.Tensor | None = None
    basis_right: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.left[0].shape[0], self.right[0].shape[1]

    @property
    def numel(self) -> int:
        rows, cols = self.shape
        return rows * cols

    @property
    def chunk_rows(self) -> int:
        return max(1, CHUNK_ELEMENTS // max(1, self.shape[1]))

    def row_blocks(self) -> Iterator[tuple[int, int]]:
        """[start, stop) of each block of at most `chunk_rows` rows."""
        rows = self.shape[0]
        for start in range(0, rows, self.chunk_rows):
            yield start, min(rows, start + self.chunk_rows)

    def dense(self, position: int) -> torch.Tensor:
        return (self.left[position] @ self.right[position]).float()


class CoefficientSpace:
    """Per-module coefficients of every task, and the map from a merged coefficient back to ΔW."""

    def __init__(self, modules: dict[str, ModuleCoefficients]) -> None:
        self.modules = modules

    @property
    def names(self) -> list[str]:
        return sorted(self.modules)

    def tasks(self) -> list[int]:
        return sorted({task for module in self.modules.values() for task in module.tasks})

    def task_sizes(self, names: list[str]) -> dict[int, int]:
        """Per task, its number of coefficients over the modules `names` (the D of a trim scope)."""
        sizes: dict[int, int] = {}
        for name in names:
            module = self.modules[name]
            for task in module.tasks:
                sizes[task] = sizes.get(task, 0) + module.numel
        return dict(sorted(sizes.items()))

    def rows(self, name: str, position: int, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        """Rows [start, stop) of the coefficient of the module's `position`-th task, written into `out`."""
        module = self.modules[name]
        left, right = module.left[position][start:stop], module.right[position]
        if left.dtype == out.dtype:
            return torch.mm(left, right, out=out)
        return out.copy_(left @ right)

    def sample_abs(self, task: int, names: list[str], count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` entries of |x_task| drawn uniformly over the given modules' coefficients (with replacement)."""
        owned = [(name, self.modules[name].tasks.index(task)) for name in names if task in self.modules[name].tasks]
        sizes = torch.tensor([self.modules[name].numel for name, _ in owned], dtype=torch.float64)
        picks = torch.multinomial(sizes, count, replacement=True, generator=generator)
        values = []
        for index, (name, position) in enumerate(owned):
            how_many = int((picks == index).sum())
            if how_many == 0:
                continue
            module = self.modules[name]
            rows, cols = module.shape
            r = torch.randint(rows, (how_many,), generator=generator)
            c = torch.randint(cols, (how_many,), generator=generator)
            entries = (module.left[position][r] * module.right[position][:, c].T).sum(dim=1)
            values.append(entries.float().abs())
        return torch.cat(values)

    def reconstruct(self, name: str, merged: torch.Tensor, lam: float) -> Update:
        module = self.modules[name]
        if module.basis_left is None:
            return DenseUpdate(merged.mul_(lam))
        if module.basis_right is None:
            return LowRankUpdate(B=(lam * module.basis_left).float(), A=merged)
        return LowRankUpdate(B=(lam * module.basis_left @ merged.double()).float(), A=module.basis_right.float())


def full_space(adapters: AdapterSet) -> CoefficientSpace:
    return CoefficientSpace({name: ModuleCoefficients(s.tasks, s.B, s.A) for name, s in adapters.stacks.items()})


def svd_space(adapters: AdapterSet, decomposition: Decomposition) -> CoefficientSpace:
    modules = {}
    for name, stack in adapters.stacks.items():
        basis = decomposition.svd[name]
        modules[name] = ModuleCoefficients(stack.tasks, basis.P, stack.float64()[0], basis_left=basis.U)
    return CoefficientSpace(modules)


def cur_space(adapters: AdapterSet, decomposition: Decomposition) -> CoefficientSpace:
    """UR space: Y_t = U_c·R_t, merged update C·Y*."""
    modules = {}
    for name, stack in adapters.stacks.items():
        basis = decomposition.cur[name]
        modules[name] = ModuleCoefficients(
            stack.tasks, tuple(basis.U @ g for g in basis.G), stack.float64()[0], basis_left=basis.C
        )
    return CoefficientSpace(modules)


def cur_r_space(adapters: AdapterSet, decomposition: Decomposition) -> CoefficientSpace:
    """R space (the paper's ablation): R_t, merged update C·U_c·R*."""
    modules = {}
    for name, stack in adapters.stacks.items():
        basis = decomposition.cur[name]
        modules[name] = ModuleCoefficients(stack.tasks, basis.G, stack.float64()[0], basis_left=basis.C @ basis.U)
    return CoefficientSpace(modules)


def core_space(adapters: AdapterSet) -> CoefficientSpace:
    modules = {}
    for name, stack in adapters.stacks.items():
        basis = core_basis(stack)
        modules[name] = ModuleCoefficients(
            stack.tasks, basis.left, basis.right, basis_left=basis.U_B, basis_right=basis.V_A.T
        )
    return CoefficientSpace(modules)
