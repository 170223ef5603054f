"""Every merge method against the plain dense definition of tests/dense_reference.py, on random adapters."""

from __future__ import annotations

import dense_reference as ref
import pytest
import torch
from conftest import SHAPES, random_adapter_dirs, random_factors, write_adapter

from loramerge import load_adapters, merge
from loramerge.bases.decompose import cur_basis, svd_basis
from loramerge.methods import METHODS
from loramerge.updates import LowRankUpdate

ATOL = 2e-5


def dense(updates) -> dict[str, torch.Tensor]:
    return {name: update.dense() for name, update in updates.items()}


def assert_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = ATOL) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(got[name].double(), expected[name].double(), atol=atol, rtol=1e-5, msg=name)


def test_registry_lists_the_seventeen_methods():
    assert sorted(METHODS) == sorted(
        [
            "ta",
            "ties",
            "dare_ties",
            "knots_ties",
            "knots_dare_ties",
            "core_ta",
            "core_ties",
            "cur_ties",
            "cur_r_ties",
            "core_tsv",
            "core_iso",
            "lora_lego",
            "tara",
            "regmean",
            "fisher",
            "hybrid",
            "mix",
        ]
    )


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_ta_is_the_scaled_sum_and_stays_low_rank(adapters, mode):
    updates = merge(adapters, "ta", lam=0.3, mode=mode)
    n = len(adapters)
    expected = {m: 0.3 * sum(d.values()) / (n if mode == "mean" else 1) for m, d in ref.deltas(adapters).items()}
    assert_close(dense(updates), expected)
    assert all(isinstance(u, LowRankUpdate) and u.rank == 4 * n for u in updates.values())


def test_core_ta_equals_ta(adapters):
    assert_close(dense(merge(adapters, "core_ta", lam=0.7)), dense(merge(adapters, "ta", lam=0.7)))


@pytest.mark.parametrize("top_k", [20, 37.5, 100])
@pytest.mark.parametrize("scope", ["global", "per_layer"])
def test_ties_matches_the_dense_definition(adapters, top_k, scope):
    expected = ref.ties(ref.deltas(adapters), top_k, lam=0.8, scope=scope)
    assert_close(dense(merge(adapters, "ties", lam=0.8, top_k=top_k, trim_scope=scope)), expected)


def test_ties_trim_keeps_floor_kd_plus_one_entries_per_task(adapters):
    """With one task per entry surviving, the merged support is the union of the kept supports."""
    single = load_adapters([adapters.adapters[0].path, adapters.adapters[0].path])  # same task twice: no conflicts
    merged = dense(merge(single, "ties", top_k=10))
    D = sum(s.shape[0] * s.shape[1] for s in single.stacks.values())
    assert sum(int(torch.count_nonzero(m)) for m in merged.values()) == int(D * 0.1) + 1


def test_per_layer_ties_agrees_with_peft_merge_utils(adapters):
    from peft.utils import merge_utils as peft_merge_utils

    top_k, lam = 30, 0.9
    ours = dense(merge(adapters, "ties", lam=lam, top_k=top_k, trim_scope="per_layer"))
    for module, per_task in ref.deltas(adapters).items():
        tensors = [per_task[t] for t in sorted(per_task)]
        numel = tensors[0].numel()
        # peft keeps exactly ⌊density·D⌋ entries; KnOTS keeps ⌊K·D⌋+1: ask peft for one more.
        density = (int(numel * top_k / 100) + 1.5) / numel
        expected = peft_merge_utils.ties(tensors, torch.full((len(tensors),), lam), density, "total")
        torch.testing.assert_close(ours[module], expected, atol=ATOL, rtol=1e-5)


def test_exact_sign_cancellation_takes_the_global_majority_sign(tmp_path):
    """Task 1 = −task 0 on one module: every elected sign there is 0 and the majority of the whole model decides."""
    generator = torch.Generator().manual_seed(3)
    first = random_factors(generator, SHAPES, 4)
    opposite = {m: (a, -b) for m, (a, b) in first.items()}
    opposite["encoder.layers.1.self_attn.v_proj"] = random_factors(generator, SHAPES, 4)[
        "encoder.layers.1.self_attn.v_proj"
    ]
    adapters = load_adapters([write_adapter(tmp_path / "a", first), write_adapter(tmp_path / "b", opposite)])
    expected = ref.ties(ref.deltas(adapters), 100, lam=1.0)
    got = dense(merge(adapters, "ties", top_k=100))
    assert_close(got, expected)
    assert torch.count_nonzero(got["encoder.layers.0.self_attn.q_proj"]) > 0  # the cancelled entries are not 0


