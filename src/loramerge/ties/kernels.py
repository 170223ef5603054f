"""Fused CPU kernels for the streamed TIES passes (numba, compiled once and cached).

Each kernel reads a block of float32 coefficients once and keeps everything else in registers. A chain of PyTorch
ops (abs, compare, count, mask, where, sum, …) costs one pass over memory each, which is what made plain TIES on
Llama-3-8B shapes (8 B coefficients per pass) slow. Summation runs in float32 in task order, as torch.sum does in
the reference code, so the results match the dense definition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
import torch

# numba's default OpenMP layer loads the system libgomp next to torch's bundled one; the two pools spin against each
# other (measured: 15 ms instead of 0.5 ms per block). The workqueue layer only runs inside numba's own calls.
numba.config.THREADING_LAYER = "workqueue"

MAJORITY_UNKNOWN = 2  # the majority sign has not been computed yet


@contextmanager
def kernel_threads() -> Iterator[None]:
    """Run torch single-threaded around the kernels, which bring their own parallelism.

    Measured on 2 cores: torch's OpenMP pool spin-waits after each parallel op, starving numba's workers, and its
    2-thread mid-size ops (the sampling) ran 12× slower than single-threaded ones.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@numba.njit(parallel=True, cache=True)
def _bracket_rows(values, low, high, at_or_below, below, inside, slots):  # pragma: no cover - compiled
    # One pass: counts, and a branch-free compress-store of the in-bracket values into the row's own slot
    # (a data-dependent branch per entry mispredicts often and costs more than the whole count).
    rows, cols = values.shape
    for i in numba.prange(rows):
        le = 0
        lt = 0
        between = 0
        for j in range(cols):
            v = abs(values[i, j])
            le += v <= low
            lt += v < low
            slots[i, between] = v
            between += (v > low) & (v <= high)
        at_or_below[i] = le
        below[i] = lt
        inside[i] = between


@numba.njit(parallel=True, cache=True)
def _compact(slots, inside, offsets, out):  # pragma: no cover - compiled
    for i in numba.prange(inside.shape[0]):  # the block's rows; `slots` may have more
        out[offsets[i] : offsets[i] + inside[i]] = slots[i, : inside[i]]


def bracket_slots(rows: int, cols: int) -> np.ndarray:
    """Scratch for `bracket` on blocks of up to rows × cols (+ 1 column: the store after the last kept value)."""
    return np.empty((rows, cols + 1), dtype=np.float32)


def bracket(values: torch.Tensor, low: float, high: float, slots: np.ndarray) -> tuple[int, int, torch.Tensor]:
    """For |values| (a 2-D block): #(≤ low), #(< low), and the entries in (low, high]."""
    array = values.numpy()
    rows = array.shape[0]
    at_or_below, below, inside = (np.empty(rows, dtype=np.int64) for _ in range(3))
    _bracket_rows(array, np.float32(low), np.float32(high), at_or_below, below, inside, slots)
    offsets = np.zeros(rows, dtype=np.int64)
    np.cumsum(inside[:-1], out=offsets[1:])
    gathered = np.empty(int(inside.sum()), dtype=np.float32)
    _compact(slots, inside, offsets, gathered)
    return int(at_or_below.sum()), int(below.sum()), torch.from_numpy(gathered)


@numba.njit(cache=True)
def _trimmed_sums(block, thresholds, i, total, nonzero):  # pragma: no cover - compiled
    # Branch-free, tasks outer and columns inner, so that the column loop vectorises.
    tasks, _, cols = block.shape
    total[:] = 0
    nonzero[:] = 0
    for t in range(tasks):
        threshold = thresholds[t]
        for j in range(cols):
            x = block[t, i, j]
            kept = x if abs(x) >= threshold else np.float32(0.0)
            total[j] += kept
            nonzero[j] += kept != 0


@numba.njit(parallel=True, cache=True)
def _ties_block(block, thresholds, majority, out, undecided):  # pragma: no cover - compiled
    tasks, rows, cols = block.shape
    for i in numba.prange(rows):
        total = np.empty(cols, dtype=np.float32)
        nonzero = np.empty(cols, dtype=np.int32)
        direction = np.empty(cols, dtype=np.float32)
        kept = np.zeros(cols, dtype=np.float32)
        count = np.zeros(cols, dtype=np.float32)
        _trimmed_sums(block, thresholds, i, total, nonzero)
        pending = 0
        for j in range(cols):
            # KnOTS: torch.where(γ > 0, x > 0, x < 0) keeps x < 0 wherever γ ≤ 0.
            direction[j] = np.float32(1.0) if total[j] > 0 else np.float32(-1.0)
            if total[j] == 0 and nonzero[j] > 0:  # exact cancellation: the scope's majority sign decides
                if majority == MAJORITY_UNKNOWN:
                    pending += 1
                elif majority > 0:
                    direction[j] = np.float32(1.0)
        for t in range(tasks):
            threshold = thresholds[t]
            for j in range(cols):
                x = block[t, i, j]
                agrees = abs(x) >= threshold and x * direction[j] > 0
                kept[j] += x if agrees else np.float32(0.0)
                count[j] += np.float32(1.0) if agrees else np.float32(0.0)
        for j in range(cols):
            out[i, j] = kept[j] / max(count[j], np.float32(1.0))
        undecided[i] = pending


def ties_block(block: torch.Tensor, thresholds: torch.Tensor, majority: float, out: torch.Tensor) -> int:
    """Trim (|x| ≥ threshold per task), elect, disjoint mean of a (tasks × rows × cols) block into `out`.

    With majority = MAJORITY_UNKNOWN, returns the number of exactly cancelling entries (left unwritten); the caller
    then computes the majority sign and calls again.
    """
    undecided = np.empty(block.shape[1], dtype=np.int64)
    _ties_block(block.numpy(), thresholds.numpy(), np.float32(majority), out.numpy(), undecided)
    return int(undecided.sum())


@numba.njit(parallel=True, cache=True)
def _elected_sign_sum(block, thresholds, sums):  # pragma: no cover - compiled
    _, rows, cols = block.shape
    for i in numba.prange(rows):
        total = np.empty(cols, dtype=np.float32)
        nonzero = np.empty(cols, dtype=np.int32)
        _trimmed_sums(block, thresholds, i, total, nonzero)
        signs = 0
        for j in range(cols):
            signs += (total[j] > 0) - (total[j] < 0)
        sums[i] = signs


def elected_sign_sum(block: torch.Tensor, thresholds: torch.Tensor) -> int:
    """Σ over the block's entries of sign(Σ_t trimmed_t): the majority sign's vote count."""
    sums = np.empty(block.shape[1], dtype=np.int64)
    _elected_sign_sum(block.numpy(), thresholds.numpy(), sums)
    return int(sums.sum())
