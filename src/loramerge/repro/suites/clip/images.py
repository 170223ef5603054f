"""Images of a CLIP suite's hub datasets, read as the KnOTS loaders read theirs.

- Parquet rows are decoded from their raw bytes with PIL and converted to RGB, never EXIF-transposed: `datasets`
  applies the orientation tag when it decodes, KnOTS's loaders (PIL `open` + `convert`) do not.
- A dataset's label ids must follow the class-name file (the order of the zero-shot heads): the label names stored
  with the parquet data, spelled as the class file spells them, are compared name for name.
- A decoded image's pixel hash identifies it across hub copies that store the same pixels (EuroSAT's validation
  split is the release minus train and test by this hash).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from loramerge.repro.splits import DataError

if TYPE_CHECKING:
    from datasets import Dataset
    from PIL.Image import Image
    from transformers import CLIPImageProcessorPil

ORIENTATION_TAG = 0x0112  # EXIF Orientation; 1 is upright
AS_IS, UNDERSCORES = "as_is", "underscores"


def read_parquet(files: Sequence[Path], image_column: str, label_column: str, source: str) -> Dataset:
    """A `datasets.Dataset` of the parquet files, in file then row order, with the two columns checked and the images
    left undecoded (`{'bytes', 'path'}` per row; :func:`decode_image` decodes them)."""
    import datasets

    try:
        dataset = datasets.Dataset.from_parquet([str(path) for path in files], keep_in_memory=True)
    except Exception as error:  # pyarrow and datasets raise many types on corrupt files
        raise DataError(source, f"unreadable parquet data: {error}") from error
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise DataError(source, f"no column {column!r}; the columns are {dataset.column_names}")
    return dataset.cast_column(image_column, datasets.Image(decode=False))


def decode_image(encoded: Mapping[str, Any], source: str) -> tuple[Image, bool]:
    """The RGB image of an undecoded row as stored (no EXIF transpose), and whether its orientation tag asks for a
    rotation or flip (a tag other than 1)."""
    from PIL import Image, UnidentifiedImageError

    if not encoded or encoded.get("bytes") is None:
        raise DataError(source, "an image row holds no bytes (only a path); the parquet files must embed the images")
    try:
        image = Image.open(io.BytesIO(encoded["bytes"]))
        oriented = image.getexif().get(ORIENTATION_TAG, 1) != 1
        return image.convert("RGB"), oriented
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(source, f"an image cannot be decoded: {error}") from error


def pixel_hash(image: Image) -> str:
    """sha256 of an RGB image's size and decoded pixels: equal for two copies exactly when their pixels are."""
    pixels = np.asarray(image, dtype=np.uint8)
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def pixel_hashes(dataset: Dataset, image_column: str, source: str) -> list[str]:
    return [
        pixel_hash(decode_image(encoded, source)[0])
        for encoded in tqdm(dataset[image_column], desc="pixel hashes", leave=False)
    ]


def spelled(names: Sequence[str], spelling: str | Mapping[str, str], source: str) -> list[str]:
    """A dataset's label names as the class-name file spells them: `as_is`, `underscores` (`_` → space), or a map
    from each hub name to its class-file name."""
    if spelling == AS_IS:
        return list(names)
    if spelling == UNDERSCORES:
        return [name.replace("_", " ") for name in names]
    if isinstance(spelling, Mapping):
        unmapped = [name for name in names if name not in spelling]
        if unmapped:
            raise DataError(source, f"label names {unmapped[:3]} have no entry in the configured label_names map")
        return [spelling[name] for name in names]
    raise DataError(source, f"unknown label_names spelling {spelling!r} (as_is, underscores or a map)")


def check_label_names(
    dataset: Dataset, label_column: str, class_names: Sequence[str], spelling: str | Mapping[str, str], source: str
) -> None:
    """Stop unless the dataset's label names, spelled as the class file spells them, are the class names in order:
    a hub copy whose ids are ordered differently from the heads would otherwise score against the wrong classes."""
    hub_names = getattr(dataset.features[label_column], "names", None)
    if not hub_names:
        raise DataError(
            source,
            f"the {label_column!r} column carries no label names ({dataset.features[label_column]}), so its label "
            "order cannot be checked against the class-name file",
        )
    ours = spelled(hub_names, spelling, source)
    if len(ours) != len(class_names):
        raise DataError(source, f"the dataset has {len(ours)} label names but the class-name file {len(class_names)}")
    for label, (hub, name, expected) in enumerate(zip(hub_names, ours, class_names, strict=True)):
        if name != expected:
            raise DataError(
                source,
                f"label {label} is {hub!r} in the dataset ({name!r} as the class file spells it) but {expected!r} "
                "in the class-name file: the dataset's label ids do not follow the heads' class order",
            )


def image_processor(folder: str | Path, image_size: int) -> CLIPImageProcessorPil:
    """CLIP's PIL image processor from the backbone folder, stopping before rescale and normalization (done on the
    device); the PIL backend always, as in the KnOTS environment, whatever else is installed."""
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(folder, do_rescale=False, do_normalize=False)
    crop = processor.crop_size
    if (crop["height"], crop["width"]) != (image_size, image_size):
        raise DataError(folder, f"the image processor crops to {crop} but the suite's image_size is {image_size}")
    return processor


@dataclass(frozen=True)
class Crops:
    """uint8 N×3×S×S CLIP crops and how many of their source images carry an orientation tag other than 1."""

    images: torch.Tensor
    exif_oriented: int


def clip_crops(
    encoded: Iterable[Mapping[str, Any]], processor: CLIPImageProcessorPil, source: str, batch_size: int = 256
) -> Crops:
    """CLIP crops (resize the short side, centre crop; no rescale or normalization) of undecoded images, in order."""
    chunks, oriented, batch = [], 0, []

    def flush() -> None:
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
        chunks.append(pixels.round().clamp(0, 255).to(torch.uint8))
        batch.clear()

    for row in tqdm(encoded, desc="crops", leave=False):
        image, tagged = decode_image(row, source)
        batch.append(image)
        oriented += tagged
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    size = processor.crop_size
    images = torch.cat(chunks) if chunks else torch.zeros(0, 3, size["height"], size["width"], dtype=torch.uint8)
    return Crops(images, oriented)
