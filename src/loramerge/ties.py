"""TIES over any coefficient space, with KnOTS's semantics, streamed a block of rows at a time.

1. Trim: keep |x_t| ≥ the task's kthvalue threshold (⌊K·D⌋+1 entries or more), D over the whole model (`global`,
   KnOTS) or over one module (`per_layer`, Core Space / peft). top_k ≥ 100 keeps everything.
2. Elect: γ = sign(Σ_t trimmed_t); where γ = 0 the majority sign sign(Σ γ) of the trim scope is used.
3. Disjoint mean over the tasks whose trimmed entry is non-zero and agrees with γ; 0 where none does.
4. ΔW = λ · reconstruct(merged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm

from loramerge.errors import ParameterError
from loramerge.params import TRIM_SCOPES
from loramerge.selection import trim_thresholds
from loramerge.spaces import CoefficientSpace
from loramerge.updates import Update


def disjoint_mean(trimmed: torch.Tensor, majority_sign: Callable[[], float]) -> torch.Tensor:
    """Elect signs over dim 0 of `trimmed` (tasks × …) and average the agreeing non-zero entries."""
    elected = trimmed.sum(dim=0).sign_()
    undecided = elected == 0
    # γ = 0 with non-zero entries (exact cancellation) is the only case where the majority sign matters; it needs
    # a pass over the whole scope, so it is computed only when such an entry exists.
    if undecided.any() and trimmed[:, undecided].ne(0).any():
        elected[undecided] = majority_sign()
    keep = torch.where(elected > 0, trimmed > 0, trimmed < 0)
    total = torch.where(keep, trimmed, 0.0).sum(dim=0)
    return total.div_(keep.sum(dim=0).clamp_min_(1))


class _Trimmer:
    """Thresholds per task for the trim scope, computed once per scope when first needed."""

    def __init__(self, space: CoefficientSpace, top_k: float, scope: str) -> None:
        self.space, self.top_k, self.scope = space, top_k, scope
        self._thresholds: dict[str, dict[int, float]] = {}

    def scope_key(self, name: str) -> str:
        return "" if self.scope == "global" else name

    def scope_of(self, name: str) -> list[str]:
        return self.space.names if self.scope == "global" else [name]

    def thresholds(self, name: str) -> dict[int, float]:
        key = self.scope_key(name)
        if key not in self._thresholds:
            self._thresholds[key] = trim_thresholds(self.space, self.scope_of(name), self.top_k)
        return self._thresholds[key]

    def trimmed_block(self, name: str, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        """The trimmed coefficients of rows [start, stop) of every task of module `name`, in `out`."""
        module = self.space.modules[name]
        thresholds = self.thresholds(name)
        for position, task in enumerate(module.tasks):
            block = self.space.rows(name, position, start, stop, out[position])
            if task in thresholds:
                block.masked_fill_(block.abs() < thresholds[task], 0.0)
        return out


def _blocks(space: CoefficientSpace, name: str) -> Iterator[tuple[int, int, torch.Tensor]]:
    module = space.modules[name]
    rows, cols = module.shape
    buffer = torch.empty(len(module.tasks), module.chunk_rows, cols)
    for start in range(0, rows, module.chunk_rows):
        stop = min(rows, start + module.chunk_rows)
        yield start, stop, buffer[:, : stop - start]


def ties_merge(
    space: CoefficientSpace, lam: float, top_k: float, trim_scope: str = "global", progress: bool = False
) -> Iterator[tuple[str, Update]]:
    """Merged update of every module, in sorted module order."""
    if trim_scope not in TRIM_SCOPES:
        raise ParameterError("trim_scope", f"must be one of {TRIM_SCOPES}, got {trim_scope!r}")
    trimmer = _Trimmer(space, top_k, trim_scope)
    majorities: dict[str, float] = {}

    def majority_sign(name: str) -> float:
        key = trimmer.scope_key(name)
        if key not in majorities:
            total = 0.0
            for module in trimmer.scope_of(name):
                for start, stop, block in _blocks(space, module):
                    total += float(trimmer.trimmed_block(module, start, stop, block).sum(dim=0).sign_().sum())
            majorities[key] = float(torch.tensor(total).sign())
        return majorities[key]

    for name in tqdm(space.names, desc="ties", unit="module", disable=not progress, mininterval=1.0):
        merged = torch.empty(space.modules[name].shape)
        for start, stop, block in _blocks(space, name):
            trimmed = trimmer.trimmed_block(name, start, stop, block)
            merged[start:stop] = disjoint_mean(trimmed, lambda name=name: majority_sign(name))
        yield name, space.reconstruct(name, merged, lam)
