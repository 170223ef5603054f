"""Procedurally generated image classification tasks for the offline demo suite.

Every source draws N×3×S×S uint8 images and int64 labels from a numpy generator seeded by (seed, source, split), so
the same arguments give byte-identical tensors and each split is its own stream: asking for more training images
does not change the test images. Drawing is vectorised over the batch (coordinate grids and masks), not per image.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from loramerge.repro.splits import DataError

ROTATIONS = (0, 90, 180, 270)
_PRETRAIN_TAG = "pretrain-mixture"


@dataclass(frozen=True)
class TaskData:
    class_names: list[str]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # split name -> (uint8 N×3×S×S images, int64 N labels)


TaskGenerator = Callable[[Mapping[str, int], int, int], TaskData]
# (count, image_size, rng) -> (float32 N×3×S×S in [0, 1], int64 N labels)
_Drawer = Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------- drawing helpers


def _rng(seed: int, *tags: str) -> np.random.Generator:
    # crc32, not hash(): str hashes are salted per process, and the streams must not change between runs.
    return np.random.default_rng(np.random.SeedSequence([seed, *(zlib.crc32(tag.encode()) for tag in tags)]))


def _balanced_labels(rng: np.random.Generator, count: int, n_classes: int) -> np.ndarray:
    return rng.permutation(np.arange(count) % n_classes).astype(np.int64)


def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each 1×S×S, broadcasting against per-image parameters of shape N×1×1."""
    coords = np.arange(image_size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return yy[None], xx[None]


def _column(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32)[:, None, None]


def _rotated(dx: np.ndarray, dy: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = _column(np.cos(angle)), _column(np.sin(angle))
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _contrasting_colours(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background colours (N×3) whose every channel differs by at least 0.1 in one direction."""
    dark_background = rng.random(count) < 0.5
    low, high = rng.uniform(0.0, 0.45, (count, 3)), rng.uniform(0.55, 1.0, (count, 3))
    foreground = np.where(dark_background[:, None], high, low)
    background = np.where(dark_background[:, None], low, high)
    return foreground.astype(np.float32), background.astype(np.float32)


def _compose(mask: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """N×S×S coverage in [0, 1] and N×3 colours -> N×3×S×S image."""
    background = background[:, :, None, None]
    return background + mask[:, None].astype(np.float32) * (foreground[:, :, None, None] - background)


def _background_gradient(rng: np.random.Generator, images: np.ndarray, strength: float) -> np.ndarray:
    # Uneven lighting: a random linear ramp, so a single pixel's brightness does not give the class away.
    count, _, size, _ = images.shape
    yy, xx = _grid(size)
    u, _ = _rotated(xx - size / 2, yy - size / 2, rng.uniform(0, 2 * np.pi, count))
    return images + _column(rng.uniform(-strength, strength, count))[:, None] * (u / size)[:, None]


def _add_noise(rng: np.random.Generator, images: np.ndarray, low: float, high: float) -> np.ndarray:
    sigma = rng.uniform(low, high, images.shape[0]).astype(np.float32)[:, None, None, None]
    return images + sigma * rng.standard_normal(images.shape, dtype=np.float32)


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Arrays of one shape, all in [0, 1] -> that shape × 3 (the closed form f(n) = V − V·S·clip(min(k, 4−k)))."""
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32) + hue[..., None] * 6) % 6
    chroma = np.clip(np.minimum(k, 4 - k), 0, 1)
    return (value[..., None] * (1 - saturation[..., None] * chroma)).astype(np.float32)


def _to_uint8(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)))


# --------------------------------------------------------------------------------------------- sources

SHAPE_CLASSES = ["circle", "square", "triangle", "cross", "ring", "crescent"]


def _polygon(u: np.ndarray, v: np.ndarray, radius: np.ndarray, sides: int) -> np.ndarray:
    # Inside a regular polygon of circumradius R iff every edge normal's projection is at most the apothem.
    angles = 2 * np.pi * (np.arange(sides) + 0.5) / sides
    projection = np.max([u * np.cos(a) + v * np.sin(a) for a in angles], axis=0)
    return projection <= radius * np.cos(np.pi / sides)


