"""A weight update (a merge, or one adapter alone) put onto any torch module in place, and taken off exactly.

An update maps module paths to dense ΔW (O × I). `updated(model, update, λ)` sets W = W0 + λ·ΔW for the block and then
copies the kept W0 back, so one loaded model serves every merge and every λ of an evaluation job: the weights after the
block are bit for bit the weights before it, whatever λ was (subtracting λ·ΔW again would leave rounding behind).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from loramerge.adapters import CONFIG_FILE as ADAPTER_CONFIG_FILE
from loramerge.adapters import load_adapter
from loramerge.errors import AdapterError, SubjectError
from loramerge.io import DELTA_FILE


class UpdateError(SubjectError):
    """An update folder, or a module of an update, that cannot be applied; the message starts with its path or name."""


def load_update(folder: str | Path) -> dict[str, torch.Tensor]:
    """Module path -> dense float32 ΔW (O × I) of a peft adapter folder or a `delta.safetensors` folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UpdateError(folder, "update folder does not exist")
    has_adapter, has_delta = (folder / ADAPTER_CONFIG_FILE).is_file(), (folder / DELTA_FILE).is_file()
    if has_adapter and has_delta:
        raise UpdateError(folder, f"holds both {ADAPTER_CONFIG_FILE} and {DELTA_FILE}; which update is meant?")
    if has_adapter:
        adapter = load_adapter(folder)
        return {module: lora.delta() for module, lora in adapter.modules.items()}
    if not has_delta:
        raise UpdateError(folder, f"neither a peft adapter ({ADAPTER_CONFIG_FILE}) nor a dense update ({DELTA_FILE})")
    return _read_delta(folder / DELTA_FILE)


def _read_delta(path: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(path, device="cpu")
    except Exception as error:  # safetensors raises several private error types on corrupt files
        raise AdapterError(path, f"unreadable safetensors file: {error}") from error
    update = {}
    for key, tensor in sorted(tensors.items()):
        if not key.endswith(".weight"):
            raise AdapterError(path, f"tensor {key!r} is not named <module path>.weight")
        if tensor.ndim != 2 or not tensor.is_floating_point():
            raise AdapterError(
                path, f"tensor {key!r} must be a 2-D float matrix, got {tensor.dtype} {tuple(tensor.shape)}"
            )
        if not torch.isfinite(tensor).all():
            raise AdapterError(path, f"tensor {key!r} holds NaN or Inf")
        update[key.removesuffix(".weight")] = tensor.float()
    if not update:
        raise AdapterError(path, "no tensors")
    return update


def _weight(model: torch.nn.Module, module_path: str, prefixes: Sequence[str]) -> torch.nn.Parameter:
    # The first prefix under which the module exists: adapters name modules relative to the sub-model they were
    # trained on (e.g. a bare vision tower), the model may be its wrapper (the caller knows which roots to try).
    for prefix in prefixes:
        try:
            module = model.get_submodule(f"{prefix}{module_path}")
        except AttributeError:
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise UpdateError(module_path, f"is a {type(module).__name__} without a 2-D weight")
        return weight
    tried = ", ".join(repr(prefix) for prefix in prefixes)
    raise UpdateError(module_path, f"no such module in the {type(model).__name__} (prefixes tried: {tried})")


def resolve_weights(
    model: torch.nn.Module, update: Mapping[str, torch.Tensor], prefixes: Sequence[str] = ("",)
) -> dict[str, torch.nn.Parameter]:
    """The weight of every module the update touches, each checked against its ΔW's shape before any weight changes."""
    weights = {}
    for module_path, delta in update.items():
        weight = _weight(model, module_path, prefixes)
        if tuple(delta.shape) != tuple(weight.shape):
            raise UpdateError(
                module_path, f"update has shape {tuple(delta.shape)} but the weight is {tuple(weight.shape)}"
            )
        weights[module_path] = weight
    return weights


def apply_update(
    model: torch.nn.Module, update: Mapping[str, torch.Tensor], scale: float = 1.0, prefixes: Sequence[str] = ("",)
) -> None:
    """W += scale · ΔW in place for every module of the update; nothing changes if any module is refused."""
    _add(resolve_weights(model, update, prefixes), update, scale)


def _add(weights: Mapping[str, torch.nn.Parameter], update: Mapping[str, torch.Tensor], scale: float) -> None:
    with torch.no_grad():
        for module_path, weight in weights.items():
            weight.add_(update[module_path].to(device=weight.device, dtype=weight.dtype), alpha=scale)


@contextlib.contextmanager
def updated(
    model: torch.nn.Module, update: Mapping[str, torch.Tensor], scale: float = 1.0, prefixes: Sequence[str] = ("",)
) -> Iterator[torch.nn.Module]:
    """The model with W0 + scale · ΔW inside the block; W0 is copied back from a kept copy on the way out, also when
    the block raises."""
    weights = resolve_weights(model, update, prefixes)
    kept = {module_path: weight.detach().clone() for module_path, weight in weights.items()}
    try:
        _add(weights, update, scale)
        yield model
    finally:
        with torch.no_grad():
            for module_path, weight in weights.items():
                weight.copy_(kept[module_path])
