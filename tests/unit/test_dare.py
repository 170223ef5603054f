"""DARE masks depend on (seed, task, module) only, never on the order in which layers are visited."""

from __future__ import annotations

import torch
from conftest import SHAPES, random_factors, write_adapter

from loramerge import load_adapters, merge
from loramerge.ties.dare import dare_mask


def test_mask_is_independent_of_the_order_it_is_drawn_in():
    keys = [(0, "a.q_proj"), (1, "a.q_proj"), (0, "b.v_proj")]
    forward = [dare_mask(3, task, module, (16, 20), 0.4) for task, module in keys]
    backward = [dare_mask(3, task, module, (16, 20), 0.4) for task, module in reversed(keys)][::-1]
    for first, second in zip(forward, backward, strict=True):
        assert torch.equal(first, second)
    assert not torch.equal(forward[0], forward[1])  # another task draws another mask


def test_mask_keeps_one_minus_p_on_average():
    mask = dare_mask(0, 0, "m", (400, 500), 0.3)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert abs(float(mask.mean()) - 0.7) < 0.01


def test_same_seed_same_merge_whatever_the_layer_order(tmp_path):
    """A module merges the same whether the adapters hold all modules or only it (another iteration order)."""
    generator = torch.Generator().manual_seed(2)
    tasks = [random_factors(generator, SHAPES, 4) for _ in range(3)]
    last = sorted(SHAPES)[-1]
    full = load_adapters([write_adapter(tmp_path / f"full{t}", f) for t, f in enumerate(tasks)])
    alone = load_adapters([write_adapter(tmp_path / f"one{t}", {last: f[last]}) for t, f in enumerate(tasks)])
    for method in ["dare_ties", "knots_dare_ties"]:
        params = {"drop_p": 0.5, "seed": 9, "trim_scope": "per_layer", "top_k": 100}
        together = merge(full, method, **params)[last].dense()
        assert torch.equal(together, merge(full, method, **params)[last].dense())  # reproducible
        if method == "dare_ties":  # the SVD basis of one module does not depend on the others either
            torch.testing.assert_close(together, merge(alone, method, **params)[last].dense(), atol=0, rtol=0)
        else:
            torch.testing.assert_close(together, merge(alone, method, **params)[last].dense(), atol=1e-5, rtol=0)


def test_a_different_seed_gives_a_different_merge(adapters):
    first = merge(adapters, "dare_ties", drop_p=0.5, seed=1)
    second = merge(adapters, "dare_ties", drop_p=0.5, seed=2)
    assert all(not torch.allclose(first[m].dense(), second[m].dense()) for m in first)


def test_zero_drop_probability_is_plain_ties(adapters):
    dropped = merge(adapters, "dare_ties", drop_p=0.0, top_k=30, lam=0.4)
    plain = merge(adapters, "ties", top_k=30, lam=0.4)
    for m in plain:
        assert torch.equal(dropped[m].dense(), plain[m].dense())
