"""An offline stand-in for the paper suite's downloads: a Hugging Face hub cache in the hub's on-disk layout holding
a tiny CLIP model, tiny KnOTS-style adapters (pickled, peft 0.3.0 key names) and tiny parquet image datasets (each
with a train split, which the statistics of the data-using merges read), plus KnOTS-style permutation files behind
file:// URLs, and a suite config pointing at them.

Layout of a cached repository (what `huggingface_hub` reads with HF_HUB_OFFLINE=1)::

    <cache>/<models|datasets>--<org>--<name>/refs/main                  the commit id
    <cache>/<models|datasets>--<org>--<name>/blobs/<sha256>             file contents
    <cache>/<models|datasets>--<org>--<name>/snapshots/<commit>/<file>  -> ../../blobs/<sha256>
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn")
IMAGE_SIZE = 32
TEST_ROWS = 40  # permutation tasks: the first 8 of the permutation are validation, 32 test
VAL_ROWS = 12  # official and release-complement validation splits
TRAIN_ROWS = 20  # every task's train split (EuroSAT's release reconstruction and the statistics read it)
CLASSES = 5  # per stand-in task (digits: 10), so an untrained tiny model scores above zero


def _commit(repo_id: str) -> str:
    return hashlib.sha1(repo_id.encode()).hexdigest()


def write_repo(cache: Path, repo_type: str, repo_id: str, files: dict[str, bytes]) -> str:
    """One repository in the hub cache layout; returns its commit id."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    commit = _commit(repo_id)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, content in files.items():
        blob = folder / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return commit


class LocalHub:
    """A `loramerge.repro.hub.HubClient` over the cache layout, for `lock_suite` (which needs the hub's listing)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def _folder(self, repo_id: str, repo_type: str) -> Path:
        return self.cache / f"{repo_type}s--{repo_id.replace('/', '--')}"

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]:
        folder = self._folder(repo_id, repo_type)
        commit = (folder / "refs" / revision).read_text()
        snapshot = folder / "snapshots" / commit
        return commit, sorted(str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if path.is_file())

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str, force_download: bool = False) -> str:
        # a local cache has nothing to fetch again: a forced download reads the same (possibly tampered) file
        return str(self._folder(repo_id, repo_type) / "snapshots" / revision / filename)


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _tiny_clip(scratch: Path) -> tuple[dict[str, bytes], Any]:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    # a character-level CLIP BPE vocabulary (no merges): every byte symbol, alone and word-final, and the specials
    symbols = sorted(ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({f"{symbol}</w>": len(symbols) + index for index, symbol in enumerate(symbols)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": len(vocab),
            "max_position_embeddings": 256,  # character-level tokens: long prompts
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=IMAGE_SIZE)
    processor.save_pretrained(scratch)
    files = {
        "config.json": config.to_json_string().encode(),
        "pytorch_model.bin": _torch_bytes(model.state_dict()),
        "preprocessor_config.json": (scratch / "preprocessor_config.json").read_bytes(),
        "vocab.json": json.dumps(vocab).encode(),
        "merges.txt": b"#version: 0.2\n",
    }
    return files, model


def _adapter(model: Any, task_index: int) -> dict[str, bytes]:
    """A rank-4 LoRA on q/k/v/out_proj of the vision tower, saved as peft 0.3.0 did (pickled, no adapter name)."""
    generator = torch.Generator().manual_seed(100 + task_index)
    state = {}
    for layer in range(model.config.vision_config.num_hidden_layers):
        for module in ("q_proj", "k_proj", "v_proj", "out_proj"):
            prefix = f"base_model.model.encoder.layers.{layer}.self_attn.{module}"
            state[f"{prefix}.lora_A.weight"] = torch.randn(4, 32, generator=generator) * 0.3
            state[f"{prefix}.lora_B.weight"] = torch.randn(32, 4, generator=generator) * 0.3
    config = {
        "r": 4,
        "lora_alpha": 4,
        "lora_dropout": 0.1,
        "bias": "none",
        "target_modules": ["q_proj", "k_proj", "v_proj", "out_proj"],
        "task_type": None,
        "peft_type": "LORA",
        "base_model_name_or_path": None,
    }
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.bin": _torch_bytes(state),
        "README.md": b"x",
    }


def _images(rows: int, seed: int, n_classes: int) -> tuple[list[Any], list[int]]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, rows)
    images = []
    for label in labels:
        # non-square, varied sizes, so resizing and centre cropping are exercised
        height, width = int(rng.integers(36, 48)), int(rng.integers(32, 60))
        pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8) + np.uint8(40 * label)
        images.append(Image.fromarray(pixels))
    return images, labels.tolist()


def parquet_bytes(scratch: Path, images: list[Any], labels: list[int], names: list[str], name: str) -> bytes:
    """A parquet image dataset as the hub stores one: PNG-encoded images, labels with their ClassLabel names."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    dataset = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    path = scratch / f"{name}.parquet"
    dataset.to_parquet(str(path))
    return path.read_bytes()