def test_svd_basis_reconstructs_every_task(adapters):
    for module, stack in adapters.stacks.items():
        basis = svd_basis(stack)
        assert basis.rank == min(stack.shape[0], sum(stack.ranks))
        torch.testing.assert_close(basis.U.T @ basis.U, torch.eye(basis.rank, dtype=torch.float64))
        for position in range(len(stack.tasks)):
            Z = basis.P[position] @ stack.A[position].double()
            torch.testing.assert_close(basis.U @ Z, stack.delta(position).double(), atol=1e-5, rtol=0, msg=module)


@pytest.mark.parametrize("fixture", ["adapters", "mixed_adapters"])
@pytest.mark.parametrize("scope", ["global", "per_layer"])
def test_knots_ties_matches_a_dense_svd_of_m(request, fixture, scope):
    adapters = request.getfixturevalue(fixture)
    U, Z = ref.knots_bases(adapters)
    merged = ref.ties(Z, top_k=20, lam=0.6, scope=scope)
    expected = {m: U[m] @ merged[m].double() for m in merged}
    assert_close(dense(merge(adapters, "knots_ties", lam=0.6, top_k=20, trim_scope=scope)), expected)


def test_knots_dare_ties_is_dare_on_z_then_ties(adapters):
    from loramerge.ties.dare import dare_mask

    U, Z = ref.knots_bases(adapters)
    p, seed = 0.3, 11
    dropped = {
        m: {t: z * dare_mask(seed, t, m, tuple(z.shape), p) / (1 - p) for t, z in per_task.items()}
        for m, per_task in Z.items()
    }
    merged = ref.ties(dropped, top_k=50, lam=0.7)
    expected = {m: U[m] @ merged[m].double() for m in merged}
    got = merge(adapters, "knots_dare_ties", lam=0.7, top_k=50, drop_p=p, seed=seed)
    assert_close(dense(got), expected)


def test_dare_ties_is_dare_on_delta_then_ties(adapters):
    from loramerge.ties.dare import dare_mask

    p, seed = 0.5, 4
    dropped = {
        m: {t: d * dare_mask(seed, t, m, tuple(d.shape), p) / (1 - p) for t, d in per_task.items()}
        for m, per_task in ref.deltas(adapters).items()
    }
    expected = ref.ties(dropped, top_k=60, lam=0.5)
    assert_close(dense(merge(adapters, "dare_ties", lam=0.5, top_k=60, drop_p=p, seed=seed)), expected)


def test_core_ties_matches_dense_core_matrices(adapters):
    bases = ref.core_bases(adapters)
    merged = ref.ties({m: b[2] for m, b in bases.items()}, top_k=40, lam=0.9, scope="per_layer")
    expected = {m: bases[m][0] @ merged[m].double() @ bases[m][1].T for m in merged}
    assert_close(dense(merge(adapters, "core_ties", lam=0.9, top_k=40)), expected)


def test_cur_blocks_equal_the_projected_m(adapters):
    """C·Y_t is the t-th block of C·C⁺·M·R⁺·R, and C, R are M's largest-norm columns and rows."""
    dense_cur = ref.cur_bases(adapters)
    for module, stack in adapters.stacks.items():
        M, C, U, R, _ = dense_cur[module]
        basis = cur_basis(stack, C.shape[1])
        torch.testing.assert_close(basis.C, C, atol=1e-10, rtol=0)
        torch.testing.assert_close(basis.U, U, atol=1e-8, rtol=1e-8)
        projected = C @ torch.linalg.pinv(C, rtol=1e-10) @ M @ torch.linalg.pinv(R, rtol=1e-10) @ R
        width = stack.shape[1]
        for position in range(len(stack.tasks)):
            Y = basis.U @ basis.G[position] @ stack.A[position].double()
            torch.testing.assert_close(
                basis.C @ Y, projected[:, position * width : (position + 1) * width], atol=1e-8, rtol=1e-8
            )


