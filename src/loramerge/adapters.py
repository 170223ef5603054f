"""Reading peft LoRA adapter folders into per-module factor stacks.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (or a pickled ``adapter_model.bin``, read
with ``torch.load(weights_only=True)`` only). Key names of every peft version map to one canonical module path, the
name of the targeted ``nn.Linear`` inside the base model (``vision_model.encoder.layers.0.self_attn.q_proj``).
The LoRA scale s (lora_alpha/r, or lora_alpha/sqrt(r) for rsLoRA, per module through rank_pattern/alpha_pattern)
is folded into B, so that ΔW_t = B_t·A_t downstream.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from loramerge.errors import AdapterError, ParameterError

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"

# base_model.model.<module>[.base_layer].lora_{A,B}[.<adapter name>].weight; old (0.3) and new peft alike.
_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+?)(?:\.base_layer)?\.lora_(?P<factor>A|B)(?:\.(?P<adapter>[\w\-]+))?\.weight$"
)
# LoRA-family tensors that a plain ΔW = s·B·A merge cannot represent: embedding LoRA, DoRA magnitudes, LoRA biases.
_UNSUPPORTED_KEY = re.compile(r"lora_embedding_[AB]|lora_magnitude_vector|lora_[AB](\.[\w\-]+)?\.bias$")


@dataclass(frozen=True)
class LoraModule:
    """One targeted linear layer of one adapter: ΔW = scale · B · A."""

    A: torch.Tensor  # r × I
    B: torch.Tensor  # O × r
    scale: float

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return self.B.shape[0], self.A.shape[1]

    def delta(self) -> torch.Tensor:
        return (self.scale * self.B) @ self.A


@dataclass(frozen=True)
class LoraAdapter:
    path: Path
    config: dict
    modules: dict[str, LoraModule]
    other_tensors: dict[str, torch.Tensor] = field(repr=False)
    weights_file: Path
    sha256: dict[str, str]  # file name -> hex digest

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ModuleStack:
    """All adapters' factors for one module, scale folded into B: ΔW_t = B[i] @ A[i] for task tasks[i]."""

    name: str
    tasks: tuple[int, ...]
    A: tuple[torch.Tensor, ...]
    B: tuple[torch.Tensor, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.B[0].shape[0], self.A[0].shape[1]

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(a.shape[0] for a in self.A)

    def delta(self, position: int) -> torch.Tensor:
        return self.B[position] @ self.A[position]

    def float64(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [a.double() for a in self.A], [b.double() for b in self.B]


@dataclass(frozen=True)
class AdapterSet:
    """n ≥ 2 validated adapters and their modules, each merged over the adapters that have it."""

    adapters: tuple[LoraAdapter, ...]
    stacks: dict[str, ModuleStack]

    @property
    def modules(self) -> list[str]:
        return sorted(self.stacks)

    @property
    def task_names(self) -> list[str]:
        return [a.name for a in self.adapters]

    def __len__(self) -> int:
        return len(self.adapters)

    def provenance(self) -> list[dict]:
        return [{"path": str(a.path), "sha256": a.sha256} for a in self.adapters]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_module_path(key: str) -> tuple[str, str] | None:
    """(module path, 'A' | 'B') for a LoRA factor key of any peft version, None for other tensors."""
    match = _LORA_KEY.match(key)
    if match is None:
        return None
    return match["module"], match["factor"]


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _pattern_value(patterns: Mapping[str, float], module: str, default: float) -> float:
    # peft.utils.other.get_pattern_key: the first pattern that matches a dotted suffix of the module name.
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def _check_patterns(config: dict, config_path: Path) -> None:
    for key in ("rank_pattern", "alpha_pattern"):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict):
            raise AdapterError(config_path, f"{key} must be a JSON object of pattern -> number")
        for pattern, value in patterns.items():
            if not _positive_number(value) or (key == "rank_pattern" and not isinstance(value, int)):
                kind = "a positive integer" if key == "rank_pattern" else "a positive finite number"
                raise AdapterError(config_path, f"{key}[{pattern!r}] must be {kind}, got {value!r}")
            try:
                re.compile(pattern)
            except re.error as error:
                raise AdapterError(
                    config_path, f"{key} key {pattern!r} is not a valid regular expression: {error}"
                ) from error


def _read_config(path: Path) -> dict:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterError(config_path, f"missing {CONFIG_FILE}: not a peft adapter folder")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise AdapterError(config_path, f"unreadable: {error}") from error
    except json.JSONDecodeError as error:
        raise AdapterError(config_path, f"invalid JSON: {error}") from error
    if not isinstance(config, dict):
        raise AdapterError(config_path, "invalid adapter config: expected a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise AdapterError(config_path, f"peft_type is {config.get('peft_type')!r}; only LORA adapters can be merged")
    if config.get("use_dora"):
        raise AdapterError(config_path, "use_dora is set; DoRA adapters are not plain LoRA and cannot be merged")
    for key in ("r", "lora_alpha"):
        if not _positive_number(config.get(key)):
            raise AdapterError(config_path, f"{key} must be a positive finite number, got {config.get(key)!r}")
    _check_patterns(config, config_path)
    return config


def read_pickled_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A torch-pickled mapping of names to tensors (peft's `adapter_model.bin`, a `pytorch_model.bin`), unpickled
    with `weights_only=True`: anything but tensors is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise AdapterError(path, f"refused to unpickle anything but tensors: {error}") from error
    except Exception as error:
        raise AdapterError(path, f"unreadable torch file: {error}") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise AdapterError(path, "expected a mapping of names to tensors")
    return dict(state)


def _read_tensors(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    safetensors_path, pickle_path = path / SAFETENSORS_FILE, path / PICKLE_FILE
    if safetensors_path.is_file():
        try:
            return safetensors_path, load_file(safetensors_path, device="cpu")
        except Exception as error:  # safetensors raises several private error types on corrupt files
            raise AdapterError(safetensors_path, f"unreadable safetensors file: {error}") from error
    if pickle_path.is_file():
        return pickle_path, read_pickled_tensors(pickle_path)
    raise AdapterError(path, f"no {SAFETENSORS_FILE} or {PICKLE_FILE} in the adapter folder")


def load_adapter(path: str | Path) -> LoraAdapter:
    """Read and validate one peft LoRA adapter folder."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(path, "adapter folder does not exist")
    config = _read_config(path)
    weights_file, tensors = _read_tensors(path)

    factors: dict[str, dict[str, torch.Tensor]] = {}
    other: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if _UNSUPPORTED_KEY.search(key):
            raise AdapterError(weights_file, f"tensor {key!r} is not a plain LoRA factor (embedding, DoRA or bias)")
        parsed = canonical_module_path(key)
        if parsed is None:
            other[key] = tensor
            continue
        module, factor = parsed
        if factor in factors.setdefault(module, {}):
            raise AdapterError(weights_file, f"module {module!r} has two lora_{factor} tensors")
        factors[module][factor] = tensor
    if not factors:
        raise AdapterError(weights_file, "no LoRA weights (no lora_A/lora_B tensors)")

    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    modules: dict[str, LoraModule] = {}
    for module, pair in sorted(factors.items()):
        missing = {"A", "B"} - pair.keys()
        if missing:
            raise AdapterError(weights_file, f"module {module!r} has no lora_{missing.pop()} tensor")
        A, B = pair["A"], pair["B"]
        if A.ndim != 2 or B.ndim != 2:
            raise AdapterError(
                weights_file, f"module {module!r}: LoRA factors must be 2-D (got {A.ndim}-D A, {B.ndim}-D B)"
            )
        if not (A.is_floating_point() and B.is_floating_point()):
            raise AdapterError(weights_file, f"module {module!r}: LoRA factors must be floating point")
        if A.shape[0] != B.shape[1]:
            raise AdapterError(
                weights_file,
                f"A/B rank mismatch in module {module!r}: lora_A has {A.shape[0]} rows, lora_B {B.shape[1]} columns",
            )
        rank = A.shape[0]
        configured_rank = _pattern_value(rank_pattern, module, config["r"])
        if configured_rank != rank:
            raise AdapterError(
                weights_file, f"module {module!r}: the config says r={configured_rank} but the factors have rank {rank}"
            )
        A, B = A.float(), B.float()
        if not (torch.isfinite(A).all() and torch.isfinite(B).all()):
            raise AdapterError(weights_file, f"module {module!r}: NaN or Inf in the LoRA factors")
        alpha = _pattern_value(alpha_pattern, module, config["lora_alpha"])
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        modules[module] = LoraModule(A=A.contiguous(), B=B.contiguous(), scale=float(scale))

    sha256 = {CONFIG_FILE: sha256_file(path / CONFIG_FILE), weights_file.name: sha256_file(weights_file)}
    return LoraAdapter(path, config, modules, other, weights_file, sha256)


def stack_adapters(adapters: Sequence[LoraAdapter]) -> AdapterSet:
    """Validate that n ≥ 2 adapters agree on module shapes and group their factors per module."""
    if len(adapters) < 2:
        raise ParameterError("adapters", f"merging needs at least two adapters, got {len(adapters)}")
    first_seen: dict[str, tuple[tuple[int, int], LoraAdapter]] = {}
    grouped: dict[str, list[tuple[int, LoraModule]]] = {}
    for task, adapter in enumerate(adapters):
        for module, lora in adapter.modules.items():
            if module in first_seen:
                shape, owner = first_seen[module]
                if lora.shape != shape:
                    raise AdapterError(
                        adapter.weights_file,
                        f"module {module!r} has shape {lora.shape} here but {shape} in {owner.weights_file}",
                    )
            else:
                first_seen[module] = (lora.shape, adapter)
            grouped.setdefault(module, []).append((task, lora))
    stacks = {
        module: ModuleStack(
            name=module,
            tasks=tuple(task for task, _ in entries),
            A=tuple(lora.A for _, lora in entries),
            B=tuple(lora.scale * lora.B for _, lora in entries),
        )
        for module, entries in sorted(grouped.items())
    }
    return AdapterSet(tuple(adapters), stacks)


def load_adapters(paths: Sequence[str | Path]) -> AdapterSet:
    """Load and validate adapters; every problem is reported before any computation starts."""
    if len(paths) < 2:
        raise ParameterError("adapters", f"merging needs at least two adapters, got {len(paths)}")
    return stack_adapters([load_adapter(path) for path in paths])
