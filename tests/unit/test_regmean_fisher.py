"""RegMean and Fisher merging against their dense definitions, over statistics folders written as the workflow does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dense_reference as ref
import pytest
import torch
from conftest import SHAPES, random_factors, write_adapter
from safetensors.torch import load_file, save_file

from loramerge import load_adapters, merge
from loramerge.cli import main
from loramerge.errors import ParameterError, StatisticsError
from loramerge.stats import FISHER, GRAM, StatisticsInfo, adapter_weights_sha256, write_task_statistics

V1 = "encoder.layers.1.self_attn.v_proj"  # the module that mixed_adapters' third adapter lacks
ROWS = (25, 40, 60)  # input rows per task: unequal, so that the per-row mean Gram differs from the sum


@dataclasses.dataclass
class Written:
    """A statistics folder and what was written into it: task -> module -> tensor, and each task's row count."""

    folder: Path
    grams: dict[int, dict[str, torch.Tensor]]
    fishers: dict[int, dict[str, torch.Tensor]]
    rows: tuple[int, ...]


def info(adapter, rows: int) -> StatisticsInfo:
    return StatisticsInfo(
        examples=rows // 5,
        counted=rows,
        unit="tokens",
        split="train",
        split_sha256="ab" * 32,
        adapter_sha256=adapter_weights_sha256(adapter),
    )


def write_folder(folder: Path, adapters, inputs=None, fishers=None, rows=ROWS, seed: int = 0) -> Written:
    """Grams XᵀX of `inputs(task, module, in_features)` (default: random X with rows[task] rows) and Fishers
    `fishers(task, module, shape)` (default: random positive), for every module each adapter has."""
    generator = torch.Generator().manual_seed(seed)

    def random_inputs(task, module, in_features):
        return torch.randn(rows[task], in_features, generator=generator, dtype=torch.float64)

    def random_fisher(task, module, shape):
        return torch.rand(shape, generator=generator) ** 2

    inputs, fishers = inputs or random_inputs, fishers or random_fisher
    written = Written(folder, {}, {}, rows)
    for task, adapter in enumerate(adapters.adapters):
        grams, task_fishers = {}, {}
        for module, lora in sorted(adapter.modules.items()):
            X = inputs(task, module, lora.shape[1])
            grams[module] = X.T @ X
            task_fishers[module] = fishers(task, module, lora.shape).float()
        write_task_statistics(folder, adapter.name, {GRAM: grams, FISHER: task_fishers}, info(adapter, rows[task]))
        written.grams[task], written.fishers[task] = grams, task_fishers
    return written


def dense_regmean(adapters, written: Written, lam: float, off_diagonal: float) -> dict[str, torch.Tensor]:
    """λ·(Σ_t ΔW_t·G̃_t)·inv(Σ_t G̃_t), G̃_t = a·G_t + (1−a)·Diag(G_t), G_t = X_tᵀX_t / rows_t."""
    result = {}
    for module, per_task in ref.deltas(adapters).items():
        products, total = 0, 0
        for task, delta in per_task.items():
            G = written.grams[task][module] / written.rows[task]
            regularised = off_diagonal * G + (1 - off_diagonal) * torch.diag(torch.diag(G))
            products = products + delta.double() @ regularised
            total = total + regularised
        result[module] = lam * products @ torch.linalg.inv(total)
    return result


def dense_fisher(adapters, written: Written, lam: float, normalize: bool, min_fisher: float):
    """λ·Σ_t c_t·(F_t + ε)⊙ΔW_t / Σ_t c_t·(F_t + ε), c_t ∝ 1/(‖F_t‖ + ε) over all of task t's modules."""
    weights = {task: 1.0 for task in written.fishers}
    if normalize:
        norms = {
            task: torch.cat([f.double().flatten() for f in per_module.values()]).norm()
            for task, per_module in written.fishers.items()
        }
        inverse = {task: 1 / (norm + min_fisher) for task, norm in norms.items()}
        weights = {task: value / sum(inverse.values()) for task, value in inverse.items()}
    result = {}
    for module, per_task in ref.deltas(adapters).items():
        fishers = {t: weights[t] * (written.fishers[t][module].double() + min_fisher) for t in per_task}
        numerator = sum(fishers[t] * per_task[t].double() for t in per_task)
        result[module] = lam * numerator / sum(fishers.values())
    return result


def assert_close(updates, expected) -> None:
    assert sorted(updates) == sorted(expected)
    for module, update in updates.items():
        assert update.rank is None and update.dense().dtype == torch.float32  # dense results
        torch.testing.assert_close(update.dense().double(), expected[module], rtol=1e-5, atol=1e-5, msg=module)


