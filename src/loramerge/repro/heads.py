"""Task head files: one `weight` tensor (n_classes × D) with the class names in the metadata, written by every suite
(trained prototype heads, CLIP zero-shot text heads, an adapter's own `score` weight) and read by every evaluation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from loramerge.atomic import write_atomically
from loramerge.repro.splits import CLASS_NAMES_KEY, DataError, read_labelled_tensors

HEAD_FILE = "head.safetensors"
HEAD_KEY = "weight"


def save_head(
    path: str | Path, head: torch.Tensor, class_names: Sequence[str], metadata: Mapping[str, str] | None = None
) -> None:
    """Write `head` (float32, one row per class) atomically."""
    if head.ndim != 2 or head.shape[0] != len(class_names):
        raise DataError(path, f"head of shape {tuple(head.shape)} does not match {len(class_names)} class names")
    header = {key: str(value) for key, value in (metadata or {}).items()}
    header[CLASS_NAMES_KEY] = json.dumps(list(class_names))
    tensors = {HEAD_KEY: head.detach().float().cpu().contiguous()}
    write_atomically(path, lambda staging: save_file(tensors, staging, metadata=header))


def load_head(path: str | Path) -> tuple[torch.Tensor, list[str]]:
    """(float32 n_classes × D head, class names) of a head file, validated."""
    tensors, class_names = read_labelled_tensors(path, (HEAD_KEY,), "head")
    head = tensors[HEAD_KEY]
    if head.ndim != 2 or not head.is_floating_point() or head.shape[0] != len(class_names):
        raise DataError(
            path, f"head must be a float n_classes × D matrix for {len(class_names)} classes, got {tuple(head.shape)}"
        )
    if not torch.isfinite(head).all():
        raise DataError(path, "head holds NaN or Inf")
    return head.float(), class_names
