"""A merged update of one module: low-rank factors where the method keeps them, a dense ΔW otherwise."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LowRankUpdate:
    """ΔW = B @ A, B (O × k), A (k × I); writable as a peft LoRA module of rank k."""

    B: torch.Tensor
    A: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.B.shape[0], self.A.shape[1]

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def dense(self) -> torch.Tensor:
        return self.B.float() @ self.A.float()

    def squared_norm(self) -> float:
        # ‖BA‖²_F = trace((BᵀB)(AAᵀ)): O(k²(O+I)) instead of forming BA.
        B, A = self.B.double(), self.A.double()
        return float(((B.T @ B) * (A @ A.T)).sum())


@dataclass(frozen=True)
class DenseUpdate:
    delta: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.delta.shape)

    @property
    def rank(self) -> None:
        return None

    def dense(self) -> torch.Tensor:
        return self.delta

    def squared_norm(self) -> float:
        return float(torch.linalg.vector_norm(self.delta)) ** 2


Update = LowRankUpdate | DenseUpdate


def mix_updates(first: Update, second: Update, alpha: float) -> Update:
    """alpha·first + (1−alpha)·second, kept low rank (ranks add) when both are."""
    if isinstance(first, LowRankUpdate) and isinstance(second, LowRankUpdate):
        return LowRankUpdate(
            B=torch.cat([alpha * first.B, (1.0 - alpha) * second.B], dim=1),
            A=torch.cat([first.A, second.A], dim=0),
        )
    return DenseUpdate(alpha * first.dense() + (1.0 - alpha) * second.dense())
