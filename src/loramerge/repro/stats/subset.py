"""The seeded subset of a task's training inputs that its statistics are collected on, and the digest that
identifies it in stats.json."""

from __future__ import annotations

import hashlib

import torch


def draw_rows(available: int, examples: int, seed: int) -> torch.Tensor:
    """min(examples, available) distinct row indices of a split of `available` rows, drawn with `seed`, ascending."""
    if available < 1 or examples < 1:
        raise ValueError(f"cannot draw {examples} of {available} rows")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(available, generator=generator)[:examples].sort().values


def inputs_sha256(inputs: torch.Tensor) -> str:
    """sha256 of the inputs' bytes (row-major, in their dtype): identifies exactly the examples counted."""
    return hashlib.sha256(inputs.contiguous().numpy().tobytes()).hexdigest()


def describe_subset(split: str, rows: torch.Tensor, available: int, seed: int) -> str:
    """stats.json's `split`: the prepared split and which of its rows were drawn."""
    return f"{split}: {len(rows)} of {available} rows drawn with seed {seed}"