def _parquet(scratch: Path, rows: int, seed: int, names: list[str]) -> bytes:
    return parquet_bytes(scratch, *_images(rows, seed, len(names)), names, f"data-{seed}")


def _release_complement(scratch: Path, seed: int, names: list[str], release_names: list[str]) -> dict[str, bytes]:
    """EuroSAT's layout: train and test in the task's repository, and the full release (train + test + the VAL_ROWS
    validation images, shuffled, labels spelled as the release spells them) in another."""
    train, test, val = (
        _images(rows, seed + offset, len(names)) for offset, rows in enumerate((TRAIN_ROWS, TEST_ROWS, VAL_ROWS))
    )
    images, labels = train[0] + test[0] + val[0], train[1] + test[1] + val[1]
    order = np.random.default_rng(seed).permutation(len(images))
    return {
        "train": parquet_bytes(scratch, *train, names, f"train-{seed}"),
        "test": parquet_bytes(scratch, *test, names, f"test-{seed}"),
        "release": parquet_bytes(
            scratch, [images[i] for i in order], [labels[i] for i in order], release_names, f"release-{seed}"
        ),
    }


def build(root: Path, lock_path: Path) -> dict[str, Any]:
    """The fake hub under `root` and a paper-vit-b32 config that reads it (λ grids and merges cut down)."""
    from loramerge.repro.hub import lock_suite, write_lock

    cache, scratch, permutations = root / "hub", root / "scratch", root / "knots" / "rev0"
    for folder in (cache, scratch, permutations):
        folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "paper-vit-b32.yaml").read_text())
    vision = config["vision"]
    clip_files, model = _tiny_clip(scratch)
    vision["backbone"] = {"repo": "fake-org/tiny-clip", "revision": "main", "files": sorted(clip_files)}
    write_repo(cache, "model", "fake-org/tiny-clip", clip_files)
    vision["permutations"] = {"url": f"file://{root}/knots/{{revision}}/{{file}}", "revision": "rev0"}
    vision["image_size"] = IMAGE_SIZE
    vision["lock"] = str(lock_path)
    for index, (task, spec) in enumerate(vision["tasks"].items()):
        # the real class-name files (checked by test_templates) have up to 397 classes; a random tiny model would
        # score 0 on them and leave nothing to normalize by
        real_names = (ROOT / spec["classnames"]).read_text().splitlines()
        names = real_names if task in ("mnist", "svhn") else real_names[:CLASSES]
        spec["classnames"] = str(root / "classnames" / f"{task}.txt")
        Path(spec["classnames"]).parent.mkdir(exist_ok=True)
        Path(spec["classnames"]).write_text("\n".join(names) + "\n")
        spec["adapter"] = f"fake-org/lora-{task}"
        write_repo(cache, "model", spec["adapter"], _adapter(model, index))
        repo = f"fake-org/{task}"
        if spec["split"] == "permutation":
            files = {
                "data/test-00000-of-00001.parquet": _parquet(scratch, TEST_ROWS, index, names),
                "data/train-00000-of-00001.parquet": _parquet(scratch, TRAIN_ROWS, 30 + index, names),
            }
            permutation = np.random.default_rng(50 + index).permutation(TEST_ROWS)
            (permutations / spec["permutation"]).write_bytes(_torch_bytes(permutation))
            spec["sizes"] = {"val": int(TEST_ROWS * vision["val_fraction"]), "test": TEST_ROWS - int(TEST_ROWS * 0.2)}
        elif spec["split"] == "release_complement":
            # the release spells labels its own way (EuroSAT's folder names), mapped by the config's label_names
            spelling = {ours: theirs for theirs, ours in spec["release"]["label_names"].items()}
            parts = _release_complement(scratch, 10 + index, names, [spelling[name] for name in names])
            files = {f"data/{split}-00000-of-00001.parquet": parts[split] for split in ("train", "test")}
            spec["release"].update(repo=f"fake-org/{task}-release", files=["data/*.parquet"])
            write_repo(cache, "dataset", spec["release"]["repo"], {"data/all.parquet": parts["release"]})
            spec["sizes"] = {"val": VAL_ROWS, "test": TEST_ROWS}
        else:
            # a dataset spelled with underscores (RESISC45's folder names) stores them so
            spelling = spec["dataset"].get("label_names", "as_is")
            hub_names = [name.replace(" ", "_") for name in names] if spelling == "underscores" else names
            files = {
                "data/val-00000-of-00001.parquet": _parquet(scratch, VAL_ROWS, 10 + index, hub_names),
                "data/test-00000-of-00001.parquet": _parquet(scratch, TEST_ROWS, 20 + index, hub_names),
                "data/train-00000-of-00001.parquet": _parquet(scratch, TRAIN_ROWS, 30 + index, hub_names),
            }
            spec["sizes"] = {"val": VAL_ROWS, "test": TEST_ROWS}
        spec["dataset"] = {
            "repo": repo,
            "revision": "main",
            # every task names its train files, which the statistics of data-using merges read
            "files": {split: [f"data/{split}-*.parquet"] for split in sorted({*spec["dataset"]["files"], "train"})},
            "image_column": "image",
            "label_column": "label",
            "label_names": spec["dataset"].get("label_names", "as_is"),
        }
        write_repo(cache, "dataset", repo, files)
    write_lock(lock_path, lock_suite(vision, client=LocalHub(cache), log=lambda _: None))
    return _cut_down(config)


