"""TARA-Merging: the three parametrisations against dense definitions, the initial point, and the adaptation loop on
a toy model whose linears carry the test adapters' module paths."""

from __future__ import annotations

import dense_reference as ref
import pytest
import torch
from conftest import SHAPES

from loramerge import merge
from loramerge.apply import updated
from loramerge.bases.decompose import decompose
from loramerge.methods.tara import tara_update
from loramerge.repro.adapt.tara import AdaptSettings, AdaptTask, CoefficientBranches, adapt, mean_entropy

ATOL = 2e-5


class Toy(torch.nn.Module):
    """Linears at the adapters' module paths; features are their outputs on one input, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.encoder = torch.nn.Module()
        self.encoder.layers = torch.nn.ModuleList()
        for _ in range(2):
            layer = torch.nn.Module()
            layer.self_attn = torch.nn.ModuleDict(
                {name: torch.nn.Linear(20, out_features) for name, out_features in (("q_proj", 24), ("v_proj", 16))}
            )
            self.encoder.layers.append(layer)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
                parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                attn[name](x)
                for layer in self.encoder.layers
                for attn in [layer.self_attn]
                for name in ("q_proj", "v_proj")
            ],
            dim=1,
        )


def linears(model: Toy) -> dict[str, torch.nn.Linear]:
    return {name: model.get_submodule(name) for name in SHAPES}


@pytest.mark.parametrize("variant", ["a", "b", "weight"])
def test_the_initial_point_is_task_arithmetic_sum(adapters, variant):
    got = merge(adapters, "tara", variant=variant, init=0.4)
    for module, per_task in ref.deltas64(adapters).items():
        expected = 0.4 * sum(per_task.values())
        torch.testing.assert_close(got[module].dense().double(), expected, atol=ATOL, rtol=1e-5)


def test_variant_a_weights_each_rank_one_piece(mixed_adapters):
    generator = torch.Generator().manual_seed(1)
    for module, stack in mixed_adapters.stacks.items():
        c = torch.randn(sum(stack.ranks), generator=generator)
        expected, column = torch.zeros(stack.shape, dtype=torch.float64), 0
        for task in stack.tasks:
            lora = mixed_adapters.adapters[task].modules[module]
            for j in range(lora.A.shape[0]):
                expected += c[column].double() * lora.scale * torch.outer(lora.B[:, j].double(), lora.A[j].double())
                column += 1
        got = tara_update(stack, "a", None, c).dense().double()
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)


def test_variant_b_weights_the_knots_directions(adapters):
    """ΔW = Σ_t U·diag(c_t)·Z_t with U, Z_t = S·V_tᵀ from a dense SVD of M = [ΔW_1 | … | ΔW_T]."""
    U_all, Z = ref.knots_bases(adapters)
    decomposition = decompose(adapters)
    generator = torch.Generator().manual_seed(2)
    for module, stack in adapters.stacks.items():
        k = U_all[module].shape[1]
        assert decomposition.svd[module].rank == k
        c = torch.randn(len(stack.tasks), k, generator=generator)
        expected = sum(
            U_all[module] @ (c[i, :, None].double() * Z[module][t].double()) for i, t in enumerate(stack.tasks)
        )
        got = tara_update(stack, "b", decomposition.svd[module], c).dense().double()
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_the_branch_hooks_equal_the_applied_update(adapters):
    """The model with the coefficient branches installed computes what W0 + ΔW(c) computes."""
    model, x = Toy(), torch.randn(5, 20, generator=torch.Generator().manual_seed(3))
    decomposition = decompose(adapters)
    branches = CoefficientBranches(linears(model), adapters, AdaptSettings(variant="b"), decomposition)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for coefficient in branches.parameters():
            coefficient.add_(0.1 * torch.randn(coefficient.shape, generator=generator))
    with branches:
        hooked = model(x)
    delta = {
        name: tara_update(adapters.stacks[name], "b", decomposition.svd[name], c).dense()
        for name, c in branches.learned().items()
    }
    with updated(model, delta):
        expected = model(x)
    torch.testing.assert_close(hooked, expected, atol=1e-5, rtol=1e-5)


def _tasks(adapters, count=3):
    generator = torch.Generator().manual_seed(5)
    return [
        AdaptTask(f"task{t}", torch.randn(40, 20, generator=generator), torch.randn(4, 80, generator=generator))
        for t in range(count)
    ]


def _run(adapters, settings, steps):
    model = Toy()
    branches = CoefficientBranches(linears(model), adapters, settings, decompose(adapters))
    tasks = _tasks(adapters)
    offsets = torch.zeros(len(tasks))
    losses = adapt(model, branches, tasks, offsets, lambda m, batch: m(batch), settings, steps)
    return losses, branches.learned()


@pytest.mark.parametrize("variant", ["a", "b", "weight"])
def test_adaptation_lowers_the_objective_and_repeats_exactly(adapters, variant):
    settings = AdaptSettings(variant=variant, lr=0.05, batch_size=40, seed=3)
    losses, learned = _run(adapters, settings, 30)
    assert losses[-1] < losses[0] - 1e-3
    again_losses, again = _run(adapters, settings, 30)
    assert again_losses == losses
    assert all(torch.equal(learned[name], again[name]) for name in learned)


def test_the_seed_orders_the_batches(adapters):
    _, first = _run(adapters, AdaptSettings(variant="a", lr=0.05, batch_size=16, seed=3), 5)
    _, same = _run(adapters, AdaptSettings(variant="a", lr=0.05, batch_size=16, seed=3), 5)
    _, other = _run(adapters, AdaptSettings(variant="a", lr=0.05, batch_size=16, seed=4), 5)
    assert all(torch.equal(first[name], same[name]) for name in first)
    assert any(not torch.equal(first[name], other[name]) for name in first)


def test_zero_steps_leave_the_initial_coefficients(adapters):
    losses, learned = _run(adapters, AdaptSettings(variant="a", init=0.4), 0)
    assert losses == [] and all(torch.all(c == 0.4) for c in learned.values())


def test_masked_classes_have_no_entropy():
    features, head = torch.randn(6, 8), torch.randn(5, 8)
    masked = mean_entropy(features, head, (0, 3))
    expected = mean_entropy(features, head[[1, 2, 4]], ())
    torch.testing.assert_close(masked, expected)


def test_steps_follow_the_original_count():
    settings = AdaptSettings(epochs=5, steps_per_epoch=50, batch_size=16)
    assert settings.steps(1608) == 250  # the smallest ViT validation set (Cars) has 101 batches
    assert AdaptSettings(epochs=10, steps_per_epoch=50, batch_size=16).steps(139) == 90  # RTE: 9 batches
