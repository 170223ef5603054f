"""Each task's head in a Llama NLI suite: the adapter file's own `score` weight, or the KnOTS authors' heads file.

KnOTS copies a task's head into the merged model before evaluating that task; heads are never merged. The authors'
file (a pickled {task: classes × hidden} map whose masked rows are zero) is pinned by URL and sha256 and fetched
through the lock. When both are at hand, they must agree on every unmasked row (masked classes score −inf, so their
rows never matter); the config says which one the evaluation uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loramerge.adapters import SAFETENSORS_FILE, read_pickled_tensors
from loramerge.atomic import write_atomically
from loramerge.repro.hub import HubError, fetch_url
from loramerge.repro.splits import DataError


def fetch_authors_heads(
    lock: Mapping[str, Any], lock_path: str | Path, url: str, sha256: str, destination: str | Path
) -> list[str]:
    """Download the authors' heads file at its locked checksum (which must be the one the config pins), and store
    its tensors as safetensors; returns the tasks it holds. The pickle is read weights-only."""
    locked = lock["urls"].get(url)
    if locked is not None and locked != sha256:
        raise HubError(url, f"the lock records sha256 {locked} but nli.heads.authors.sha256 pins {sha256}")
    with tempfile.TemporaryDirectory() as scratch:
        pickled = fetch_url(lock, lock_path, url, Path(scratch) / "heads.pt")
        heads = read_pickled_tensors(pickled)
    for task, head in heads.items():
        if head.ndim != 2 or not head.is_floating_point():
            shape = f"{head.dtype} {tuple(head.shape)}"
            raise DataError(url, f"the head of {task!r} must be a float classes × hidden matrix, got {shape}")
    tensors = {task: head.float().contiguous() for task, head in sorted(heads.items())}
    write_atomically(destination, lambda staging: save_file(tensors, staging, metadata={"url": url, "sha256": sha256}))
    return sorted(tensors)


def read_head(path: str | Path, key: str, shape: tuple[int, int], what: str) -> torch.Tensor | None:
    """The float32 tensor `key` of a safetensors file, checked to be a finite `shape` matrix; None when the file
    lacks it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file does not exist")
    try:
        with safe_open(path, framework="pt") as handle:
            head = handle.get_tensor(key) if key in set(handle.keys()) else None
    except Exception as error:  # safetensors raises several private error types on corrupt files
        raise DataError(path, f"unreadable safetensors file: {error}") from error
    if head is None:
        return None
    if tuple(head.shape) != tuple(shape) or not head.is_floating_point():
        raise DataError(path, f"{what} {key!r} must be a float {shape} matrix, got {head.dtype} {tuple(head.shape)}")
    if not torch.isfinite(head).all():
        raise DataError(path, f"{what} {key!r} holds NaN or Inf")
    return head.float()


def task_head(
    task: str,
    adapter_folder: str | Path,
    adapter_key: str,
    authors_file: str | Path | None,
    source: str,
    shape: tuple[int, int],
    masked: Sequence[int],
    max_difference: float,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The head `source` ('adapter' or 'authors') names for `task`, and what was checked: when the authors' file is
    given, both heads must agree on the unmasked rows within `max_difference`."""
    adapter_file = Path(adapter_folder) / SAFETENSORS_FILE
    heads = {"adapter": read_head(adapter_file, adapter_key, shape, "the adapter's head")}
    if authors_file is not None:
        heads["authors"] = read_head(authors_file, task, shape, "the authors' head of task")
        if heads["authors"] is None:
            raise DataError(authors_file, f"holds no head for task {task!r}")
    if source not in heads:
        raise DataError(task, f"nli.heads.source is {source!r} but no authors' heads file is given")
    if heads[source] is None:
        raise DataError(adapter_file, f"has no head {adapter_key!r}, which nli.heads.source 'adapter' reads")
    info: dict[str, Any] = {"source": source, "compared": False}
    if heads["adapter"] is not None and heads.get("authors") is not None:
        kept = [row for row in range(shape[0]) if row not in set(masked)]
        difference = float((heads["adapter"][kept] - heads["authors"][kept]).abs().max())
        if difference > max_difference:
            raise DataError(
                task,
                f"the adapter's head and the authors' differ by up to {difference:.3g} on the unmasked rows {kept}, "
                f"more than nli.heads.max_difference ({max_difference:g}): they are not the same heads",
            )
        info.update(compared=True, max_difference=difference)
    return heads[source], info
