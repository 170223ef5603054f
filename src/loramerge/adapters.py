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
import re._constants as regex_opcodes
import re._parser as regex_parser
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
# safetensors' own limit on its JSON header; a larger length prefix is corruption, refused before anything is read.
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
# The merged factors and deltas are float32: a folded factor or an update beyond this is Inf downstream.
FLOAT32_MAX = torch.finfo(torch.float32).max


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


def describe_value(value: object, limit: int = 60) -> str:
    """A short spelling of a value read from a file, for an error message: the repr of a number, string or null cut
    to `limit` characters, else what it is (the repr of a deeply nested list would itself recurse too deep, and that
    of a huge integer fails)."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"an integer of {value.bit_length()} bits"
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[: limit - 1]}…"
    return f"a {type(value).__name__}"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {describe_value(key)} appears twice in one object")
        result[key] = value
    return result


def parse_json(data: bytes) -> Any:
    """JSON from UTF-8 bytes, refusing what `json.loads` would read ambiguously or fail on with a raw exception: a key
    given twice in one object (which value would count?), nesting too deep for the parser, integers too long to
    convert. Raises ValueError saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply to read") from None
    except ValueError as error:  # JSONDecodeError, a duplicate key, an integer beyond Python's digit limit
        raise ValueError(f"invalid JSON: {error}") from None


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked before any tensor is read: its 8-byte length prefix must fit
    the file (so a corrupt prefix claiming gigabytes allocates nothing), and the header must be one JSON object
    without duplicate keys (safetensors keeps one of two same-named tensors silently). Raises ValueError or OSError;
    safetensors itself checks the rest (dtypes, shapes, offsets)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{size} bytes are too few for a safetensors header (an 8-byte length, then JSON)")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise ValueError(
                f"the header length prefix claims {length} bytes but only {size - 8} follow it "
                "(a truncated or corrupt file)"
            )
        if length > MAX_SAFETENSORS_HEADER_BYTES:
            raise ValueError(f"the header length prefix claims {length} bytes, beyond safetensors' limit")
        header = parse_json(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"the header is {describe_value(header)}, not a JSON object")
    return header


def canonical_module_path(key: str) -> tuple[str, str] | None:
    """(module path, 'A' | 'B') for a LoRA factor key of any peft version, None for other tensors."""
    match = _LORA_KEY.match(key)
    if match is None:
        return None
    return match["module"], match["factor"]


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _module_pattern(pattern: str) -> str:
    """The regular expression peft matches a rank_pattern/alpha_pattern key with (peft.utils.other.get_pattern_key):
    the key must match a dotted suffix of the module name."""
    return rf"(.*\.)?({pattern})$"


def _pattern_value(patterns: Mapping[str, float], module: str, default: float) -> float:
    # The first pattern that matches wins, as in peft.
    for pattern, value in patterns.items():
        if re.match(_module_pattern(pattern), module):
            return value
    return default


_REPEATS = (regex_opcodes.MAX_REPEAT, regex_opcodes.MIN_REPEAT, regex_opcodes.POSSESSIVE_REPEAT)


def _regex_parts(opcode: object, argument: Any) -> list[regex_parser.SubPattern]:
    """The sub-expressions a parsed regular-expression item holds (none for a literal, class or anchor)."""
    if opcode is regex_opcodes.BRANCH:
        return argument[1]
    if opcode is regex_opcodes.SUBPATTERN:
        return [argument[3]]
    if opcode in (regex_opcodes.ASSERT, regex_opcodes.ASSERT_NOT):
        return [argument[1]]
    if opcode is regex_opcodes.ATOMIC_GROUP:
        return [argument]
    if opcode is regex_opcodes.GROUPREF_EXISTS:
        return [part for part in argument[1:] if part is not None]
    return []


def _repeats_ambiguously(items: regex_parser.SubPattern, inside_unbounded: bool = False) -> bool:
    """Whether a parsed regular expression repeats without bound something that can itself match in several ways
    (a repetition of variable count or an alternation: `(a+)+`, `(a|ab)*`, `(a?a)*`), the shape that makes a
    backtracking matcher such as `re` take exponential time on a near miss."""
    for opcode, argument in items:
        if opcode in _REPEATS:
            low, high, body = argument
            unbounded = inside_unbounded or high == regex_opcodes.MAXREPEAT
            if (inside_unbounded and low != high) or _repeats_ambiguously(body, unbounded):
                return True
        else:
            alternation_repeated = opcode is regex_opcodes.BRANCH and inside_unbounded
            parts = _regex_parts(opcode, argument)
            if alternation_repeated or any(_repeats_ambiguously(part, inside_unbounded) for part in parts):
                return True
    return False


