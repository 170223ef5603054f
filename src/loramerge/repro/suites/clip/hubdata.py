"""A CLIP suite's inputs from hub downloads: the CLIP backbone, KnOTS adapters, and evaluation splits.

- The CLIP snapshot (config, weights, tokenizer and image-processor files) becomes two local folders: the full
  `CLIPModel` with its tokenizer (for the zero-shot text heads) and the `CLIPVisionModelWithProjection` the merged
  updates are applied to. Pickled weights are read with `weights_only=True` and re-saved as safetensors.
- A KnOTS adapter (`adapter_config.json` + pickled `adapter_model.bin`) is validated and re-saved as safetensors.
- An evaluation split is read from parquet files (label names checked against the class file, images decoded as
  KnOTS decodes them: `images.py`), split as KnOTS does (docs/protocol.md §3: the first int(0.2·N) entries of the
  shipped permutation are validation, the rest test, in permutation order; or the official validation and test
  splits; or, for EuroSAT, the full release minus train and test), size-checked, and stored as uint8 CLIP crops
  (resize the short side, centre crop) so that evaluation only normalizes on the device.
- The statistics of the data-using merges read a seeded subset of each task's training images (`dataset.files.train`),
  prepared the same way.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import pickle
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from loramerge.adapters import CONFIG_FILE, PICKLE_FILE, SAFETENSORS_FILE, load_adapter, read_pickled_tensors
from loramerge.atomic import write_atomically
from loramerge.errors import AdapterError
from loramerge.io import atomic_directory
from loramerge.repro.splits import DataError
from loramerge.repro.stats.subset import draw_rows
from loramerge.repro.suites.clip.images import AS_IS, check_label_names, clip_crops, pixel_hashes, read_parquet

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import CLIPImageProcessorPil

CLIP_CONFIG = "config.json"
SAFE_WEIGHTS, PICKLED_WEIGHTS = "model.safetensors", "pytorch_model.bin"
PROCESSOR_CONFIG = "preprocessor_config.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PERMUTATION_KEY = "permutation"


def _state_dict(files: Mapping[str, Path]) -> dict[str, torch.Tensor]:
    if SAFE_WEIGHTS in files:
        try:
            return load_file(files[SAFE_WEIGHTS])
        except Exception as error:  # safetensors raises several private error types on corrupt files
            raise DataError(files[SAFE_WEIGHTS], f"unreadable safetensors file: {error}") from error
    if PICKLED_WEIGHTS in files:
        return read_pickled_tensors(files[PICKLED_WEIGHTS])
    raise DataError("backbone", f"the snapshot has neither {SAFE_WEIGHTS} nor {PICKLED_WEIGHTS}")


def convert_clip_snapshot(files: Mapping[str, Path], clip_folder: str | Path, vision_folder: str | Path) -> None:
    """Write the full CLIP model (+ tokenizer and processor files) and its vision tower, both as safetensors."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    for name in (CLIP_CONFIG, PROCESSOR_CONFIG):
        if name not in files:
            raise DataError("backbone", f"the downloaded snapshot has no {name}")
    config = CLIPConfig.from_json_file(files[CLIP_CONFIG])
    state = _state_dict(files)
    model = CLIPModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # position_ids buffers are absent from some checkpoints and derived anyway
    missing = [key for key in missing if not key.endswith("position_ids")]
    unexpected = [key for key in unexpected if not key.endswith("position_ids")]
    if missing or unexpected:
        raise DataError(
            "backbone", f"weights do not fit the config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    # the vision config alone defaults projection_dim to 512: take the CLIP model's
    vision_config = CLIPVisionConfig(**{**config.vision_config.to_dict(), "projection_dim": config.projection_dim})
    vision = CLIPVisionModelWithProjection(vision_config)
    vision.vision_model.load_state_dict(model.vision_model.state_dict())
    vision.visual_projection.load_state_dict(model.visual_projection.state_dict())
    with atomic_directory(clip_folder, overwrite=True) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        for name in (PROCESSOR_CONFIG, *TOKENIZER_FILES):
            if name in files:
                shutil.copyfile(files[name], staging / name)
    with atomic_directory(vision_folder, overwrite=True) as staging:
        vision.save_pretrained(staging, safe_serialization=True)
        shutil.copyfile(files[PROCESSOR_CONFIG], staging / PROCESSOR_CONFIG)


def convert_adapter(files: Mapping[str, Path], folder: str | Path) -> None:
    """A downloaded peft adapter as `adapter_config.json` + `adapter_model.safetensors`, validated on the way."""
    if CONFIG_FILE not in files:
        raise AdapterError("adapter", f"the downloaded snapshot has no {CONFIG_FILE}")
    with atomic_directory(folder, overwrite=True) as staging:
        shutil.copyfile(files[CONFIG_FILE], staging / CONFIG_FILE)
        if SAFETENSORS_FILE in files:
            shutil.copyfile(files[SAFETENSORS_FILE], staging / SAFETENSORS_FILE)
        elif PICKLE_FILE in files:
            state = read_pickled_tensors(files[PICKLE_FILE])
            save_file({key: tensor.contiguous() for key, tensor in state.items()}, staging / SAFETENSORS_FILE)
        else:
            raise AdapterError(files[CONFIG_FILE].parent, f"no {SAFETENSORS_FILE} or {PICKLE_FILE} downloaded")
        load_adapter(staging)  # validates names, shapes, ranks and values before the folder appears


# ------------------------------------------------------------------------------------------------ permutations


def read_numpy_permutation(path: str | Path) -> np.ndarray:
    """A KnOTS `*_shuffled_idxs.pt` file: a torch-saved numpy integer array, unpickled with only numpy's array
    reconstruction allowed (never arbitrary objects)."""
    reconstruct = np._core.multiarray._reconstruct
    # files saved under numpy 1 name numpy.core, under numpy 2 numpy._core: allow the same function under both names
    allowed = [
        np.ndarray,
        np.dtype,
        np.dtypes.Int64DType,
        np.dtypes.Int32DType,
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            array = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise DataError(path, f"not a weights-only loadable permutation: {error}") from error
    if isinstance(array, torch.Tensor):
        array = array.numpy()
    if not isinstance(array, np.ndarray) or array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(path, "expected a 1-D integer array")
    return array.astype(np.int64)


def save_permutation(path: str | Path, permutation: np.ndarray) -> None:
    tensors = {PERMUTATION_KEY: torch.from_numpy(np.ascontiguousarray(permutation, dtype=np.int64))}
    write_atomically(path, lambda staging: save_file(tensors, staging))


def load_permutation(path: str | Path) -> np.ndarray:
    try:
        return load_file(path)[PERMUTATION_KEY].numpy()
    except Exception as error:
        raise DataError(path, f"unreadable permutation file: {error}") from error


def knots_split(permutation: np.ndarray, size: int, val_fraction: float, source: str) -> dict[str, np.ndarray]:
    """{'val': first int(val_fraction·N) entries, 'test': the rest}, in permutation order (docs/protocol.md §3)."""
    if len(permutation) != size or not np.array_equal(np.sort(permutation), np.arange(size)):
        raise DataError(source, f"the permutation is not a permutation of range({size}) (length {len(permutation)})")
    num_val = int(size * val_fraction)
    return {"val": permutation[:num_val], "test": permutation[num_val:]}


# ---------------------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class PreparedSplit:
    """One task's split as evaluation reads it, and the facts about how it was made (written to the split file's
    metadata and the job log: EXIF-tagged images, the EuroSAT reconstruction's counts)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: dict[str, Any]


def check_size(split: str, actual: int, expected: int, source: str) -> None:
    if actual != expected:
        raise DataError(
            source,
            f"the {split} split has {actual} examples but the KnOTS protocol's is {expected} (docs/protocol.md §3); "
            "the dataset revision or split differs from the one the paper used",
        )


def metadata(**values: object) -> dict[str, str]:
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def split_files(files: Mapping[str, Path], patterns: Sequence[str], source: str) -> list[Path]:
    """The downloaded files (repository name -> local path) whose names match any pattern, in name order."""
    chosen = [files[name] for name in sorted(files) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise DataError(source, f"no locked file matches the patterns {list(patterns)}")
    return chosen


def read_split(
    files: Mapping[str, Path], dataset_spec: Mapping, patterns: Sequence[str], class_names: Sequence[str], source: str
) -> Dataset:
    """The parquet files matching `patterns` as one dataset, its label names checked against the class names."""
    image_column, label_column = dataset_spec["image_column"], dataset_spec["label_column"]
    dataset = read_parquet(split_files(files, patterns, source), image_column, label_column, source)
    check_label_names(dataset, label_column, class_names, dataset_spec.get("label_names", AS_IS), source)
    return dataset


def release_complement(
    release: Dataset,
    release_spec: Mapping,
    held_out: Mapping[str, Dataset],
    dataset_spec: Mapping,
    size: int,
    source: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The rows of the full `release` whose pixels are in none of the `held_out` splits, in release order, and the
    evidence: how many release images each held-out split matched, and a fingerprint of the complement.

    A matched image must carry the same label in both copies, and the complement must hold exactly `size` images;
    anything else means the copies do not share pixels (a re-encoded copy) or are not the same release."""
    held: dict[str, tuple[str, int]] = {}
    for split, dataset in held_out.items():
        labels = dataset[dataset_spec["label_column"]]
        for digest, label in zip(pixel_hashes(dataset, dataset_spec["image_column"], source), labels, strict=True):
            held[digest] = (split, int(label))
    release_labels = release[release_spec["label_column"]]
    matched = dict.fromkeys(held_out, 0)
    rows, digests = [], []
    for row, digest in enumerate(pixel_hashes(release, release_spec["image_column"], source)):
        if digest not in held:
            rows.append(row)
            digests.append(digest)
            continue
        split, label = held[digest]
        matched[split] += 1
        if label != int(release_labels[row]):
            raise DataError(
                source,
                f"release row {row} has label {int(release_labels[row])} but the same pixels in {split} have label "
                f"{label}: the two copies label the classes differently",
            )
    evidence = {
        "release": release_spec["repo"],
        "release_rows": len(release),
        **{f"matched_{split}": count for split, count in matched.items()},
        **{f"{split}_rows": len(dataset) for split, dataset in held_out.items()},
        "complement": len(rows),
        "complement_sha256": hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest(),
    }
    if len(rows) != size:
        raise DataError(
            source,
            f"the release ({len(release)} images) minus "
            + " and ".join(
                f"{split} ({count} of {len(held_out[split])} matched by pixels)" for split, count in matched.items()
            )
            + f" leaves {len(rows)} images, not the {size} of the official validation split",
        )
    return np.asarray(rows, dtype=np.int64), evidence


def _encoded_rows(dataset: Dataset, rows: np.ndarray, column: str, chunk: int = 256) -> Iterator[Mapping[str, Any]]:
    """The undecoded images of `rows`, in that order, a chunk at a time (a split's bytes are never all in memory)."""
    for start in range(0, len(rows), chunk):
        yield from dataset.select(rows[start : start + chunk].tolist())[column]


def evaluation_splits(
    files: Mapping[str, Path],
    spec: Mapping,
    class_names: Sequence[str],
    processor: CLIPImageProcessorPil,
    permutation: np.ndarray | None,
    val_fraction: float,
    source: str,
    release_files: Mapping[str, Path] | None = None,
) -> dict[str, PreparedSplit]:
    """{'val' | 'test': the split} of one task as the KnOTS protocol splits it, size-checked.

    `release_complement` (EuroSAT, whose official validation split is published nowhere) takes the official test
    split, and as validation the images of the full release (`spec['release']`, read from `release_files`) whose
    pixels are in neither train nor test (:func:`release_complement`)."""
    dataset_spec = spec["dataset"]

    def read(split: str) -> Dataset:
        return read_split(files, dataset_spec, dataset_spec["files"][split], class_names, source)

    evidence: dict[str, dict[str, Any]] = {"val": {}, "test": {}}
    if spec["split"] == "permutation":
        if permutation is None:
            raise DataError(source, "a permutation split needs the KnOTS permutation")
        dataset = read("test")
        parts = {
            split: (dataset, dataset_spec, rows)
            for split, rows in knots_split(permutation, len(dataset), val_fraction, source).items()
        }
    elif spec["split"] == "release_complement":
        release_spec = spec["release"]
        release_source = f"{release_spec['repo']}, the full release for {source}"
        if release_files is None:
            raise DataError(source, "a release_complement split needs the release's files")
        release = read_split(release_files, release_spec, release_spec["files"], class_names, release_source)
        train, test = read("train"), read("test")
        rows, evidence["val"] = release_complement(
            release, release_spec, {"train": train, "test": test}, dataset_spec, spec["sizes"]["val"], release_source
        )
        parts = {"val": (release, release_spec, rows), "test": (test, dataset_spec, np.arange(len(test)))}
    else:
        parts = {
            split: (data, dataset_spec, np.arange(len(data))) for split in ("val", "test") for data in [read(split)]
        }
    splits = {}
    for split, (dataset, columns, rows) in parts.items():
        check_size(split, len(rows), spec["sizes"][split], source)
        labels = torch.as_tensor(np.asarray(dataset[columns["label_column"]], dtype=np.int64)[rows])
        crops = clip_crops(_encoded_rows(dataset, rows, columns["image_column"]), processor, source)
        splits[split] = PreparedSplit(crops.images, labels, {**evidence[split], "exif_oriented": crops.exif_oriented})
    return splits


def statistics_subset(
    files: Mapping[str, Path],
    dataset_spec: Mapping,
    class_names: Sequence[str],
    processor: CLIPImageProcessorPil,
    examples: int,
    seed: int,
    source: str,
) -> PreparedSplit:
    """min(examples, N) of the N images of a task's train split (`dataset_spec['files']['train']`), drawn with
    `seed`, in row order, as uint8 CLIP crops: the unlabelled inputs its statistics are collected on (the labels are
    kept because the split format has them)."""
    if "train" not in dataset_spec["files"]:
        raise DataError(source, "dataset.files names no train split to collect statistics on")
    dataset = read_split(files, dataset_spec, dataset_spec["files"]["train"], class_names, source)
    rows = draw_rows(len(dataset), examples, seed).numpy()
    labels = torch.as_tensor(np.asarray(dataset[dataset_spec["label_column"]], dtype=np.int64)[rows])
    crops = clip_crops(_encoded_rows(dataset, rows, dataset_spec["image_column"]), processor, source)
    info = {"train_rows": len(dataset), "drawn": len(rows), "seed": seed, "exif_oriented": crops.exif_oriented}
    return PreparedSplit(crops.images, labels, info)
