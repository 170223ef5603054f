"""A CLIP suite's inputs from hub downloads: the CLIP backbone, KnOTS adapters, and evaluation splits.

- The CLIP snapshot (config, weights, tokenizer and image-processor files) becomes two local folders: the full
  `CLIPModel` with its tokenizer (for the zero-shot text heads) and the `CLIPVisionModelWithProjection` the merged
  updates are applied to. Pickled weights are read with `weights_only=True` and re-saved as safetensors.
- A KnOTS adapter (`adapter_config.json` + pickled `adapter_model.bin`) is validated and re-saved as safetensors.
- An evaluation split is read from parquet files with `datasets`, split as KnOTS does (docs/protocol.md §3: the first
  int(0.2·N) entries of the shipped permutation are validation, the rest test, in permutation order; or the official
  validation and test splits), size-checked, and stored as uint8 CLIP crops (resize the short side, centre crop) so that
  evaluation only normalizes on the device.
"""

from __future__ import annotations

import fnmatch
import json
import pickle
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from loramerge.adapters import CONFIG_FILE, PICKLE_FILE, SAFETENSORS_FILE, load_adapter, read_pickled_tensors
from loramerge.atomic import write_atomically
from loramerge.errors import AdapterError
from loramerge.io import atomic_directory
from loramerge.repro.splits import DataError

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


# --------------------------------------------------------------------------------------------------- images


def read_parquet(files: Sequence[Path], image_column: str, label_column: str, source: str) -> Dataset:
    """A `datasets.Dataset` of the parquet files, in file then row order, with the two columns checked."""
    import datasets

    try:
        dataset = datasets.Dataset.from_parquet([str(path) for path in files], keep_in_memory=True)
    except Exception as error:  # pyarrow and datasets raise many types on corrupt files
        raise DataError(source, f"unreadable parquet data: {error}") from error
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise DataError(source, f"no column {column!r}; the columns are {dataset.column_names}")
    return dataset.cast_column(image_column, datasets.Image(decode=True))


def image_processor(folder: str | Path, image_size: int) -> CLIPImageProcessorPil:
    """CLIP's PIL image processor from the backbone folder, stopping before rescale and normalization (done on the
    device); the PIL backend always, as in the KnOTS environment, whatever else is installed."""
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(folder, do_rescale=False, do_normalize=False)
    crop = processor.crop_size
    if (crop["height"], crop["width"]) != (image_size, image_size):
        raise DataError(folder, f"the image processor crops to {crop} but the suite's image_size is {image_size}")
    return processor


def clip_crops(
    dataset: Dataset, indices: np.ndarray, image_column: str, processor: CLIPImageProcessorPil, batch_size: int = 256
) -> torch.Tensor:
    """uint8 N×3×S×S crops of the dataset's rows `indices`, in that order."""
    chunks = []
    for start in tqdm(range(0, len(indices), batch_size), desc="crops", leave=False):
        rows = dataset.select(indices[start : start + batch_size].tolist())
        images = [image.convert("RGB") for image in rows[image_column]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        chunks.append(pixels.round().clamp(0, 255).to(torch.uint8))
    return (
        torch.cat(chunks)
        if chunks
        else torch.zeros(0, 3, processor.crop_size["height"], processor.crop_size["width"], dtype=torch.uint8)
    )


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


def evaluation_splits(
    files: Mapping[str, Path],
    spec: Mapping,
    class_names: Sequence[str],
    processor: CLIPImageProcessorPil,
    permutation: np.ndarray | None,
    val_fraction: float,
    source: str,
    holdout_seed: int = 0,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'val' | 'test': (uint8 crops, int64 labels)} of one task as the KnOTS protocol splits it, size-checked.

    `train_holdout` (for a dataset whose official validation split is not available) takes the official test split
    and, as validation, `sizes.val` rows of train drawn with `holdout_seed`, in train order."""
    dataset_spec = spec["dataset"]
    image_column, label_column = dataset_spec["image_column"], dataset_spec["label_column"]

    def read(split: str) -> Dataset:
        return read_parquet(
            split_files(files, dataset_spec["files"][split], source), image_column, label_column, source
        )

    if spec["split"] == "permutation":
        if permutation is None:
            raise DataError(source, "a permutation split needs the KnOTS permutation")
        dataset = read("test")
        parts = {
            split: (dataset, rows)
            for split, rows in knots_split(permutation, len(dataset), val_fraction, source).items()
        }
    elif spec["split"] == "train_holdout":
        train, test = read("train"), read("test")
        holdout = np.random.default_rng(holdout_seed).permutation(len(train))[: spec["sizes"]["val"]]
        parts = {"val": (train, np.sort(holdout)), "test": (test, np.arange(len(test)))}
    else:
        parts = {split: (data, np.arange(len(data))) for split in ("val", "test") for data in [read(split)]}
    splits = {}
    for split, (dataset, rows) in parts.items():
        check_size(split, len(rows), spec["sizes"][split], source)
        labels = torch.as_tensor(np.asarray(dataset[label_column], dtype=np.int64)[rows])
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise DataError(
                source,
                f"{split} labels span {int(labels.min())}..{int(labels.max())} "
                f"but {len(class_names)} class names are given",
            )
        splits[split] = (clip_crops(dataset, rows, image_column, processor), labels)
    return splits