@pytest.mark.parametrize(("lam", "off_diagonal"), [(1.0, 0.95), (0.6, 1.0), (1.3, 0.2)])
def test_regmean_matches_its_dense_definition(mixed_adapters, tmp_path, lam, off_diagonal):
    written = write_folder(tmp_path / "stats", mixed_adapters)
    updates = merge(mixed_adapters, "regmean", statistics=written.folder, lam=lam, off_diagonal=off_diagonal)
    assert_close(updates, dense_regmean(mixed_adapters, written, lam, off_diagonal))


@pytest.mark.parametrize(("lam", "normalize", "min_fisher"), [(1.0, True, 1e-6), (0.7, False, 1e-6), (1.2, True, 0.05)])
def test_fisher_matches_its_dense_definition(mixed_adapters, tmp_path, lam, normalize, min_fisher):
    written = write_folder(tmp_path / "stats", mixed_adapters)
    params = {"lam": lam, "normalize": normalize, "min_fisher": min_fisher}
    updates = merge(mixed_adapters, "fisher", statistics=written.folder, **params)
    assert_close(updates, dense_fisher(mixed_adapters, written, lam, normalize, min_fisher))


def test_fisher_normalisation_changes_the_merge_when_the_tasks_fishers_differ_in_scale(adapters, tmp_path):
    generator = torch.Generator().manual_seed(1)

    def scaled_by_task(task, module, shape):
        return torch.rand(shape, generator=generator) * 10**task

    written = write_folder(tmp_path / "stats", adapters, fishers=scaled_by_task)
    normalized = merge(adapters, "fisher", statistics=written.folder)
    plain = merge(adapters, "fisher", statistics=written.folder, normalize="false")
    assert not torch.allclose(normalized[V1].dense(), plain[V1].dense(), rtol=1e-3)


def ta_mean(adapters, lam: float) -> dict[str, torch.Tensor]:
    return {module: u.dense().double() for module, u in merge(adapters, "ta", lam=lam, mode="mean").items()}


def test_regmean_with_one_gram_for_every_task_is_the_mean(mixed_adapters, tmp_path):
    generator = torch.Generator().manual_seed(2)
    shared = {m: torch.randn(50, shape[1], generator=generator, dtype=torch.float64) for m, shape in SHAPES.items()}
    written = write_folder(tmp_path / "stats", mixed_adapters, inputs=lambda t, m, i: shared[m], rows=(50,) * 3)
    assert_close(merge(mixed_adapters, "regmean", statistics=written.folder, lam=0.8), ta_mean(mixed_adapters, 0.8))


@pytest.mark.parametrize("normalize", [True, False])
def test_fisher_with_one_fisher_for_every_task_is_the_mean(adapters, mixed_adapters, tmp_path, normalize):
    generator = torch.Generator().manual_seed(3)
    shared = {module: torch.rand(shape, generator=generator) for module, shape in SHAPES.items()}
    # normalised weights are equal only when every task has every module; without normalising, any set will do
    chosen = adapters if normalize else mixed_adapters
    written = write_folder(tmp_path / "stats", chosen, fishers=lambda task, module, shape: shared[module])
    updates = merge(chosen, "fisher", statistics=written.folder, lam=0.8, normalize=normalize)
    assert_close(updates, ta_mean(chosen, 0.8))


def test_a_singular_gram_sum_is_an_error_naming_the_module_and_folder(adapters, tmp_path):
    few_rows = write_folder(tmp_path / "few", adapters, rows=(5, 5, 5))  # 15 rows < 20 input features
    with pytest.raises(StatisticsError, match=rf"^{few_rows.folder}: encoder.layers.0.self_attn.q_proj: .*singular"):
        merge(adapters, "regmean", statistics=few_rows.folder, off_diagonal=1.0)
    assert all(torch.isfinite(u.dense()).all() for u in merge(adapters, "regmean", statistics=few_rows.folder).values())

    generator = torch.Generator().manual_seed(4)

    def dead_feature(task, module, in_features):  # input feature 3 of the second block's v_proj is never active
        X = torch.randn(30, in_features, generator=generator, dtype=torch.float64)
        if module == V1:
            X[:, 3] = 0
        return X

    dead = write_folder(tmp_path / "dead", adapters, inputs=dead_feature)
    with pytest.raises(StatisticsError, match=rf"^{dead.folder}: {V1}: .*singular"):
        merge(adapters, "regmean", statistics=dead.folder)
    out = tmp_path / "outputs" / "merged"
    args = ["merge", "--quiet", "--method", "regmean", "--adapters", *(str(a.path) for a in adapters.adapters)]
    assert main([*args, "--out", str(out), "--statistics", str(dead.folder)]) == 2
    assert not (tmp_path / "outputs").exists()