def _check_patterns(config: dict, config_path: Path) -> None:
    for key in ("rank_pattern", "alpha_pattern"):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict):
            raise AdapterError(config_path, f"{key} must be a JSON object of pattern -> number")
        for pattern, value in patterns.items():
            shown = describe_value(pattern)
            if not _positive_number(value) or (key == "rank_pattern" and not isinstance(value, int)):
                kind = "a positive integer" if key == "rank_pattern" else "a positive finite number"
                raise AdapterError(config_path, f"{key}[{shown}] must be {kind}, got {describe_value(value)}")
            try:
                # what _pattern_value matches: a pattern can be valid alone but not inside it (a global flag)
                re.compile(_module_pattern(pattern))
                ambiguous = _repeats_ambiguously(regex_parser.parse(pattern))
            except (re.error, RecursionError, OverflowError) as error:
                problem = error if isinstance(error, re.error) else "nested too deeply"
                raise AdapterError(
                    config_path, f"{key} key {shown} is not a valid regular expression: {problem}"
                ) from None
            # peft matches these patterns against every module name; an ambiguous repetition could take hours.
            if ambiguous:
                raise AdapterError(
                    config_path,
                    f"{key} key {shown} repeats a repetition or an alternation, which can take exponential time "
                    "to match; peft patterns name modules (e.g. 'q_proj', 'layers\\.0\\..*')",
                )


def _read_config(path: Path) -> dict:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterError(config_path, f"missing {CONFIG_FILE}: not a peft adapter folder")
    try:
        config = parse_json(config_path.read_bytes())
    except OSError as error:
        raise AdapterError(config_path, f"unreadable: {error}") from error
    except ValueError as error:
        raise AdapterError(config_path, str(error)) from None
    if not isinstance(config, dict):
        raise AdapterError(config_path, f"invalid adapter config: expected a JSON object, got {describe_value(config)}")
    peft_type = config.get("peft_type", "LORA")
    if not (isinstance(peft_type, str) and peft_type.upper() == "LORA"):
        raise AdapterError(config_path, f"peft_type is {describe_value(peft_type)}; only LORA adapters can be merged")
    if config.get("use_dora"):
        raise AdapterError(config_path, "use_dora is set; DoRA adapters are not plain LoRA and cannot be merged")
    for key in ("r", "lora_alpha"):
        if not _positive_number(config.get(key)):
            raise AdapterError(
                config_path, f"{key} must be a positive finite number, got {describe_value(config.get(key))}"
            )
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
            read_safetensors_header(safetensors_path)
            return safetensors_path, load_file(safetensors_path, device="cpu")
        except Exception as error:  # safetensors raises several private error types on corrupt files
            raise AdapterError(safetensors_path, f"unreadable safetensors file: {error}") from error
    if pickle_path.is_file():
        return pickle_path, read_pickled_tensors(pickle_path)
    raise AdapterError(path, f"no {SAFETENSORS_FILE} or {PICKLE_FILE} in the adapter folder")


def fits_float32(A: torch.Tensor, B: torch.Tensor) -> bool:
    """Whether ΔW = B·A is finite in float32 whatever the order of summation: ‖B‖·‖A‖ (Frobenius, in float64) bounds
    |ΔW_ij| and every partial sum of it (Cauchy–Schwarz). A and B must be finite."""
    bound = torch.linalg.vector_norm(B.double()) * torch.linalg.vector_norm(A.double())
    return bool(bound <= FLOAT32_MAX)


def _check_folded_scale(weights_file: Path, module: str, A: torch.Tensor, B: torch.Tensor, scale: float) -> None:
    """That s·B (how every merge holds the factor) and ΔW = s·B·A stay finite in float32: finite factors and a
    finite scale can still overflow once multiplied."""
    folded = scale * B
    if not torch.isfinite(folded).all():
        raise AdapterError(
            weights_file,
            f"module {module!r}: lora_B times the LoRA scale {scale:g} (lora_alpha/r) overflows float32",
        )
    if not fits_float32(A, folded):
        raise AdapterError(
            weights_file,
            f"module {module!r}: ΔW = s·B·A can overflow float32 (its entries are bounded only by ‖s·B‖·‖A‖ > "
            f"{FLOAT32_MAX:.3g}); the factors or lora_alpha are corrupt",
        )


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
        if 0 in A.shape or 0 in B.shape:
            shapes = f"lora_A {tuple(A.shape)}, lora_B {tuple(B.shape)}"
            raise AdapterError(weights_file, f"module {module!r}: LoRA factors must not be empty ({shapes})")
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
        scale = float(alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank)
        _check_folded_scale(weights_file, module, A, B, scale)
        modules[module] = LoraModule(A=A.contiguous(), B=B.contiguous(), scale=scale)

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
