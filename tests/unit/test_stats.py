"""The statistics folder: writer and lazy reader round trip, laziness, every error naming its file, the CLI flag."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import loramerge.stats
from loramerge import merge
from loramerge.adapters import sha256_file
from loramerge.cli import main
from loramerge.errors import LoramergeError, StatisticsError
from loramerge.stats import FISHER, GRAM, Statistics, StatisticsInfo, adapter_weights_sha256, write_task_statistics

Q0 = "encoder.layers.0.self_attn.q_proj"  # 24 × 20 in conftest.SHAPES
INFO = StatisticsInfo(
    examples=12, counted=340, unit="tokens", split="train", split_sha256="ab" * 32, adapter_sha256="cd" * 32
)


def task_info(adapters, task: str, **changes) -> StatisticsInfo:
    """INFO for the adapter named `task`, its weights' sha256 recorded."""
    adapter = adapters.adapters[adapters.task_names.index(task)]
    return dataclasses.replace(INFO, adapter_sha256=adapter_weights_sha256(adapter), **changes)


def random_statistics(adapters, seed: int = 0) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """task -> kind -> module -> tensor: Gram matrices XᵀX of random inputs, positive Fisher values."""
    generator = torch.Generator().manual_seed(seed)
    statistics = {}
    for task in adapters.task_names:
        gram, fisher = {}, {}
        for module, stack in adapters.stacks.items():
            if adapters.task_names.index(task) not in stack.tasks:
                continue
            out_features, in_features = stack.shape
            inputs = torch.randn(30, in_features, generator=generator, dtype=torch.float64)
            gram[module] = inputs.T @ inputs
            fisher[module] = torch.rand(out_features, in_features, generator=generator)
        statistics[task] = {GRAM: gram, FISHER: fisher}
    return statistics


def write_statistics(folder: Path, adapters, seed: int = 0) -> Path:
    """A statistics folder of `adapters` holding `random_statistics`."""
    for task, tensors in random_statistics(adapters, seed).items():
        write_task_statistics(folder, task, tensors, task_info(adapters, task))
    return folder


@pytest.fixture
def statistics_dir(tmp_path, adapters) -> Path:
    return write_statistics(tmp_path / "stats", adapters)


def test_round_trip(adapters, statistics_dir):
    written = random_statistics(adapters)
    statistics = Statistics(statistics_dir, adapters)
    assert statistics.info == tuple(task_info(adapters, task) for task in adapters.task_names)
    for task, name in enumerate(adapters.task_names):
        for module in adapters.modules:
            gram, fisher = statistics.gram(task, module), statistics.fisher(task, module)
            assert gram.dtype == torch.float64 and fisher.dtype == torch.float32
            assert torch.equal(gram, written[name][GRAM][module])
            assert torch.equal(fisher, written[name][FISHER][module])
    assert json.loads((statistics_dir / "task0" / "stats.json").read_text()) == {
        "examples": 12,
        "counted": 340,
        "unit": "tokens",
        "split": "train",
        "split_sha256": "ab" * 32,
        "adapter_sha256": sha256_file(adapters.adapters[0].weights_file),
    }
    assert sorted(p.name for p in statistics_dir.iterdir()) == ["task0", "task1", "task2"]  # nothing staged left


def test_the_writer_casts_to_the_contract_dtypes_and_refuses_bad_tensors(tmp_path):
    gram32 = torch.eye(3, dtype=torch.float32)
    fisher64 = torch.ones(2, 3, dtype=torch.float64)
    write_task_statistics(tmp_path, "task", {GRAM: {"m": gram32}, FISHER: {"m": fisher64}}, INFO)
    assert load_file(tmp_path / "task" / "gram.safetensors")["m"].dtype == torch.float64
    assert load_file(tmp_path / "task" / "fisher.safetensors")["m"].dtype == torch.float32
    with pytest.raises(ValueError, match="must be square"):
        write_task_statistics(tmp_path, "other", {GRAM: {"m": torch.ones(2, 3)}}, INFO)
    with pytest.raises(ValueError, match="NaN or Inf"):
        write_task_statistics(tmp_path, "other", {FISHER: {"m": torch.tensor([[float("nan")]])}}, INFO)
    with pytest.raises(ValueError, match="unknown statistics kind 'hessian'"):
        write_task_statistics(tmp_path, "other", {"hessian": {"m": gram32}}, INFO)
    with pytest.raises(ValueError, match="split_sha256 must be 64"):
        write_task_statistics(tmp_path, "other", {}, StatisticsInfo(1, 1, "images", "train", "abc", "cd" * 32))
    with pytest.raises(ValueError, match="adapter_sha256 must be 64"):
        write_task_statistics(tmp_path, "other", {}, dataclasses.replace(INFO, adapter_sha256="CD" * 32))
    with pytest.raises(LoramergeError, match="already exists"):
        write_task_statistics(tmp_path, "task", {GRAM: {"m": gram32}}, INFO)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task"]


