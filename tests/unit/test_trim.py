"""The streamed global threshold is exactly torch.kthvalue over the concatenated task vector."""

from __future__ import annotations

import pytest
import torch

from loramerge.bases.spaces import full_space
from loramerge.ties import kernels, trim
from loramerge.ties.dare import DareSpace
from loramerge.ties.trim import kth_rank, kth_smallest_abs, trim_thresholds


def concatenated_abs(space, task: int) -> torch.Tensor:
    """|x_task| over the model, computed as the trim computes it (`space.rows` per row block, with the kernels'
    torch threads): a product computed another way (another thread count or blocking) may differ in the last bit
    on another CPU, and the threshold is compared for exact equality."""
    parts = []
    with kernels.kernel_threads():
        for name in space.names:
            module = space.modules[name]
            if task in module.tasks:
                for start, stop in module.row_blocks():
                    block = torch.empty(stop - start, module.shape[1])
                    parts.append(space.rows(name, module.tasks.index(task), start, stop, block).abs().flatten())
    return torch.cat(parts)


@pytest.mark.parametrize("top_k", [1, 20, 50, 99.9])
def test_streaming_threshold_equals_kthvalue(adapters, top_k):
    space = full_space(adapters)
    thresholds = trim_thresholds(space, space.names, top_k)
    for task in space.tasks():
        values = concatenated_abs(space, task)
        expected = values.kthvalue(kth_rank(values.numel(), top_k)).values
        assert thresholds[task] == float(expected)


def test_every_rank_is_found_exactly(adapters):
    space = full_space(adapters)
    values = concatenated_abs(space, 0)
    for k in [1, 2, values.numel() // 2, values.numel() - 1, values.numel()]:
        assert kth_smallest_abs(space, space.names, {0: k})[0] == float(values.kthvalue(k).values)


def test_a_sample_that_misses_the_bracket_still_gives_the_exact_value(adapters, monkeypatch):
    """An unrepresentative sample (all ≈ 0) brackets the wrong values: widening passes must still be exact."""
    monkeypatch.setattr(trim, "_BRACKET_SIGMAS", 0.0)
    calls = []
    original = full_space(adapters)

    class CountingSpace(type(original)):
        def sample_abs(self, task, names, count, generator):
            return torch.full((count,), 1e-9)

        def rows(self, *args, **kwargs):
            calls.append(args[0])
            return super().rows(*args, **kwargs)

    space = CountingSpace(original.modules)
    values = concatenated_abs(original, 1)
    k = kth_rank(values.numel(), 20)
    assert kth_smallest_abs(space, space.names, {1: k})[1] == float(values.kthvalue(k).values)
    assert len(calls) > len(space.names)  # more than one pass was needed


def test_many_exact_zeros_and_ties(adapters):
    """DARE with p = 0.8 leaves most entries exactly 0; the threshold may be 0 itself."""
    space = DareSpace(full_space(adapters), drop_p=0.8, seed=1)
    for top_k in [10, 50]:
        thresholds = trim_thresholds(space, space.names, top_k)
        for task in space.tasks():
            values = concatenated_abs(space, task)
            assert thresholds[task] == float(values.kthvalue(kth_rank(values.numel(), top_k)).values)


def test_no_trim_at_top_k_100(adapters):
    space = full_space(adapters)
    assert trim_thresholds(space, space.names, 100) == {}
