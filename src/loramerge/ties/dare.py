"""DARE: drop each coefficient with probability p and rescale the survivors by 1/(1−p).

Every mask comes from its own generator seeded by (seed, task index, module name), so a merge does not depend on
the order in which modules or tasks are visited, and the several passes of a streaming merge see the same mask.
"""

from __future__ import annotations

import hashlib

import torch

from loramerge.bases.spaces import CoefficientSpace


def mask_seed(seed: int, task: int, module: str) -> int:
    digest = hashlib.sha256(f"dare:{seed}:{task}:{module}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def dare_mask(seed: int, task: int, module: str, shape: tuple[int, int], drop_p: float) -> torch.Tensor:
    """A float32 0/1 keep-mask with P(keep) = 1 − drop_p."""
    generator = torch.Generator().manual_seed(mask_seed(seed, task, module))
    return torch.empty(shape).bernoulli_(1.0 - drop_p, generator=generator)


class DareSpace(CoefficientSpace):
    """A coefficient space whose coefficients are DARE-masked and rescaled."""

    def __init__(self, base: CoefficientSpace, drop_p: float, seed: int) -> None:
        super().__init__(base.modules)
        self.base = base
        self.drop_p = drop_p
        self.seed = seed
        self._masks: dict[tuple[str, int], torch.Tensor] = {}

    def _mask(self, name: str, position: int) -> torch.Tensor:
        key = (name, position)
        if key not in self._masks:
            self._masks = {k: v for k, v in self._masks.items() if k[0] == name}  # one module's masks at a time
            module = self.modules[name]
            self._masks[key] = dare_mask(self.seed, module.tasks[position], name, module.shape, self.drop_p)
        return self._masks[key]

    def rows(self, name: str, position: int, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        self.base.rows(name, position, start, stop, out)
        if self.drop_p == 0.0:
            return out
        return out.mul_(self._mask(name, position)[start:stop]).div_(1.0 - self.drop_p)

    def sample_abs(self, task: int, names: list[str], count: int, generator: torch.Generator) -> torch.Tensor:
        # Distributed like the masked entries (the selection only needs the distribution, not the same draws).
        values = self.base.sample_abs(task, names, count, generator)
        keep = torch.empty_like(values).bernoulli_(1.0 - self.drop_p, generator=generator)
        return values * keep / (1.0 - self.drop_p)