def test_a_kind_file_is_opened_only_when_a_tensor_of_it_is_asked_for(adapters, statistics_dir, monkeypatch):
    opened = []
    real_open = loramerge.stats.safe_open

    def recording_open(path, *args, **kwargs):
        opened.append(Path(path).relative_to(statistics_dir).as_posix())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(loramerge.stats, "safe_open", recording_open)
    for task in adapters.task_names:
        (statistics_dir / task / "fisher.safetensors").write_bytes(b"not a safetensors file")
    statistics = Statistics(statistics_dir, adapters)
    assert opened == []
    for module in adapters.modules:
        statistics.gram(1, module)
    assert opened == ["task1/gram.safetensors"]  # once, for every module
    with pytest.raises(StatisticsError, match=r"task1/fisher\.safetensors: unreadable safetensors file"):
        statistics.fisher(1, Q0)


def _rewrite(path: Path, module: str, tensor: torch.Tensor) -> None:
    tensors = load_file(path)
    tensors[module] = tensor
    save_file(tensors, path)


@pytest.mark.parametrize(
    ("kind", "tensor", "problem"),
    [
        (GRAM, torch.eye(19, dtype=torch.float64), r"shape \(19, 19\), expected \(20, 20\) from the adapters"),
        (FISHER, torch.ones(20, 24), r"shape \(20, 24\), expected \(24, 20\) from the adapters"),
        (GRAM, torch.eye(20, dtype=torch.float32), r"dtype F32, expected F64"),
        (FISHER, torch.ones(24, 20, dtype=torch.float64), r"dtype F64, expected F32"),
        (GRAM, torch.full((20, 20), float("nan"), dtype=torch.float64), r"NaN or Inf"),
        (FISHER, torch.full((24, 20), float("inf")), r"NaN or Inf"),
    ],
)
def test_a_bad_tensor_names_its_file_and_module(adapters, statistics_dir, kind, tensor, problem):
    path = statistics_dir / "task2" / f"{kind}.safetensors"
    _rewrite(path, Q0, tensor)
    statistics = Statistics(statistics_dir, adapters)
    statistics.tensor(kind, 0, Q0)  # another task's file is fine
    with pytest.raises(StatisticsError, match=rf"^{path}: {Q0}: {problem}"):
        statistics.tensor(kind, 2, Q0)


def test_a_missing_module_truncated_file_or_missing_kind_names_the_file(adapters, statistics_dir):
    gram = statistics_dir / "task0" / "gram.safetensors"
    tensors = load_file(gram)
    del tensors[Q0]
    save_file(tensors, gram)
    fisher = statistics_dir / "task1" / "fisher.safetensors"
    fisher.write_bytes(fisher.read_bytes()[:-40])
    (statistics_dir / "task2" / "gram.safetensors").unlink()
    statistics = Statistics(statistics_dir, adapters)
    with pytest.raises(StatisticsError, match=rf"^{gram}: no gram tensor for module '{Q0}'"):
        statistics.gram(0, Q0)
    with pytest.raises(StatisticsError, match=rf"^{fisher}: unreadable safetensors file"):
        statistics.fisher(1, Q0)
    with pytest.raises(StatisticsError, match=r"task2/gram\.safetensors: missing: no gram statistics"):
        statistics.gram(2, Q0)
    with pytest.raises(ValueError, match="has no module 'nope'"):
        statistics.gram(0, "nope")