def test_zero_fisher_without_min_fisher_is_an_error_not_nan(adapters, tmp_path):
    generator = torch.Generator().manual_seed(5)

    def zero_entry(task, module, shape):
        fisher = torch.rand(shape, generator=generator) + 0.1
        fisher[0, 0] = 0
        return fisher

    zeros = write_folder(tmp_path / "zeros", adapters, fishers=zero_entry)
    with pytest.raises(StatisticsError, match=rf"^{zeros.folder}: encoder.layers.0.self_attn.q_proj: .*0/0"):
        merge(adapters, "fisher", statistics=zeros.folder, min_fisher=0)
    assert all(torch.isfinite(u.dense()).all() for u in merge(adapters, "fisher", statistics=zeros.folder).values())

    def zero_for_task1(task, module, shape):
        return torch.zeros(shape) if task == 1 else torch.rand(shape, generator=generator)

    empty = write_folder(tmp_path / "empty", adapters, fishers=zero_for_task1)
    with pytest.raises(StatisticsError, match=rf"^{empty.folder / 'task1'}: the Fisher is zero in every module"):
        merge(adapters, "fisher", statistics=empty.folder, min_fisher=0)


@pytest.mark.parametrize("method", ["regmean", "fisher"])
def test_a_merge_without_statistics_asks_for_them(adapters, method):
    with pytest.raises(ParameterError, match=rf"method '{method}' reads per-task statistics: give a folder"):
        merge(adapters, method)


def _drop_module(folder: Path, kind: str) -> Path:
    path = folder / "task1" / f"{kind}.safetensors"
    tensors = load_file(path)
    del tensors[V1]
    save_file(tensors, path)
    return path


def _reshape_module(folder: Path, kind: str) -> Path:
    path = folder / "task2" / f"{kind}.safetensors"
    tensors = load_file(path)
    tensors[V1] = tensors[V1][:-1]
    save_file(tensors, path)
    return path


def _drop_task(folder: Path, kind: str) -> Path:
    (folder / "task0").rename(folder.parent / "moved")
    return folder / "task0"


def _retrain_adapter(folder: Path, kind: str) -> Path:
    adapter = folder.parent / "adapters" / "task1"
    write_adapter(adapter, random_factors(torch.Generator().manual_seed(99), SHAPES, 4))
    return folder / "task1" / "stats.json"


@pytest.mark.parametrize("method", ["regmean", "fisher"])
@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_drop_module, f"no (gram|fisher) tensor for module '{V1}'"),
        (_reshape_module, rf"{V1}: shape \(\d+, 20\), expected"),
        (_drop_task, "no statistics for this task"),
        (_retrain_adapter, "computed for another adapter: adapter_sha256 is [0-9a-f]{64}, but .* has sha256"),
    ],
)
def test_a_damaged_folder_stops_the_merge_naming_the_file(adapter_dirs, tmp_path, method, damage, problem):
    folder = write_folder(tmp_path / "stats", load_adapters(adapter_dirs)).folder
    kind = GRAM if method == "regmean" else FISHER
    path = damage(folder, kind)
    with pytest.raises(StatisticsError, match=rf"^{path}: {problem}"):
        merge(load_adapters(adapter_dirs), method, statistics=folder)


def test_cli_regmean_writes_the_delta_and_records_the_statistics(adapter_dirs, tmp_path):
    adapters = load_adapters(adapter_dirs)
    folder = write_folder(tmp_path / "stats", adapters).folder
    out = tmp_path / "merged"
    args = ["merge", "--quiet", "--method", "regmean", "--adapters", *map(str, adapter_dirs), "--out", str(out)]
    assert main([*args, "--lam", "0.5", "--set", "off_diagonal=0.9", "--statistics", str(folder)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["delta.safetensors", "merge.json"]
    expected = merge(adapters, "regmean", statistics=folder, lam=0.5, off_diagonal=0.9)
    deltas = load_file(out / "delta.safetensors")
    assert sorted(deltas) == [f"{module}.weight" for module in adapters.modules]
    for module, update in expected.items():
        assert torch.equal(deltas[f"{module}.weight"], update.dense())
    manifest = json.loads((out / "merge.json").read_text())
    assert manifest["method"] == {"method": "regmean", "lam": 0.5, "off_diagonal": 0.9}
    assert manifest["format"] == "delta"
    recorded = manifest["statistics"]
    assert recorded["path"] == str(folder)
    for task, adapter in enumerate(adapters.adapters):
        assert recorded["tasks"][adapter.name] == dataclasses.asdict(info(adapter, ROWS[task]))
        assert recorded["tasks"][adapter.name]["adapter_sha256"] == adapter.sha256["adapter_model.safetensors"]
