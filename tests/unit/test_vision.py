"""The vision demo suite: generated tasks, split files, the tiny CLIP backbone, LoRA fine-tuning and evaluation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import save_file

from loramerge.adapters import load_adapter
from loramerge.apply import UpdateError, apply_update, load_update, updated
from loramerge.errors import AdapterError, LoramergeError
from loramerge.repro.heads import HEAD_FILE, load_head
from loramerge.repro.splits import DataError, load_split, save_split
from loramerge.repro.suites.clip.model import (
    ModelError,
    build_backbone,
    encode,
    load_backbone,
    preprocess,
    save_backbone,
)
from loramerge.repro.suites.demo_vision.data import TASK_SOURCES, digits_split_indices, make_pretrain_mixture, make_task
from loramerge.repro.suites.demo_vision.suite import DemoVisionSuite
from loramerge.repro.suites.demo_vision.train import evaluate_adapter, finetune_lora, pretrain, save_task_adapter
from loramerge.repro.suites.evaluation import EvalTask, count_correct, evaluate

PREFIXES = DemoVisionSuite.module_prefixes

IMAGE_SIZE = 16
TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": 8,
    "projection_dim": 16,
}
TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@pytest.fixture(scope="module")
def backbone_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vision") / "backbone"
    save_backbone(build_backbone(TINY, seed=0), folder)
    return folder


@pytest.fixture(scope="module")
def textures() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return make_task("textures", {"train": 48, "test": 24}, IMAGE_SIZE, seed=0).splits


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory: pytest.TempPathFactory, backbone_folder: Path, textures) -> Path:
    images, labels = textures["train"]
    peft_model, head, stats = finetune_lora(
        backbone_folder, images, labels, 6, rank=2, lora_alpha=4, target_modules=TARGETS, steps=4, batch_size=16,
        lr=1e-2, seed=0, progress=False,
    )  # fmt: skip
    assert set(stats) >= {"final_loss", "train_accuracy"}
    folder = tmp_path_factory.mktemp("vision") / "adapter"
    save_task_adapter(peft_model, head, [f"c{k}" for k in range(6)], folder, {"task": "textures"})
    return folder


# --------------------------------------------------------------------------------------------- generators


@pytest.mark.parametrize("source", sorted(TASK_SOURCES))
def test_generators_are_deterministic_and_cover_every_class(source: str) -> None:
    sizes = {"train": 120, "test": 20}
    first, again = make_task(source, sizes, IMAGE_SIZE, seed=3), make_task(source, sizes, IMAGE_SIZE, seed=3)
    other = make_task(source, sizes, IMAGE_SIZE, seed=4)
    assert list(first.splits) == ["train", "test"]
    n_classes = len(first.class_names)
    for split, count in sizes.items():
        images, labels = first.splits[split]
        assert images.dtype == torch.uint8 and images.shape == (count, 3, IMAGE_SIZE, IMAGE_SIZE)
        assert labels.dtype == torch.int64 and labels.shape == (count,)
        assert int(labels.min()) >= 0 and int(labels.max()) < n_classes
        assert images.numpy().tobytes() == again.splits[split][0].numpy().tobytes()
        assert torch.equal(labels, again.splits[split][1])
        assert not torch.equal(images, other.splits[split][0])
    assert set(first.splits["train"][1].tolist()) == set(range(n_classes))
    assert images.float().std() > 10  # not a blank canvas


def test_a_split_does_not_change_when_another_split_grows() -> None:
    small = make_task("shapes", {"train": 10, "test": 8}, IMAGE_SIZE, seed=0)
    large = make_task("shapes", {"test": 8, "train": 30}, IMAGE_SIZE, seed=0)
    assert torch.equal(small.splits["test"][0], large.splits["test"][0])


def test_digit_splits_have_the_requested_sizes_and_are_disjoint() -> None:
    sizes = {"train": 500, "val": 100, "test": 300}
    indices = digits_split_indices(sizes, seed=0)
    assert {split: len(chosen) for split, chosen in indices.items()} == sizes
    assert len(np.unique(np.concatenate(list(indices.values())))) == sum(sizes.values())
    assert np.array_equal(digits_split_indices(dict(reversed(sizes.items())), seed=0)["test"], indices["test"])
    task = make_task("digits", sizes, IMAGE_SIZE, seed=0)
    assert {split: len(labels) for split, (_, labels) in task.splits.items()} == sizes


def test_unknown_source_and_too_many_digits_are_named() -> None:
    with pytest.raises(DataError, match="no-such-task"):
        make_task("no-such-task", {"train": 4}, IMAGE_SIZE, seed=0)
    with pytest.raises(DataError, match=r"^digits: .*1800 .*1797"):
        make_task("digits", {"train": 1500, "test": 300}, IMAGE_SIZE, seed=0)
    with pytest.raises(LoramergeError, match="'test'"):
        make_task("shapes", {"test": 0}, IMAGE_SIZE, seed=0)


def test_pretrain_mixture_uses_pretext_labels_and_its_own_images() -> None:
    sources = ["shapes", "counts"]
    images, labels, names = make_pretrain_mixture(sources, 20, IMAGE_SIZE, seed=0)
    again, _, _ = make_pretrain_mixture(sources, 20, IMAGE_SIZE, seed=0)
    assert images.shape == (40, 3, IMAGE_SIZE, IMAGE_SIZE) and torch.equal(images, again)
    assert names == [f"{s}/rot{d}" for s in sources for d in (0, 90, 180, 270)]
    assert set(labels.tolist()) == set(range(8))
    task_images = make_task("shapes", {"pretrain": 20}, IMAGE_SIZE, seed=0).splits["pretrain"][0]
    assert not any(torch.equal(image, other) for image in images for other in task_images)


# --------------------------------------------------------------------------------------------- split files


def test_split_file_round_trip(tmp_path: Path, textures) -> None:
    images, labels = textures["test"]
    path = tmp_path / "splits" / "test.safetensors"
    save_split(path, images, labels, [f"c{k}" for k in range(6)], {"source": "textures"})
    loaded_images, loaded_labels, names = load_split(path)
    assert torch.equal(loaded_images, images) and torch.equal(loaded_labels, labels)
    assert names == [f"c{k}" for k in range(6)]
    assert [p.name for p in path.parent.iterdir()] == ["test.safetensors"]


def test_corrupt_or_mismatched_split_files_are_named(tmp_path: Path, textures) -> None:
    images, labels = textures["test"]
    path = tmp_path / "test.safetensors"
    save_split(path, images, labels, [f"c{k}" for k in range(6)])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: unreadable")):
        load_split(path)
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "missing.safetensors")
    few_classes = tmp_path / "few.safetensors"
    save_file({"images": images, "labels": labels}, few_classes, metadata={"class_names": json.dumps(["a", "b"])})
    with pytest.raises(DataError, match="^" + re.escape(f"{few_classes}: labels must lie in")):
        load_split(few_classes)
    with pytest.raises(DataError, match="uint8"):
        save_split(tmp_path / "float.safetensors", images.float(), labels, ["a"] * 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few.safetensors", "test.safetensors"]


# --------------------------------------------------------------------------------------------- backbone


def test_backbone_round_trip_and_seeded_init(tmp_path: Path, backbone_folder: Path, textures) -> None:
    images = textures["test"][0]
    built, loaded = build_backbone(TINY, seed=0), load_backbone(backbone_folder)
    # The round trip is bit-exact at one batch size; across batch sizes the matmul blocking may differ in the last
    # float32 bit on some CPUs, so batch-size independence holds to rounding only.
    assert torch.equal(encode(built, images, batch_size=10), encode(loaded, images, batch_size=10))
    torch.testing.assert_close(encode(loaded, images, batch_size=7), encode(loaded, images, batch_size=10))
    other = build_backbone(TINY, seed=1)
    assert not torch.equal(built.visual_projection.weight, other.visual_projection.weight)
    features = encode(loaded, images, batch_size=64)
    assert features.dtype == torch.float32 and features.shape == (24, TINY["projection_dim"])
    torch.testing.assert_close(features.norm(dim=1), torch.ones(24))
    assert preprocess(images).dtype == torch.float32
    with pytest.raises(ModelError, match=r"missing config\.json"):
        load_backbone(tmp_path)


def test_pretrain_changes_the_backbone_and_reports_stats(textures) -> None:
    model = build_backbone(TINY, seed=0)
    before = model.visual_projection.weight.clone()
    images, labels = textures["train"]
    stats = pretrain(model, images, labels, 6, steps=3, batch_size=16, lr=1e-3, seed=0, progress=False)
    assert stats["steps"] == 3 and 0.0 <= stats["train_accuracy"] <= 1.0 and stats["final_loss"] > 0
    assert not torch.equal(before, model.visual_projection.weight) and not model.training


# --------------------------------------------------------------------------------------------- adapters and updates


def test_task_adapter_loads_with_loramerge_and_peft(adapter_folder: Path, backbone_folder: Path, textures) -> None:
    assert sorted(p.name for p in adapter_folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        HEAD_FILE,
    ]
    adapter = load_adapter(adapter_folder)
    assert len(adapter.modules) == 4 * TINY["num_hidden_layers"]
    assert "vision_model.encoder.layers.0.self_attn.q_proj" in adapter.modules
    head, names = load_head(adapter_folder / HEAD_FILE)
    assert head.shape == (6, TINY["projection_dim"]) and names == [f"c{k}" for k in range(6)]
    torch.testing.assert_close(head.norm(dim=1), torch.ones(6))

    images = textures["test"][0]
    peft_model = PeftModel.from_pretrained(load_backbone(backbone_folder), adapter_folder)
    expected = encode(peft_model, images)
    model = load_backbone(backbone_folder)
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    update = load_update(adapter_folder)
    with updated(model, update, 1.0, PREFIXES):
        torch.testing.assert_close(encode(model, images), expected, atol=1e-5, rtol=1e-4)
    assert all(torch.equal(original[name], tensor) for name, tensor in model.state_dict().items())
    apply_update(model, update, 1.0, PREFIXES)
    torch.testing.assert_close(encode(model, images), expected, atol=1e-5, rtol=1e-4)


def test_dense_delta_folders_and_bad_updates(tmp_path: Path, backbone_folder: Path) -> None:
    module = "vision_model.encoder.layers.0.self_attn.v_proj"
    delta = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
    folder = tmp_path / "merged"
    folder.mkdir()
    save_file({f"{module}.weight": delta}, folder / "delta.safetensors")
    update = load_update(folder)
    assert list(update) == [module] and torch.equal(update[module], delta)

    model = load_backbone(backbone_folder)
    weight = model.get_submodule(module).weight
    before = weight.clone()
    apply_update(model, update, 0.5, PREFIXES)
    torch.testing.assert_close(weight, before + 0.5 * delta)
    with pytest.raises(UpdateError, match=r"encoder\.layers\.7\.self_attn\.q_proj"):
        apply_update(model, {"vision_model.encoder.layers.7.self_attn.q_proj": delta}, 1.0, PREFIXES)
    with pytest.raises(UpdateError, match=re.escape(f"{module}: update has shape")):
        apply_update(model, {module: delta[:, :3]}, 1.0, PREFIXES)
    with pytest.raises(UpdateError, match="neither a peft adapter"):
        load_update(tmp_path)
    (folder / "delta.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(AdapterError, match=r"delta\.safetensors: unreadable"):
        load_update(folder)


# --------------------------------------------------------------------------------------------- evaluation


def test_count_correct_by_hand() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    head = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # predictions: 0, 1, 1, 1 (the last row scores 0 for class 1 and -1 for class 0)
    assert count_correct(features, head, torch.tensor([0, 1, 0, 1])) == 3
    assert count_correct(features, head, torch.tensor([1, 0, 1, 0])) == 1


def test_evaluate_sweeps_scales_and_restores_weights(adapter_folder: Path, backbone_folder: Path, textures) -> None:
    head, _ = load_head(adapter_folder / HEAD_FILE)
    images, labels = textures["test"]
    tasks = [
        EvalTask("textures", "test", images, labels, head),
        EvalTask("half", "test", images[:10], labels[:10], head),
    ]
    model = load_backbone(backbone_folder)
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    records = evaluate(DemoVisionSuite, model, tasks, [0.0, 0.5, 1.0], load_update(adapter_folder))
    assert [(r["lam"], r["task"]) for r in records] == [
        (lam, t) for lam in (0.0, 0.5, 1.0) for t in ("textures", "half")
    ]
    assert all(torch.equal(original[name], tensor) for name, tensor in model.state_dict().items())
    base = evaluate(DemoVisionSuite, model, tasks, [0.0], None)
    assert [r["correct"] for r in base] == [r["correct"] for r in records[:2]]
    assert records[0]["total"] == 24 and records[0]["accuracy"] == records[0]["correct"] / 24
    single = evaluate_adapter(backbone_folder, adapter_folder, "textures", "test", images, labels)
    assert single == records[4]


def test_short_finetune_beats_chance(backbone_folder: Path) -> None:
    splits = make_task("textures", {"train": 400, "test": 160}, IMAGE_SIZE, seed=1).splits
    images, labels = splits["train"]
    peft_model, head, _ = finetune_lora(
        backbone_folder, images, labels, 6, rank=4, lora_alpha=8, target_modules=TARGETS, steps=200, batch_size=32,
        lr=1e-2, seed=0, progress=False,
    )  # fmt: skip
    test_images, test_labels = splits["test"]
    accuracy = count_correct(encode(peft_model, test_images), head, test_labels) / len(test_labels)
    assert accuracy > 0.4  # chance is 1/6