def test_cur_reconstructs_m_when_columns_and_rows_span_it(tmp_path):
    """Two rank-1 LoRAs: M has rank 2, and 6 generic columns and rows span it, so C·U·R = M exactly."""
    adapters = load_adapters(random_adapter_dirs(tmp_path, n=2, ranks=(1, 1), seed=5))
    for stack in adapters.stacks.values():
        M = torch.cat([b.double() @ a.double() for a, b in zip(stack.A, stack.B, strict=True)], dim=1)
        basis = cur_basis(stack, 6)
        assert torch.linalg.matrix_rank(basis.C) == 2
        R = torch.cat([g @ a.double() for g, a in zip(basis.G, stack.A, strict=True)], dim=1)
        torch.testing.assert_close(basis.C @ basis.U @ R, M, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("fixture", ["adapters", "mixed_adapters"])
def test_cur_ties_and_r_space_match_the_dense_cur(request, fixture):
    adapters = request.getfixturevalue(fixture)
    dense_cur = ref.cur_bases(adapters)
    Y = {m: {t: (U @ block).float() for t, block in blocks.items()} for m, (_, _, U, _, blocks) in dense_cur.items()}
    merged = ref.ties(Y, top_k=25, lam=1.1)
    expected = {m: dense_cur[m][1] @ merged[m].double() for m in merged}
    assert_close(dense(merge(adapters, "cur_ties", lam=1.1, top_k=25)), expected)

    R = {m: {t: block.float() for t, block in blocks.items()} for m, (*_, blocks) in dense_cur.items()}
    merged = ref.ties(R, top_k=25, lam=1.1)
    expected = {m: dense_cur[m][1] @ dense_cur[m][2] @ merged[m].double() for m in merged}
    assert_close(dense(merge(adapters, "cur_r_ties", lam=1.1, top_k=25)), expected, atol=1e-4)


def test_hybrid_endpoints_are_the_two_branches(adapters):
    branches = {"svd.lam": 0.6, "svd.top_k": 20, "cur.lam": 1.2, "cur.top_k": 30}
    knots = dense(merge(adapters, "knots_ties", lam=0.6, top_k=20))
    cur = dense(merge(adapters, "cur_ties", lam=1.2, top_k=30))
    assert_close(dense(merge(adapters, "hybrid", alpha=1.0, **branches)), knots)
    assert_close(dense(merge(adapters, "hybrid", alpha=0.0, **branches)), cur)
    mixed = dense(merge(adapters, "hybrid", alpha=0.3, **branches))
    assert_close(mixed, {m: 0.3 * knots[m] + 0.7 * cur[m] for m in knots})
    assert any(not torch.allclose(knots[m], cur[m], atol=1e-3) for m in knots)  # the branches really differ


@pytest.mark.parametrize("mode", ["auto-magnitude", "auto-energy"])
def test_hybrid_auto_alpha_per_layer(adapters, mode):
    knots = dense(merge(adapters, "knots_ties", top_k=20))
    cur = dense(merge(adapters, "cur_ties", top_k=20))
    power = 1 if mode == "auto-magnitude" else 2
    expected = {}
    for m in knots:
        a, b = knots[m].double().norm() ** power, cur[m].double().norm() ** power
        alpha = a / (a + b)
        expected[m] = alpha * knots[m].double() + (1 - alpha) * cur[m].double()
    assert_close(dense(merge(adapters, "hybrid", alpha=mode)), expected)


def test_mix_combines_any_two_methods(adapters):
    ta = dense(merge(adapters, "ta", lam=0.2))
    ties = dense(merge(adapters, "ties", lam=0.5, top_k=30))
    got = merge(
        adapters, "mix", first="ta", second="ties", alpha=0.25, **{"first.lam": 0.2, "second.lam": 0.5}, top_k=30
    )
    assert_close(dense(got), {m: 0.25 * ta[m] + 0.75 * ties[m] for m in ta})


def test_methods_are_permutation_equivariant_in_the_tasks(adapter_dirs):
    """Reordering the adapters leaves every deterministic merge unchanged (DARE masks follow the task index)."""
    forward = load_adapters(adapter_dirs)
    backward = load_adapters(list(reversed(adapter_dirs)))
    for method in ["ta", "ties", "knots_ties", "core_ties", "core_tsv", "core_iso", "cur_ties", "hybrid"]:
        assert_close(dense(merge(forward, method)), dense(merge(backward, method)))