# Two or three values per swept parameter (top-K: the default and 100), LoRA-LEGO's K among the 8 × rank-4 units;
# the defaults of the parameters whose configured default is no value of the cut grid (DARE keeps KnOTS's 1e-5).
_CUT_GRIDS = {
    "alpha": [0.0, 0.5, 1.0],
    "drop_p": [0.1, 0.5],
    "clusters": [2, 4],
    "off_diagonal": [0.9, 1.0],
    "variant": ["b"],
}
_CUT_DEFAULTS = {"clusters": 2, "off_diagonal": 0.9, "variant": "b"}


def _cut_down(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["device"] = "cpu"
    # the published base: an untrained stand-in adapter may score 0 on its own task, which cannot normalize
    config["evaluate"].update({"batch_size": 64, "threads": 1, "normalize_by": "published"})
    merge = config["merge"]
    merge["lambdas"] = [0.5, 1.0]
    for spec in merge["methods"].values():
        if spec is None:
            continue
        spec.pop("lambdas", None)
        if "adapt" in spec:  # TARA: two steps show the stage works; its epochs are the paper's business
            spec["adapt"] = {"epochs": 1, "steps_per_epoch": 2}
        if "seeds" in spec:
            spec["seeds"] = [0, 1]
        for param in spec.get("grid", {}):
            if param == "top_k":
                spec["grid"][param] = [spec["defaults"][param], 100]
            else:
                spec["grid"][param] = _CUT_GRIDS[param]
            if param in _CUT_DEFAULTS:
                spec["defaults"][param] = _CUT_DEFAULTS[param]
        joint = spec.get("joint")
        if joint:
            # the joint walk reads the per-task merges: the cut-down grid walked backwards from the per-task default
            joint["grid"] = {param: spec["grid"][param][::-1] for param in joint.get("grid", {})}
            joint["defaults"] = dict(spec["defaults"])
    return config