def _draw_shapes(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(rng, count, len(SHAPE_CLASSES))
    radius = rng.uniform(0.26, 0.42, count) * size
    cy, cx = (radius + rng.random(count) * (size - 2 * radius) for _ in range(2))
    yy, xx = _grid(size)
    dx, dy = xx - _column(cx), yy - _column(cy)
    u, v = _rotated(dx, dy, rng.uniform(0, 2 * np.pi, count))
    distance, r = np.hypot(dx, dy), _column(radius)
    inner = _column(rng.uniform(0.45, 0.65, count)) * r  # ring hole, cross arm half-width scale
    masks = {
        "circle": distance <= r,
        "square": _polygon(u, v, r, 4),
        "triangle": _polygon(u, v, r * 1.15, 3),
        "cross": ((np.abs(u) <= 0.5 * inner) & (np.abs(v) <= r)) | ((np.abs(v) <= 0.5 * inner) & (np.abs(u) <= r)),
        "ring": (distance <= r) & (distance >= inner),
        "crescent": (distance <= r) & (np.hypot(u - 0.55 * r, v) > 0.8 * r),
    }
    mask = np.zeros((count, size, size), dtype=bool)
    for index, name in enumerate(SHAPE_CLASSES):
        selected = labels == index
        mask[selected] = masks[name][selected]
    images = _compose(mask, *_contrasting_colours(rng, count))
    images = _background_gradient(rng, images, 0.15)
    return _add_noise(rng, images, 0.02, 0.08), labels


TEXTURE_CLASSES = ["stripes", "checker", "dots", "noise", "gradient", "rings"]


def _draw_textures(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(rng, count, len(TEXTURE_CLASSES))
    frequency = _column(rng.uniform(0.55, 1.4, count))  # radians per pixel: periods of about 4.5 to 11 px
    phase_u, phase_v = (_column(rng.uniform(0, 2 * np.pi, count)) for _ in range(2))
    yy, xx = _grid(size)
    centre_y, centre_x = (_column(rng.uniform(0, size, count)) for _ in range(2))
    dx, dy = xx - centre_x, yy - centre_y
    u, v = _rotated(dx, dy, rng.uniform(0, 2 * np.pi, count))
    block = 2 if size >= 16 else 1
    coarse = rng.random((count, -(-size // block), -(-size // block)), dtype=np.float32)
    blocky_noise = np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)[:, :size, :size]
    patterns = {
        "stripes": np.sin(frequency * u + phase_u) > 0,
        "checker": np.sin(frequency * u + phase_u) * np.sin(frequency * v + phase_v) > 0,
        "dots": np.cos(frequency * u + phase_u) + np.cos(frequency * v + phase_v) > 1.0,
        "noise": blocky_noise > 0.5,
        "gradient": np.clip(0.5 + u / size, 0, 1),
        "rings": np.sin(frequency * np.hypot(dx, dy) + phase_u) > 0,
    }
    coverage = np.zeros((count, size, size), dtype=np.float32)
    for index, name in enumerate(TEXTURE_CLASSES):
        selected = labels == index
        coverage[selected] = patterns[name][selected]
    images = _compose(coverage, *_contrasting_colours(rng, count))
    return _add_noise(rng, images, 0.02, 0.1), labels


ORIENTATION_BINS = 8
ORIENTATION_CLASSES = [f"{round(180 * k / ORIENTATION_BINS, 1):g}deg" for k in range(ORIENTATION_BINS)]


def _draw_orientations(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(rng, count, ORIENTATION_BINS)
    angle = (labels + rng.random(count)) * np.pi / ORIENTATION_BINS
    yy, xx = _grid(size)
    centre_y, centre_x = (_column(size / 2 + rng.uniform(-size / 6, size / 6, count)) for _ in range(2))
    dx, dy = xx - centre_x, yy - centre_y
    # Image y grows downwards; flipping it makes the angle counter-clockwise as seen.
    u, v = _rotated(dx, -dy, angle)
    half_width = _column(rng.uniform(0.9, 2.2, count))
    half_length = _column(rng.uniform(0.25, 0.45, count) * size)
    bar = (np.abs(v) <= half_width) & (np.abs(u) <= half_length)
    frequency = _column(rng.uniform(0.6, 1.2, count))
    window = np.hypot(dx, dy) <= _column(rng.uniform(0.3, 0.5, count) * size)
    grating = (np.sin(frequency * v + _column(rng.uniform(0, 2 * np.pi, count))) > 0) & window
    mask = np.where(_column(rng.random(count)) < 0.5, bar, grating)
    images = _compose(mask, *_contrasting_colours(rng, count))
    images = _background_gradient(rng, images, 0.15)
    return _add_noise(rng, images, 0.02, 0.08), labels


HUE_BINS = 8
COLOUR_CLASSES = ["red", "orange", "yellow", "lime", "green", "cyan", "blue", "purple"]


def _ellipse(rng: np.random.Generator, count: int, size: int, radius_range: tuple[float, float]) -> np.ndarray:
    yy, xx = _grid(size)
    semi_axes = [_column(rng.uniform(*radius_range, count) * size) for _ in range(2)]
    margin = float(radius_range[1] * size * 0.7)
    centre_y, centre_x = (_column(rng.uniform(margin, size - margin, count)) for _ in range(2))
    u, v = _rotated(xx - centre_x, yy - centre_y, rng.uniform(0, np.pi, count))
    return (u / semi_axes[0]) ** 2 + (v / semi_axes[1]) ** 2 <= 1


def _draw_colours(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(rng, count, HUE_BINS)
    # Bin 0 is centred on red, so a class is a hue interval of width 1/8 around its name.
    hue = ((labels + rng.random(count) - 0.5) / HUE_BINS) % 1.0
    colour = _hsv_to_rgb(hue, rng.uniform(0.5, 1.0, count), rng.uniform(0.5, 1.0, count))
    grey = _hsv_to_rgb(rng.random(count), rng.uniform(0.0, 0.25, count), rng.uniform(0.1, 0.9, count))
    images = _compose(_ellipse(rng, count, size, (0.18, 0.36)), colour, grey)
    # A smaller object of another hue, so the class is the dominant hue, not just any saturated pixel.
    distractor_hue = (hue + rng.uniform(0.2, 0.8, count)) % 1.0
    distractor = _hsv_to_rgb(distractor_hue, rng.uniform(0.5, 1.0, count), rng.uniform(0.5, 1.0, count))
    distractor_mask = _ellipse(rng, count, size, (0.07, 0.14)) & (rng.random(count) < 0.7)[:, None, None]
    images = np.where(distractor_mask[:, None], distractor[:, :, None, None], images)
    # Speckles of random hue and a global colour cast push the answer away from a single-pixel lookup.
    speckle_hue = rng.random((count, size, size), dtype=np.float32)
    speckles = _hsv_to_rgb(speckle_hue, np.ones_like(speckle_hue), np.ones_like(speckle_hue)).transpose(0, 3, 1, 2)
    speckled = rng.random((count, 1, size, size)) < _column(rng.uniform(0.0, 0.12, count))[:, None]
    images = np.where(speckled, speckles, images)
    images = images + rng.uniform(-0.1, 0.1, (count, 3, 1, 1)).astype(np.float32)
    return _add_noise(rng, images, 0.02, 0.06), labels


MAX_COUNT = 6
COUNT_CLASSES = [str(k) for k in range(1, MAX_COUNT + 1)]


def _draw_counts(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(rng, count, MAX_COUNT)
    cells_per_side = 3
    cell = size / cells_per_side
    # Blobs sit in distinct cells of a 3×3 grid (random cells, jittered): they never merge, so the count is defined.
    cell_rank = np.argsort(np.argsort(rng.random((count, cells_per_side**2)), axis=1), axis=1)
    present = cell_rank <= labels[:, None]  # label k means k + 1 blobs
    yy, xx = _grid(size)
    mask = np.zeros((count, size, size), dtype=bool)
    for index in range(cells_per_side**2):
        radius = rng.uniform(0.09, 0.13, count) * size
        slack = np.maximum(cell / 2 - radius, 0)
        row, column = divmod(index, cells_per_side)
        centre_y = (row + 0.5) * cell + rng.uniform(-1, 1, count) * slack
        centre_x = (column + 0.5) * cell + rng.uniform(-1, 1, count) * slack
        blob = np.hypot(yy - _column(centre_y), xx - _column(centre_x)) <= _column(radius)
        mask |= blob & present[:, index, None, None]
    images = _compose(mask, *_contrasting_colours(rng, count))
    images = _background_gradient(rng, images, 0.15)
    return _add_noise(rng, images, 0.02, 0.08), labels


def _procedural(source: str, class_names: list[str], draw: _Drawer) -> TaskGenerator:
    def generate(sizes: Mapping[str, int], image_size: int, seed: int) -> TaskData:
        splits = {}
        for split, count in sizes.items():
            images, labels = draw(count, image_size, _rng(seed, source, split))
            splits[split] = (_to_uint8(images), torch.from_numpy(labels))
        return TaskData(list(class_names), splits)

    generate.__name__ = f"generate_{source}"
    return generate


DIGIT_CLASSES = [str(k) for k in range(10)]


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _render_digits(ink: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """8×8 ink maps -> N×3×S×S: random zoom, rotation and shift (one affine resampling), tint and noise."""
    count = ink.shape[0]
    zoom = rng.uniform(0.95, 1.25, count)  # > 1 shrinks the digit inside the canvas
    angle = rng.uniform(-0.15, 0.15, count)
    shift = rng.uniform(-0.12, 0.12, (count, 2))
    theta = np.zeros((count, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = zoom * np.cos(angle), -zoom * np.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = zoom * np.sin(angle), zoom * np.cos(angle)
    theta[:, :, 2] = shift
    with torch.no_grad():
        grid = F.affine_grid(torch.from_numpy(theta), [count, 1, size, size], align_corners=False)
        resampled = F.grid_sample(torch.from_numpy(ink[:, None]), grid, mode="bilinear", align_corners=False)
    images = _compose(resampled[:, 0].numpy(), *_contrasting_colours(rng, count))
    images = _background_gradient(rng, images, 0.15)
    return _add_noise(rng, images, 0.01, 0.05)


def digits_split_indices(sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """Indices into scikit-learn's 1797 digit images per split: disjoint slices of one seeded permutation."""
    available = len(_digits()[1])
    requested = sum(sizes.values())
    if requested > available:
        raise DataError(
            "digits", f"the splits ask for {requested} images in all, but only {available} digit images exist"
        )
    order = _rng(seed, "digits", "split").permutation(available)
    indices, start = {}, 0
    # Sorted split names, so the assignment of images to splits does not depend on the mapping's order.
    for split in sorted(sizes):
        indices[split] = order[start : start + sizes[split]]
        start += sizes[split]
    return {split: indices[split] for split in sizes}


def _generate_digits(sizes: Mapping[str, int], image_size: int, seed: int) -> TaskData:
    ink, targets = _digits()
    splits = {}
    for split, chosen in digits_split_indices(sizes, seed).items():
        images = _render_digits(ink[chosen], image_size, _rng(seed, "digits", split))
        splits[split] = (_to_uint8(images), torch.from_numpy(targets[chosen].copy()))
    return TaskData(list(DIGIT_CLASSES), splits)


TASK_SOURCES: dict[str, TaskGenerator] = {
    "digits": _generate_digits,
    "shapes": _procedural("shapes", SHAPE_CLASSES, _draw_shapes),
    "textures": _procedural("textures", TEXTURE_CLASSES, _draw_textures),
    "orientations": _procedural("orientations", ORIENTATION_CLASSES, _draw_orientations),
    "colours": _procedural("colours", COLOUR_CLASSES, _draw_colours),
    "counts": _procedural("counts", COUNT_CLASSES, _draw_counts),
}


# --------------------------------------------------------------------------------------------- public API


def _check_arguments(source: str, image_size: int, seed: int) -> None:
    if source not in TASK_SOURCES:
        raise DataError(source, f"unknown task source; known sources are {', '.join(sorted(TASK_SOURCES))}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise DataError(source, f"image_size must be an integer of at least 8, got {image_size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DataError(source, f"seed must be a non-negative integer, got {seed!r}")


def make_task(source: str, sizes: Mapping[str, int], image_size: int = 32, seed: int = 0) -> TaskData:
    """The requested splits (name -> number of images) of one task source; deterministic in all arguments."""
    _check_arguments(source, image_size, seed)
    if not sizes:
        raise DataError(source, "no splits requested")
    for split, count in sizes.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise DataError(source, f"split {split!r} must ask for a positive number of images, got {count!r}")
    return TASK_SOURCES[source](sizes, image_size, seed)


def make_pretrain_mixture(
    sources: Sequence[str], images_per_source: int, image_size: int = 32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images of every source with a pretext label (source, rotation), never the tasks' own labels.

    Label = source index × 4 + k for a rotation by k·90°, so the backbone learns generic features (what kind of
    image, which way up) without seeing any task's classes. The images come from their own seed stream.
    """
    if not sources:
        raise DataError("pretrain mixture", "no sources given")
    if len(set(sources)) != len(sources):
        raise DataError("pretrain mixture", f"sources repeat: {list(sources)}")
    for source in sources:
        _check_arguments(source, image_size, seed)
    mixture_seed = int(np.random.SeedSequence([seed, zlib.crc32(_PRETRAIN_TAG.encode())]).generate_state(1)[0])
    all_images, all_labels = [], []
    for source_index, source in enumerate(sources):
        images, _ = make_task(source, {"pretrain": images_per_source}, image_size, mixture_seed).splits["pretrain"]
        rotation = torch.from_numpy(_balanced_labels(_rng(mixture_seed, source, "rotation"), len(images), 4))
        for k in range(len(ROTATIONS)):
            selected = rotation == k
            images[selected] = torch.rot90(images[selected], k, dims=(2, 3))
        all_images.append(images)
        all_labels.append(source_index * len(ROTATIONS) + rotation)
    order = torch.from_numpy(_rng(mixture_seed, "shuffle").permutation(len(sources) * images_per_source))
    class_names = [f"{source}/rot{degrees}" for source in sources for degrees in ROTATIONS]
    return torch.cat(all_images)[order].contiguous(), torch.cat(all_labels)[order].contiguous(), class_names
