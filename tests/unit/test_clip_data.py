"""How a CLIP suite reads its hub datasets: EuroSAT's validation split reconstructed from the full release, label names
checked against the class files, images decoded without EXIF rotation, the seeded training subset that statistics are
collected on (all on local parquet files)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fakehub import parquet_bytes
from PIL import Image

from loramerge.repro.splits import DataError
from loramerge.repro.stats.subset import draw_rows
from loramerge.repro.suites.clip.hubdata import evaluation_splits, statistics_subset
from loramerge.repro.suites.clip.images import ORIENTATION_TAG, pixel_hash, read_parquet

NAMES = ["annual crop land", "forest", "river"]
RELEASE_NAMES = ["AnnualCrop", "Forest", "River"]
COLUMNS = {"image_column": "image", "label_column": "label"}
SIZE = 8


def processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size=SIZE, do_rescale=False, do_normalize=False)


def images(count: int, seed: int) -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, (10, 12, 3), dtype=np.uint8) for _ in range(count)]
    return [Image.fromarray(array) for array in pixels], rng.integers(0, len(NAMES), count).tolist()


def write(folder: Path, name: str, pictures, labels, names=NAMES) -> Path:
    path = folder / f"{name}.parquet"
    path.write_bytes(parquet_bytes(folder, pictures, labels, list(names), f"scratch-{name}"))
    return path


@pytest.fixture
def eurosat(tmp_path):
    """train 20, test 6 and the held-back validation 5 images; the release holds all 31, shuffled."""
    train, test, val = images(20, 1), images(6, 2), images(5, 3)
    pictures, labels = train[0] + test[0] + val[0], train[1] + test[1] + val[1]
    order = np.random.default_rng(0).permutation(len(pictures)).tolist()
    files = {
        "data/train.parquet": write(tmp_path, "train", *train),
        "data/test.parquet": write(tmp_path, "test", *test),
    }
    release = write(tmp_path, "release", [pictures[i] for i in order], [labels[i] for i in order], RELEASE_NAMES)
    spec = {
        "dataset": {"repo": "org/eurosat", "files": {"train": ["data/train*"], "test": ["data/test*"]}, **COLUMNS},
        "release": {
            "repo": "org/eurosat-rgb",
            "files": ["all/*"],
            **COLUMNS,
            "label_names": dict(zip(RELEASE_NAMES, NAMES, strict=True)),
        },
        "split": "release_complement",
        "sizes": {"val": 5, "test": 6},
    }
    return spec, files, {"all/release.parquet": release}, (train, test, val)


def test_eurosat_validation_is_the_release_minus_train_and_test(eurosat):
    spec, files, release_files, (train, test, val) = eurosat
    splits = evaluation_splits(files, spec, NAMES, processor(), None, 0.2, "org/eurosat (eurosat)", release_files)
    assert len(splits["val"].labels) == 5 and len(splits["test"].labels) == 6
    held = {pixel_hash(image) for image in train[0] + test[0]}
    release = read_parquet([release_files["all/release.parquet"]], "image", "label", "release")
    from loramerge.repro.suites.clip.images import decode_image

    kept = [decode_image(row, "release")[0] for row in release["image"]]
    kept = [image for image in kept if pixel_hash(image) not in held]
    assert {pixel_hash(image) for image in kept} == {pixel_hash(image) for image in val[0]}  # disjoint, and exact
    # labels follow the class file although the release spells them its own way
    by_hash = {pixel_hash(image): label for image, label in zip(*val, strict=True)}
    assert splits["val"].labels.tolist() == [by_hash[pixel_hash(image)] for image in kept]
    info = splits["val"].info
    assert (info["release_rows"], info["matched_train"], info["matched_test"], info["complement"]) == (31, 20, 6, 5)


def test_a_complement_of_the_wrong_size_stops_naming_the_counts(eurosat):
    spec, files, release_files, _ = eurosat
    spec["sizes"]["val"] = 4
    with pytest.raises(
        DataError,
        match=r"org/eurosat-rgb, .*minus train \(20 of 20 matched.*test \(6 of 6 matched.* leaves 5 images, not the 4 ",
    ):
        evaluation_splits(files, spec, NAMES, processor(), None, 0.2, "org/eurosat (eurosat)", release_files)


def test_a_release_that_labels_the_same_pixels_differently_stops(eurosat, tmp_path):
    spec, files, release_files, (train, _, _) = eurosat
    relabelled = [(label + 1) % len(NAMES) for label in train[1]]
    files["data/train.parquet"] = write(tmp_path, "train-relabelled", train[0], relabelled)
    with pytest.raises(DataError, match="label the classes differently"):
        evaluation_splits(files, spec, NAMES, processor(), None, 0.2, "org/eurosat (eurosat)", release_files)


def official_spec(label_names="as_is") -> dict:
    files = {"val": ["val*"], "test": ["test*"]}
    dataset = {"repo": "org/dtd", "files": files, **COLUMNS, "label_names": label_names}
    return {"dataset": dataset, "split": "official", "sizes": {"val": 4, "test": 4}}


def official_files(folder: Path, names) -> dict[str, Path]:
    return {
        "val.parquet": write(folder, "val", *images(4, 5), names=names),
        "test.parquet": write(folder, "test", *images(4, 6), names=names),
    }


def test_swapped_label_names_stop_the_run_naming_the_task_and_the_labels(tmp_path):
    swapped = [NAMES[1], NAMES[0], NAMES[2]]
    with pytest.raises(DataError, match=r"org/dtd \(dtd\).*label 0 is 'forest'.*'annual crop land' in the class-name"):
        evaluation_splits(
            official_files(tmp_path, swapped), official_spec(), NAMES, processor(), None, 0.2, "org/dtd (dtd)"
        )


@pytest.mark.parametrize(
    ("hub_names", "spelling"),
    [
        (["annual_crop_land", "forest", "river"], "underscores"),
        (["A", "F", "R"], {"A": NAMES[0], "F": NAMES[1], "R": NAMES[2]}),
    ],
)
def test_label_names_are_compared_as_the_class_file_spells_them(tmp_path, hub_names, spelling):
    splits = evaluation_splits(
        official_files(tmp_path, hub_names), official_spec(spelling), NAMES, processor(), None, 0.2, "org/dtd"
    )
    assert len(splits["test"].labels) == 4
    with pytest.raises(DataError, match="the dataset has 3 label names but the class-name file 2"):
        evaluation_splits(
            official_files(tmp_path, hub_names), official_spec(spelling), NAMES[:2], processor(), None, 0.2, "org/dtd"
        )


def test_an_exif_orientation_tag_is_not_applied(tmp_path):
    """KnOTS's loaders open the file with PIL and convert to RGB; `datasets` would rotate by the EXIF tag."""
    upright = Image.fromarray(np.random.default_rng(7).integers(0, 256, (12, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    upright.save(buffer, format="JPEG", exif=exif, quality=95)
    stored = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")  # the JPEG's pixels, as stored
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    rows = {"image": [{"bytes": buffer.getvalue(), "path": None}] * 4, "label": [0, 1, 2, 0]}
    for split in ("val", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    spec = official_spec()
    files = {f"{split}.parquet": tmp_path / f"{split}.parquet" for split in ("val", "test")}
    splits = evaluation_splits(files, spec, NAMES, processor(), None, 0.2, "org/dtd")
    unrotated = processor()(images=[stored], return_tensors="pt")["pixel_values"].round().clamp(0, 255).to(torch.uint8)
    from PIL import ImageOps

    rotated = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))).convert("RGB")
    assert rotated.size == (12, 20)  # the tag would have turned the 20×12 image
    turned = processor()(images=[rotated], return_tensors="pt")["pixel_values"].round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(splits["test"].images[0], unrotated[0])
    assert not torch.equal(splits["test"].images[0], turned[0])
    assert splits["test"].info["exif_oriented"] == 4


def test_the_statistics_subset_is_a_seeded_draw_of_the_training_images(eurosat):
    spec, files, _, (train, _, _) = eurosat
    source = "org/eurosat (eurosat)"
    whole = statistics_subset(files, spec["dataset"], NAMES, processor(), 256, 3, source)  # 20 < 256: all, in order
    assert whole.labels.tolist() == train[1] and whole.info["drawn"] == whole.info["train_rows"] == 20
    drawn = statistics_subset(files, spec["dataset"], NAMES, processor(), 7, 3, source)
    rows = draw_rows(20, 7, 3)
    assert torch.equal(drawn.images, whole.images[rows]) and torch.equal(drawn.labels, whole.labels[rows])
    other = statistics_subset(files, spec["dataset"], NAMES, processor(), 7, 4, source)
    assert not torch.equal(other.images, drawn.images)
    without_train = {**spec["dataset"], "files": {"test": ["data/test*"]}}
    with pytest.raises(DataError, match="names no train split"):
        statistics_subset(files, without_train, NAMES, processor(), 7, 3, source)
