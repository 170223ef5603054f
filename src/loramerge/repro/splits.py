"""The data-split files the suites write and every evaluation reads: one safetensors file per task and split, with
the inputs (uint8 N×3×S×S `images` for vision suites, padded int32 `input_ids` for text suites) and int64 `labels`,
and the class names as JSON in the metadata. Heads use the same metadata convention (`loramerge.repro.heads`)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loramerge.atomic import write_atomically
from loramerge.errors import SubjectError

IMAGES_KEY, LABELS_KEY = "images", "labels"
CLASS_NAMES_KEY = "class_names"


class DataError(SubjectError):
    """A task, split or data file that cannot be produced or used; the message starts with its name or path."""


def save_split(
    path: str | Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """One safetensors file (`images`, `labels`; class names and metadata as JSON), renamed into place when whole."""
    path = Path(path)
    _check_split(path, images, labels, list(class_names))
    header = {key: str(value) for key, value in (metadata or {}).items()}
    if CLASS_NAMES_KEY in header:
        raise DataError(path, f"metadata key {CLASS_NAMES_KEY!r} is reserved for the class names")
    header[CLASS_NAMES_KEY] = json.dumps(list(class_names))
    tensors = {IMAGES_KEY: images.contiguous(), LABELS_KEY: labels.contiguous()}
    write_atomically(path, lambda staging: save_file(tensors, staging, metadata=header))


def _check_split(path: Path, images: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise DataError(path, f"images must be uint8 N×3×S×S, got {images.dtype} {tuple(images.shape)}")
    _check_labels(path, labels, len(images), class_names)


def _check_labels(path: Path, labels: torch.Tensor, examples: int, class_names: list[str]) -> None:
    if labels.dtype != torch.int64 or labels.ndim != 1 or len(labels) != examples:
        raise DataError(
            path,
            f"labels must be int64 of length {examples} (one per example), got {labels.dtype} {tuple(labels.shape)}",
        )
    if not class_names or not all(isinstance(name, str) for name in class_names):
        raise DataError(path, "class names must be a non-empty list of strings")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise DataError(
            path, f"labels must lie in [0, {len(class_names)}), got {int(labels.min())}..{int(labels.max())}"
        )


def read_labelled_tensors(
    path: str | Path, keys: Sequence[str], kind: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors `keys` (exactly those) and the class names of a safetensors file that stores its class names in
    the metadata (data splits, classification heads); every problem is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{kind} file does not exist")
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            found = set(handle.keys())
            if found != set(keys):
                raise DataError(path, f"expected tensors {sorted(keys)}, found {sorted(found)}")
            tensors = {key: handle.get_tensor(key) for key in keys}
    except DataError:
        raise
    except Exception as error:  # safetensors raises several private error types on corrupt files
        raise DataError(path, f"unreadable safetensors file: {_truncation(path) or error}") from error
    try:
        class_names = json.loads(header[CLASS_NAMES_KEY])
    except KeyError:
        raise DataError(path, f"no {CLASS_NAMES_KEY!r} in the file's metadata") from None
    except json.JSONDecodeError as error:
        raise DataError(path, f"{CLASS_NAMES_KEY!r} metadata is not valid JSON: {error}") from error
    if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
        raise DataError(path, f"{CLASS_NAMES_KEY!r} metadata must be a JSON list of strings")
    return tensors, class_names


def _truncation(path: Path) -> str | None:
    """What is missing when a safetensors file is shorter than its own header says (a write or copy cut short), so
    that the error says "truncated" rather than safetensors' parse error; None when its length is not the problem."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        length_field = handle.read(8)
        if len(length_field) < 8:
            return f"truncated: {size} bytes, shorter than the 8-byte header length of a safetensors file"
        header_end = 8 + struct.unpack("<Q", length_field)[0]
        if header_end > size:
            return f"truncated: {size} bytes, but its header alone takes {header_end}"
        try:
            header = json.loads(handle.read(header_end - 8))
            data_end = header_end + max(
                (entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0
            )
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return None  # not a length problem: safetensors' own error says what is wrong
    return f"truncated: {size} bytes, but its header says {data_end}" if data_end > size else None


def load_split(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(uint8 images, int64 labels, class names) of a file written by `save_split`, validated."""
    tensors, class_names = read_labelled_tensors(path, (IMAGES_KEY, LABELS_KEY), "split")
    images, labels = tensors[IMAGES_KEY], tensors[LABELS_KEY]
    _check_split(Path(path), images, labels, class_names)
    return images, labels, class_names


# ------------------------------------------------------------------------------------------------- token splits
# Text suites store tokenised examples as one int32 N × L matrix: row i holds example i's token ids, right-padded
# with PAD_ID (never a token id) to the longest example.
TOKENS_KEY = "input_ids"
PAD_ID = -1


def pad_sequences(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """int32 N × max-length matrix of the sequences, right-padded with PAD_ID."""
    width = max((len(sequence) for sequence in sequences), default=1)
    tokens = torch.full((len(sequences), width), PAD_ID, dtype=torch.int32)
    for row, sequence in enumerate(sequences):
        tokens[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.int32)
    return tokens


def sequence_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """int64 number of real tokens per row of a PAD_ID-padded matrix."""
    return (tokens != PAD_ID).sum(dim=1)


def _check_tokens(path: Path, tokens: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> None:
    if tokens.dtype != torch.int32 or tokens.ndim != 2:
        raise DataError(path, f"token ids must be an int32 N × L matrix, got {tokens.dtype} {tuple(tokens.shape)}")
    lengths = sequence_lengths(tokens)
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    if len(tokens) and (lengths.min() < 1 or ((tokens == PAD_ID) != (positions >= lengths[:, None])).any()):
        raise DataError(path, f"every row must be at least one token id followed only by padding ({PAD_ID})")
    if len(tokens) and tokens.min() < PAD_ID:
        raise DataError(path, f"token ids must be non-negative (padding is {PAD_ID})")
    _check_labels(path, labels, len(tokens), class_names)


def save_token_split(
    path: str | Path,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """A text suite's split file: `input_ids` (see PAD_ID), `labels`, class names and metadata, written atomically."""
    path = Path(path)
    _check_tokens(path, tokens, labels, list(class_names))
    header = {key: str(value) for key, value in (metadata or {}).items()}
    if CLASS_NAMES_KEY in header:
        raise DataError(path, f"metadata key {CLASS_NAMES_KEY!r} is reserved for the class names")
    header[CLASS_NAMES_KEY] = json.dumps(list(class_names))
    tensors = {TOKENS_KEY: tokens.contiguous(), LABELS_KEY: labels.contiguous()}
    write_atomically(path, lambda staging: save_file(tensors, staging, metadata=header))


def load_token_split(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(int32 padded token ids, int64 labels, class names) of a file written by `save_token_split`, validated."""
    tensors, class_names = read_labelled_tensors(path, (TOKENS_KEY, LABELS_KEY), "split")
    tokens, labels = tensors[TOKENS_KEY], tensors[LABELS_KEY]
    _check_tokens(Path(path), tokens, labels, class_names)
    return tokens, labels, class_names
