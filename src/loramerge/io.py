"""Writing results atomically: a temporary sibling that is renamed into place only once complete."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from loramerge.adapters import CONFIG_FILE, SAFETENSORS_FILE, fits_float32
from loramerge.atomic import reporting_full_disk, write_json
from loramerge.errors import LoramergeError, SubjectError
from loramerge.updates import LowRankUpdate, Update

DELTA_FILE = "delta.safetensors"


@contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes `path` on success; on any error nothing is left behind."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise LoramergeError(f"{path}: output already exists (pass --overwrite to replace it)")
    missing_parents = [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        with reporting_full_disk(path):  # a write inside the folder that runs out of space names the folder
            yield staging
            if path.exists():
                shutil.rmtree(path)
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in reversed(missing_parents):
            if parent.exists() and not any(parent.iterdir()):
                parent.rmdir()
        raise


def write_safetensors_stream(
    path: str | Path,
    layout: Iterable[tuple[str, tuple[int, ...]]],
    tensors: Iterable[tuple[str, torch.Tensor]],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """A float32 safetensors file written one tensor at a time, so peak memory is one tensor, not the model.

    The header needs every shape up front (`layout`); `tensors` must then yield the same names in the same order.
    """
    layout = list(layout)
    header: dict[str, Any] = {"__metadata__": dict(metadata or {})}
    offset = 0
    for name, shape in layout:
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for (name, shape), (given_name, tensor) in zip(layout, tensors, strict=True):
            if name != given_name or tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"expected {name} {shape}, got {given_name} {tuple(tensor.shape)}")
            handle.write(tensor.detach().float().contiguous().numpy().tobytes())


def write_delta(
    folder: Path, shapes: Mapping[str, tuple[int, int]], updates: Iterable[tuple[str, Update]], metadata: dict
) -> None:
    """`delta.safetensors`: one dense float32 ΔW (O × I) per module, keyed `<module path>.weight`; a ΔW that
    overflowed float32 stops the write."""
    layout = [(f"{name}.weight", shape) for name, shape in sorted(shapes.items())]
    dense = ((f"{name}.weight", _finite(name, update.dense())) for name, update in updates)
    write_safetensors_stream(folder / DELTA_FILE, layout, dense, {k: str(v) for k, v in metadata.items()})


def _overflowed(module: str) -> SubjectError:
    return SubjectError(
        f"merged module {module}",
        "the merged update overflows float32 (Inf or NaN); the adapters' updates are too large to merge",
    )


def _finite(module: str, dense: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(dense).all():
        raise _overflowed(module)
    return dense


def write_peft_adapter(folder: Path, updates: Mapping[str, LowRankUpdate], source_config: Mapping[str, Any]) -> None:
    """A peft LoRA adapter with ΔW = B·A per module: lora_alpha = r per module, so the scale is 1. Factors whose
    product can overflow float32 are refused, as reading the adapter back would refuse them."""
    for name, update in updates.items():
        A, B = update.A.float(), update.B.float()
        if not (torch.isfinite(A).all() and torch.isfinite(B).all() and fits_float32(A, B)):
            raise _overflowed(name)
    ranks = {name: update.rank for name, update in sorted(updates.items()) if update.rank > 0}
    if not ranks:
        raise LoramergeError(f"{folder}: the merged update is zero in every module; there is no adapter to write")
    common_rank = max(Counter(ranks.values()).most_common(), key=lambda item: (item[1], item[0]))[0]
    exceptions = {name: rank for name, rank in ranks.items() if rank != common_rank}
    config = {
        "peft_type": "LORA",
        "r": common_rank,
        "lora_alpha": common_rank,
        "rank_pattern": exceptions,
        "alpha_pattern": exceptions,
        "target_modules": sorted(ranks),
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": bool(source_config.get("fan_in_fan_out", False)),
        "base_model_name_or_path": source_config.get("base_model_name_or_path"),
        "task_type": source_config.get("task_type"),
        "inference_mode": True,
        "modules_to_save": None,
    }
    state = {}
    for name in ranks:
        state[f"base_model.model.{name}.lora_A.weight"] = updates[name].A.float().contiguous()
        state[f"base_model.model.{name}.lora_B.weight"] = updates[name].B.float().contiguous()
    save_file(state, folder / SAFETENSORS_FILE, metadata={"format": "pt"})
    write_json(folder / CONFIG_FILE, config)
