"""TIES over any coefficient space, with KnOTS's semantics, streamed a block of rows at a time.

1. Trim: keep |x_t| ≥ the task's kthvalue threshold (⌊K·D⌋+1 entries or more), D over the whole model (`global`,
   KnOTS) or over one module (`per_layer`, Core Space / peft). top_k ≥ 100 keeps everything.
2. Elect: γ = sign(Σ_t trimmed_t); where γ = 0 the majority sign sign(Σ γ) of the trim scope is used.
3. Disjoint mean over the tasks whose trimmed entry is non-zero and agrees with γ; 0 where none does.
4. ΔW = λ · reconstruct(merged).

Steps 1–3 run in one fused kernel per block (loramerge.ties.kernels). The majority sign needs a pass over the whole
scope, so it is computed only once an exactly cancelling entry (γ = 0 with non-zero terms) turns up.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from loramerge.bases.spaces import CoefficientSpace
from loramerge.errors import ParameterError
from loramerge.params import TRIM_SCOPES
from loramerge.ties import kernels
from loramerge.ties.trim import trim_thresholds
from loramerge.updates import Update


def coefficient_blocks(space: CoefficientSpace, name: str) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, stop, tasks × rows × cols block of raw coefficients) over the module's rows; the buffer is reused."""
    module = space.modules[name]
    buffer = torch.empty(len(module.tasks), module.chunk_rows, module.shape[1])
    for start, stop in module.row_blocks():
        block = buffer[:, : stop - start]
        for position in range(len(module.tasks)):
            space.rows(name, position, start, stop, block[position])
        yield start, stop, block


class _Scopes:
    """Trim thresholds and majority signs per scope (the whole model, or one module), computed when first needed."""

    def __init__(self, space: CoefficientSpace, top_k: float, scope: str) -> None:
        if scope not in TRIM_SCOPES:
            raise ParameterError("trim_scope", f"must be one of {', '.join(TRIM_SCOPES)}; got {scope!r}")
        self.space, self.top_k, self.scope = space, top_k, scope
        self._thresholds: dict[str, dict[int, float]] = {}
        self._majorities: dict[str, float] = {}

    def _key(self, name: str) -> str:
        return "" if self.scope == "global" else name

    def _members(self, name: str) -> list[str]:
        return self.space.names if self.scope == "global" else [name]

    def thresholds(self, name: str) -> torch.Tensor:
        """Per task of module `name`, the float32 trim threshold (0: keep everything)."""
        key = self._key(name)
        if key not in self._thresholds:
            self._thresholds[key] = trim_thresholds(self.space, self._members(name), self.top_k)
        per_task = self._thresholds[key]
        return torch.tensor([per_task.get(task, 0.0) for task in self.space.modules[name].tasks])

    def known_majority(self, name: str) -> float:
        return self._majorities.get(self._key(name), kernels.MAJORITY_UNKNOWN)

    def majority(self, name: str) -> float:
        key = self._key(name)
        if key not in self._majorities:
            votes = 0
            for member in self._members(name):
                thresholds = self.thresholds(member)
                for _, _, block in coefficient_blocks(self.space, member):
                    votes += kernels.elected_sign_sum(block, thresholds)
            self._majorities[key] = float((votes > 0) - (votes < 0))
        return self._majorities[key]


def ties_merge(
    space: CoefficientSpace, lam: float, top_k: float, trim_scope: str = "global", progress: bool = False
) -> Iterator[tuple[str, Update]]:
    """Merged update of every module, in sorted module order."""
    scopes = _Scopes(space, top_k, trim_scope)
    for name in tqdm(space.names, desc="ties", unit="module", disable=not progress, mininterval=1.0):
        with kernels.kernel_threads():
            thresholds = scopes.thresholds(name)
            merged = torch.empty(space.modules[name].shape)
            for start, stop, block in coefficient_blocks(space, name):
                if kernels.ties_block(block, thresholds, scopes.known_majority(name), merged[start:stop]):
                    kernels.ties_block(block, thresholds, scopes.majority(name), merged[start:stop])
        yield name, space.reconstruct(name, merged, lam)
