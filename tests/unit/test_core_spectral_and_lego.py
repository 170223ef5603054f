"""Core-TSV, Core-Iso and LoRA-LEGO against plain dense definitions (tests/dense_reference.py), on random adapters:
equal ranks, heterogeneous ranks, and a module that one adapter lacks."""

from __future__ import annotations

import dense_reference as ref
import pytest
import torch
from conftest import SHAPES, random_adapter_dirs, random_factors, write_adapter

from loramerge import load_adapters, merge
from loramerge.errors import ParameterError
from loramerge.methods.core_iso import isotropic_factors
from loramerge.updates import LowRankUpdate

ATOL = 2e-5


def dense(updates) -> dict[str, torch.Tensor]:
    return {name: update.dense().double() for name, update in updates.items()}


def assert_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = ATOL) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(got[name].double(), expected[name].double(), atol=atol, rtol=1e-5, msg=name)


@pytest.fixture
def lone_module_adapters(tmp_path):
    """Two adapters of rank 3; the first also has a module that the second lacks (T = 1 there)."""
    generator = torch.Generator().manual_seed(11)
    shapes = dict(SHAPES)
    lone = "encoder.layers.1.self_attn.v_proj"
    first = write_adapter(tmp_path / "a", random_factors(generator, shapes, 3))
    shapes.pop(lone)
    second = write_adapter(tmp_path / "b", random_factors(generator, shapes, 3))
    return load_adapters([first, second]), lone


# --- Core-TSV -----------------------------------------------------------------------------------------------------


def test_core_tsv_equals_the_core_space_code_with_equal_full_ranks(adapters):
    assert_close(dense(merge(adapters, "core_tsv", lam=0.7)), ref.core_space_code_tsv(adapters, 0.7))


@pytest.mark.parametrize("fixture", ["adapters", "mixed_adapters"])
def test_core_tsv_matches_dense_tsv_of_the_core_matrices(request, fixture):
    adapters = request.getfixturevalue(fixture)
    got = merge(adapters, "core_tsv", lam=1.3)
    assert all(isinstance(update, LowRankUpdate) for update in got.values())
    assert_close(dense(got), ref.core_tsv(adapters, 1.3))


def test_core_tsv_keeps_every_triplet_when_each_task_fits_its_share(adapters):
    """Equal ranks r and k = T·r: each task keeps all r triplets, so the merge is the whitened reconstruction of
    the M_t's full SVDs, whose rank is Σ r; and with Σ r ≤ min(O, I) it equals TSV on the full ΔW_t."""
    got = merge(adapters, "core_tsv")
    full = ref.deltas64(adapters)
    for module, update in got.items():
        assert update.rank == sum(adapters.stacks[module].ranks)
        expected = ref.tsv([full[module][t] for t in sorted(full[module])], 1.0)
        torch.testing.assert_close(update.dense().double(), expected, atol=ATOL, rtol=1e-5)


def test_core_tsv_never_keeps_a_zero_singular_triplet(tmp_path):
    """A task whose update has rank 1 (B's columns repeat) contributes one triplet, not r; the zero-σ ones have
    arbitrary vectors that would make the result depend on the SVD routine."""
    generator = torch.Generator().manual_seed(3)
    factors = random_factors(generator, SHAPES, 4)
    degenerate = {m: (A, B[:, :1].repeat(1, 4)) for m, (A, B) in random_factors(generator, SHAPES, 4).items()}
    adapters = load_adapters([write_adapter(tmp_path / "a", factors), write_adapter(tmp_path / "b", degenerate)])
    got = merge(adapters, "core_tsv")
    for update in got.values():
        assert update.rank == 4 + 1
    assert_close(dense(got), ref.core_tsv(adapters, 1.0))


# --- Core-Iso -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["adapters", "mixed_adapters"])
def test_core_iso_is_iso_c_of_the_summed_update(request, fixture):
    adapters = request.getfixturevalue(fixture)
    full = ref.deltas64(adapters)
    expected = {m: ref.iso_c(sum(d.double() for d in per_task.values()), 0.4) for m, per_task in full.items()}
    assert_close(dense(merge(adapters, "core_iso", lam=0.4)), expected)


def test_core_iso_equals_the_core_space_code_isotropize_with_full_ranks(adapters):
    """The Core Space code averages all q singular values of Σ M_t; with full-rank tasks none is zero."""
    for module, (U_B, V_A, cores) in ref.dense_cores(adapters).items():
        total = sum(cores.values())
        u, s, vh = torch.linalg.svd(total, full_matrices=False)
        expected = U_B @ (u @ torch.diag(s.mean() * torch.ones_like(s)) @ vh) @ V_A.T
        got = merge(adapters, "core_iso")[module].dense().double()
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)


def test_core_iso_of_a_single_task_has_equal_singular_values(lone_module_adapters):
    adapters, lone = lone_module_adapters
    update = merge(adapters, "core_iso")[lone]
    values = torch.linalg.svdvals(update.dense().double())[: update.rank]
    assert update.rank == 3
    torch.testing.assert_close(values, values.mean().expand(3), atol=1e-5, rtol=1e-5)
    _, right = isotropic_factors(torch.zeros(5, 5, dtype=torch.float64))
    assert right.shape[0] == 0  # an all-zero sum has no non-zero singular value to average


# --- LoRA-LEGO ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["adapters", "mixed_adapters"])
@pytest.mark.parametrize(("clusters", "norm", "seed"), [(None, "linf", 0), (3, "l2", 5), (7, "linf", 2)])
def test_lora_lego_matches_brute_force_kmeans(request, fixture, clusters, norm, seed):
    adapters = request.getfixturevalue(fixture)
    got = merge(adapters, "lora_lego", clusters=clusters, norm=norm, seed=seed, iterations=10, lam=0.9)
    expected = ref.lora_lego(adapters, clusters, iterations=10, norm=norm, seed=seed, lam=0.9)
    assert_close(dense(got), expected)
    for module, update in got.items():
        K = clusters if clusters is not None else max(adapters.stacks[module].ranks)
        assert update.rank <= K


def test_lora_lego_with_one_cluster_per_unit_is_scaled_task_arithmetic(adapters):
    total = 3 * 4  # three adapters of rank 4
    got = merge(adapters, "lora_lego", clusters=total)
    ta = merge(adapters, "ta")
    assert_close(dense(got), {m: (4 / total) ** 0.5 * u.dense().double() for m, u in ta.items()})


def test_lora_lego_seed_is_per_module_not_per_visit_order(tmp_path):
    """A module's merge depends on the seed and its own units only, not on which other modules are merged."""
    every = random_adapter_dirs(tmp_path / "every", seed=4)
    module = "encoder.layers.1.self_attn.q_proj"
    generator = torch.Generator().manual_seed(4)
    only = []
    for task in range(3):
        factors = random_factors(generator, SHAPES, 4)
        only.append(write_adapter(tmp_path / f"only{task}", {module: factors[module]}))
    full = merge(load_adapters(every), "lora_lego", seed=1, clusters=3)
    alone = merge(load_adapters(only), "lora_lego", seed=1, clusters=3)
    torch.testing.assert_close(full[module].dense(), alone[module].dense())
    other_seed = merge(load_adapters(every), "lora_lego", seed=2, clusters=3)
    assert not torch.allclose(full[module].dense(), other_seed[module].dense())


def test_lora_lego_rejects_bad_parameters(adapters):
    for bad in ({"clusters": 0}, {"norm": "l1"}, {"iterations": -1}, {"clusters": 2.5}):
        with pytest.raises(ParameterError):
            merge(adapters, "lora_lego", **bad)
