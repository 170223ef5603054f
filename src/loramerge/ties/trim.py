"""Exact k-th smallest |x_t| over a whole model, streamed: no task vector is ever held in memory at once.

KnOTS keeps |x| ≥ kthvalue(|x_t|, D − ⌊D·K⌋) over the task's flattened model (D = 1.34 B entries for plain TIES on
Llama-3-8B). Here the value is found with one counting pass in the usual case: a uniform sample of |x_t| brackets
the target rank, a pass over the coefficients counts the entries below the bracket and gathers the few inside it,
and the k-th value is read off the gathered entries. If the sample missed (the k-th value lies outside the bracket)
the bracket is widened and the pass repeated, so the result is exact whatever the sample.
"""

from __future__ import annotations

import math

import torch

from loramerge.bases.spaces import CoefficientSpace
from loramerge.ties import kernels

SAMPLE_SIZE = 1 << 18
SAMPLE_SEED = 0
_BRACKET_SIGMAS = 6.0
_WIDEN = 8.0


def kth_rank(numel: int, top_k: float) -> int:
    """The 1-based rank k = D − ⌊D·K⌋ of the threshold among the sorted |x_t|; |x| ≥ it keeps ⌊D·K⌋+1 or more."""
    return numel - int(numel * (top_k / 100))


def _bracket(sample: torch.Tensor, quantile: float, widen: float) -> tuple[float, float]:
    m = len(sample)
    half_width = widen * (_BRACKET_SIGMAS * math.sqrt(quantile * (1 - quantile) / m) + 2.0 / m)
    low_index = math.floor((quantile - half_width) * m) - 1
    high_index = math.ceil((quantile + half_width) * m)
    low = float(sample[low_index]) if low_index >= 0 else -1.0  # below every |x|
    high = float(sample[high_index]) if high_index < m else math.inf
    return low, high


def _count_pass(
    space: CoefficientSpace,
    names: list[str],
    brackets: dict[int, tuple[float, float]],
    at_or_below: dict[int, int],
    below: dict[int, int],
    inside: dict[int, list[torch.Tensor]],
) -> None:
    for name in names:
        module = space.modules[name]
        buffer = torch.empty(module.chunk_rows, module.shape[1])
        slots = kernels.bracket_slots(module.chunk_rows, module.shape[1])
        for position, task in enumerate(module.tasks):
            if task not in brackets:
                continue
            for start, stop in module.row_blocks():
                values = space.rows(name, position, start, stop, buffer[: stop - start])
                le, lt, between = kernels.bracket(values, *brackets[task], slots)
                at_or_below[task] += le
                below[task] += lt
                inside[task].append(between)


def kth_smallest_abs(space: CoefficientSpace, names: list[str], ranks: dict[int, int]) -> dict[int, float]:
    """For each task t in `ranks`, the ranks[t]-th smallest |x_t| over the coefficients of modules `names`."""
    with kernels.kernel_threads():
        return _kth_smallest_abs(space, names, ranks)


def _kth_smallest_abs(space: CoefficientSpace, names: list[str], ranks: dict[int, int]) -> dict[int, float]:
    numels = space.task_sizes(names)
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    samples = {}
    for task in sorted(ranks):
        count = min(SAMPLE_SIZE, max(1024, numels[task]))
        samples[task] = torch.sort(space.sample_abs(task, names, count, generator)).values

    result: dict[int, float] = {}
    widen = 1.0
    while len(result) < len(ranks):
        pending = sorted(set(ranks) - result.keys())
        brackets = {t: _bracket(samples[t], ranks[t] / numels[t], widen) for t in pending}
        below = dict.fromkeys(pending, 0)  # |x| < low
        at_or_below = dict.fromkeys(pending, 0)  # |x| ≤ low
        inside: dict[int, list[torch.Tensor]] = {t: [] for t in pending}
        _count_pass(space, names, brackets, at_or_below, below, inside)
        for task in pending:
            k, low = ranks[task], brackets[task][0]
            gathered = torch.cat(inside[task])
            if below[task] < k <= at_or_below[task]:
                result[task] = low
            elif at_or_below[task] < k <= at_or_below[task] + len(gathered):
                result[task] = float(torch.kthvalue(gathered, k - at_or_below[task]).values)
        widen *= _WIDEN
    return result


def trim_thresholds(space: CoefficientSpace, names: list[str], top_k: float) -> dict[int, float]:
    """Per task, the KnOTS trim threshold over `names` (keep |x| ≥ threshold); empty when top_k ≥ 100."""
    if top_k >= 100:
        return {}
    return kth_smallest_abs(space, names, {t: kth_rank(d, top_k) for t, d in space.task_sizes(names).items()})