def test_opening_checks_the_folder_and_every_task_info(adapters, statistics_dir, tmp_path):
    with pytest.raises(StatisticsError, match="statistics folder does not exist"):
        Statistics(tmp_path / "nowhere", adapters)
    info = statistics_dir / "task1" / "stats.json"
    bad = {"examples": 0, "counted": 3, "unit": "words", "split": "train", "split_sha256": "0", "adapter_sha256": 1}
    info.write_text(json.dumps(bad))
    problems = r"examples must be a positive integer.*unit must be one of.*adapter_sha256 must be 64"
    with pytest.raises(StatisticsError, match=rf"^{info}: {problems}"):
        Statistics(statistics_dir, adapters)
    info.write_text("{")
    with pytest.raises(StatisticsError, match=rf"^{info}: unreadable"):
        Statistics(statistics_dir, adapters)
    info.write_text(json.dumps({"examples": 1}))
    with pytest.raises(StatisticsError, match=rf"^{info}: expected a JSON object with keys"):
        Statistics(statistics_dir, adapters)
    info.unlink()
    with pytest.raises(StatisticsError, match=rf"^{info}: missing"):
        Statistics(statistics_dir, adapters)
    (statistics_dir / "task1").rename(tmp_path / "elsewhere")
    with pytest.raises(StatisticsError, match=rf"^{statistics_dir / 'task1'}: no statistics for this task"):
        Statistics(statistics_dir, adapters)


def test_statistics_of_another_adapter_are_refused_naming_both_hashes(adapter_dirs, statistics_dir):
    from conftest import SHAPES, random_factors, write_adapter

    from loramerge import load_adapters

    recorded = json.loads((statistics_dir / "task1" / "stats.json").read_text())["adapter_sha256"]
    write_adapter(adapter_dirs[1], random_factors(torch.Generator().manual_seed(99), SHAPES, 4))  # retrained
    retrained = load_adapters(adapter_dirs)
    now = sha256_file(retrained.adapters[1].weights_file)
    info = statistics_dir / "task1" / "stats.json"
    with pytest.raises(StatisticsError, match=rf"^{info}: computed for another adapter: adapter_sha256 is {recorded}"):
        Statistics(statistics_dir, retrained)
    with pytest.raises(StatisticsError, match=rf"{retrained.adapters[1].weights_file} has sha256 {now}$"):
        Statistics(statistics_dir, retrained)


def test_two_adapters_with_one_folder_name_are_refused(tmp_path, adapter_dirs, statistics_dir):
    from loramerge import load_adapters

    twin = tmp_path / "elsewhere" / "task0"
    twin.parent.mkdir()
    twin.symlink_to(adapter_dirs[1], target_is_directory=True)
    with pytest.raises(StatisticsError, match="share the name 'task0'"):
        Statistics(statistics_dir, load_adapters([adapter_dirs[0], twin]))


def test_the_api_opens_the_folder_it_is_given(adapters, statistics_dir, tmp_path):
    assert sorted(merge(adapters, "ta", statistics=statistics_dir)) == adapters.modules
    with pytest.raises(StatisticsError, match="statistics folder does not exist"):
        merge(adapters, "ta", statistics=tmp_path / "nowhere")


def test_cli_merge_records_the_statistics_or_exits_2_leaving_nothing(adapter_dirs, statistics_dir, tmp_path, capsys):
    out = tmp_path / "merged"
    args = ["merge", "--quiet", "--method", "ta", "--adapters", *map(str, adapter_dirs), "--out", str(out)]
    assert main([*args, "--statistics", str(statistics_dir)]) == 0
    recorded = json.loads((out / "merge.json").read_text())["statistics"]
    assert recorded["path"] == str(statistics_dir)
    assert recorded["tasks"]["task2"]["split_sha256"] == "ab" * 32

    (statistics_dir / "task2").rename(tmp_path / "moved")
    out = tmp_path / "outputs" / "merged"
    args[-1] = str(out)
    assert main([*args, "--statistics", str(statistics_dir)]) == 2
    assert f"{statistics_dir / 'task2'}: no statistics for this task" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()
