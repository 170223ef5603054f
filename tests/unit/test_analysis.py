"""Subspace overlap (eq. 12–13) and projected energy (eq. 14–15) against dense computations on M."""

from __future__ import annotations

import csv

import pytest
import torch

from loramerge.bases.analysis import energies, overlaps
from loramerge.cli import main


def dense_projectors(stack, rank):
    M = torch.cat([b.double() @ a.double() for a, b in zip(stack.A, stack.B, strict=True)], dim=1)
    Q1 = torch.linalg.svd(M, full_matrices=False).U[:, :rank]
    columns = torch.sort(M.norm(dim=0), descending=True, stable=True).indices[:rank]
    Q2 = torch.linalg.qr(M[:, columns]).Q
    return Q1, Q2


@pytest.mark.parametrize("rank", [2, 4])
def test_overlap_is_the_mean_squared_cosine(adapters, rank):
    for result in overlaps(adapters, rank):
        Q1, Q2 = dense_projectors(adapters.stacks[result.module], rank)
        expected = float((Q1.T @ Q2).norm() ** 2 / rank)
        assert result.overlap == pytest.approx(expected, abs=1e-9)
        assert 0 < result.overlap < 1


def test_energy_per_task_sums_the_projected_norms(adapters):
    rank = 4
    expected = torch.zeros(len(adapters), 3, dtype=torch.float64)
    for stack in adapters.stacks.values():
        Q1, Q2 = dense_projectors(stack, rank)
        for task, a, b in zip(stack.tasks, stack.A, stack.B, strict=True):
            delta = b.double() @ a.double()
            expected[task] += torch.stack([delta.norm() ** 2, (Q1.T @ delta).norm() ** 2, (Q2.T @ delta).norm() ** 2])
    for row, energy in zip(expected, energies(adapters, rank), strict=True):
        assert (energy.original, energy.svd, energy.cur) == pytest.approx(row.tolist(), rel=1e-9)
        assert 0 < energy.svd_ratio <= 1 and 0 < energy.cur_ratio <= 1


def test_full_rank_projection_keeps_all_energy(adapters):
    full = sum(adapters.stacks[next(iter(adapters.stacks))].ranks)
    assert all(e.svd_ratio == pytest.approx(1.0) for e in energies(adapters, full))


def test_analyze_writes_both_tables(adapter_dirs, tmp_path):
    out = tmp_path / "analysis"
    assert main(["analyze", "--adapters", *map(str, adapter_dirs), "--out", str(out), "--rank", "3"]) == 0
    with open(out / "overlap.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(row["rank"] == "3" for row in rows)
    with open(out / "energy.csv") as handle:
        assert [row["task"] for row in csv.DictReader(handle)] == ["task0", "task1", "task2"]
