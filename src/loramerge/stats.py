"""The per-task statistics folder that data-using merges read (Gram matrices for RegMean, Fisher information).

Layout, for the adapters' folder names `<task>` in the order the adapters are given:

    <DIR>/<task>/gram.safetensors    one I × I float64 tensor per `<module path>`: Σ xᵀx over the module's input rows x
    <DIR>/<task>/fisher.safetensors  one O × I float32 tensor per `<module path>`: the mean, over `examples`, of the
                                     squared gradient of its dense weight
    <DIR>/<task>/stats.json          what the statistics were computed from (`StatisticsInfo`)

A Gram is a sum, not a mean: `counted` in stats.json is how many input rows were summed into each Gram, so that a
reader divides by it. A row is one token wherever a layer sees tokens (a ViT: images × sequence length, every patch
and the class token; text: the non-padding tokens), which `unit` records. The Fisher is already the mean over
`examples`. stats.json also holds the sha256 of the adapter's weights file, the one whose fine-tuned model gave the
statistics; opening the folder refuses statistics of another adapter.

A task folder is written atomically. Reading is lazy: opening checks every task's stats.json, a kind file is opened
when a method first asks for one of its tensors, and each tensor is checked (shape against the adapters' module,
dtype, finite values) as it is read, so a kind that no method asks for is never opened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loramerge.adapters import AdapterSet, LoraAdapter, describe_value, parse_json, read_safetensors_header
from loramerge.atomic import write_json
from loramerge.errors import ParameterError, StatisticsError
from loramerge.io import atomic_directory

GRAM = "gram"
FISHER = "fisher"
KINDS = (GRAM, FISHER)
INFO_FILE = "stats.json"
UNITS = ("tokens", "images")
_DTYPES = {GRAM: (torch.float64, "F64"), FISHER: (torch.float32, "F32")}  # kind -> (torch dtype, safetensors code)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def kind_file(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown statistics kind {kind!r}; known: {', '.join(KINDS)}")
    return f"{kind}.safetensors"


@dataclass(frozen=True)
class StatisticsInfo:
    """What one task's statistics were computed from (its stats.json)."""

    examples: int  # the examples (images, texts) the statistics were computed on; the Fisher is their mean
    counted: int  # the input rows summed into each Gram (a token each for a ViT or text model; see the module doc)
    unit: str  # what one counted row is: "tokens" or "images"
    split: str  # the data split the examples came from
    split_sha256: str  # its sha256
    adapter_sha256: str  # the sha256 of the adapter's weights file (`adapter_weights_sha256`)

    def problems(self) -> list[str]:
        problems = []
        if not (isinstance(self.examples, int) and not isinstance(self.examples, bool) and self.examples >= 1):
            problems.append(f"examples must be a positive integer, got {describe_value(self.examples)}")
        if not (isinstance(self.counted, int) and not isinstance(self.counted, bool) and self.counted >= 1):
            problems.append(f"counted must be a positive integer, got {describe_value(self.counted)}")
        if not (isinstance(self.unit, str) and self.unit in UNITS):
            problems.append(f"unit must be one of {', '.join(UNITS)}, got {describe_value(self.unit)}")
        if not (isinstance(self.split, str) and self.split):
            problems.append(f"split must be a non-empty string, got {describe_value(self.split)}")
        if not (isinstance(self.split_sha256, str) and _SHA256.match(self.split_sha256)):
            problems.append(f"split_sha256 must be 64 lower-case hex digits, got {describe_value(self.split_sha256)}")
        if not (isinstance(self.adapter_sha256, str) and _SHA256.match(self.adapter_sha256)):
            problems.append(
                f"adapter_sha256 must be 64 lower-case hex digits, got {describe_value(self.adapter_sha256)}"
            )
        return problems


def adapter_weights_sha256(adapter: LoraAdapter) -> str:
    """The sha256 of `adapter`'s weights file, as stats.json records it (`load_adapter(folder)` gives the adapter)."""
    return adapter.sha256[adapter.weights_file.name]


def _module_shape(adapters: AdapterSet, kind: str, module: str) -> tuple[int, int]:
    out_features, in_features = adapters.stacks[module].shape
    return (in_features, in_features) if kind == GRAM else (out_features, in_features)


def write_task_statistics(
    folder: str | Path,
    task: str,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    info: StatisticsInfo,
    overwrite: bool = False,
) -> Path:
    """`<folder>/<task>/`: one `<kind>.safetensors` per kind in `tensors` (kind -> module path -> tensor), cast to
    the kind's dtype, and stats.json; written atomically, so a reader never sees a half-written task.

    `task` is the adapter's folder name; `info.adapter_sha256` is `adapter_weights_sha256(load_adapter(folder))`;
    each Gram is the sum over `info.counted` input rows and each Fisher the mean over `info.examples`.
    """
    if not task or task in (".", "..") or "/" in task or "\\" in task:
        raise ValueError(f"task {task!r} is not a folder name")
    problems = info.problems()
    if problems:
        raise ValueError(f"task {task!r}: {'; '.join(problems)}")
    prepared: dict[str, dict[str, torch.Tensor]] = {}  # file name -> module path -> tensor
    for kind, per_module in tensors.items():
        file_name = kind_file(kind)  # refuses an unknown kind
        prepared[file_name] = {}
        for module, tensor in per_module.items():
            if tensor.ndim != 2 or (kind == GRAM and tensor.shape[0] != tensor.shape[1]):
                expected = "square" if kind == GRAM else "2-D"
                raise ValueError(f"{kind} of {module!r} must be {expected}, got shape {tuple(tensor.shape)}")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{kind} of {module!r} has NaN or Inf values")
            prepared[file_name][module] = tensor.detach().to("cpu", _DTYPES[kind][0]).contiguous()
    target = Path(folder) / task
    with atomic_directory(target, overwrite=overwrite) as staging:
        for file_name, per_module in prepared.items():
            save_file(per_module, staging / file_name)
        write_json(staging / INFO_FILE, asdict(info))
    return target


def _read_info(path: Path) -> StatisticsInfo:
    if not path.parent.is_dir():
        raise StatisticsError(path.parent, "no statistics for this task (the folder does not exist)")
    try:
        payload = parse_json(path.read_bytes())
    except FileNotFoundError:
        raise StatisticsError(path, "missing") from None
    except OSError as error:
        raise StatisticsError(path, f"unreadable: {error}") from error
    except ValueError as error:
        raise StatisticsError(path, f"unreadable: {error}") from None
    fields = set(StatisticsInfo.__dataclass_fields__)
    if not isinstance(payload, dict) or set(payload) != fields:
        found = sorted(map(describe_value, payload)) if isinstance(payload, dict) else describe_value(payload)
        raise StatisticsError(path, f"expected a JSON object with keys {sorted(fields)}, got {found}")
    info = StatisticsInfo(**payload)
    problems = info.problems()
    if problems:
        raise StatisticsError(path, "; ".join(problems))
    return info


class Statistics:
    """The statistics folder of an adapter set, read lazily: `gram(task, module)`, `fisher(task, module)`.

    `task` is an adapter's position in the set (as in `ModuleStack.tasks`). Every error names the file at fault.
    """

    def __init__(self, folder: str | Path, adapters: AdapterSet) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise StatisticsError(self.folder, "statistics folder does not exist")
        paths: dict[str, Path] = {}
        for adapter in adapters.adapters:
            if paths.setdefault(adapter.name, adapter.path) != adapter.path:
                raise StatisticsError(
                    self.folder,
                    f"adapters {paths[adapter.name]} and {adapter.path} share the name {adapter.name!r}, "
                    "so their statistics folders would be the same",
                )
        self.adapters = adapters
        self.info = tuple(self._read_task_info(task) for task in range(len(adapters)))
        self._files: dict[tuple[int, str], tuple[Any, frozenset[str]]] = {}  # (task, kind) -> (open file, its keys)

    def task_folder(self, task: int) -> Path:
        return self.folder / self.adapters.task_names[task]

    def _read_task_info(self, task: int) -> StatisticsInfo:
        path = self.task_folder(task) / INFO_FILE
        info = _read_info(path)
        adapter = self.adapters.adapters[task]
        expected = adapter_weights_sha256(adapter)
        if info.adapter_sha256 != expected:
            raise StatisticsError(
                path,
                f"computed for another adapter: adapter_sha256 is {info.adapter_sha256}, but "
                f"{adapter.weights_file} has sha256 {expected}",
            )
        return info

    def gram(self, task: int, module: str) -> torch.Tensor:
        """Σ xᵀx over `module`'s inputs for task `task`: I × I float64."""
        return self.tensor(GRAM, task, module)

    def fisher(self, task: int, module: str) -> torch.Tensor:
        """The mean squared gradient of `module`'s weight for task `task`: O × I float32."""
        return self.tensor(FISHER, task, module)

    def tensor(self, kind: str, task: int, module: str) -> torch.Tensor:
        stack = self.adapters.stacks.get(module)
        if stack is None or task not in stack.tasks:
            raise ValueError(f"task {task} has no module {module!r} to read {kind} statistics for")
        path = self.task_folder(task) / kind_file(kind)
        handle, modules = self._open(task, kind, path)
        if module not in modules:
            raise StatisticsError(path, f"no {kind} tensor for module {module!r}")
        dtype, code = _DTYPES[kind]
        expected_shape = _module_shape(self.adapters, kind, module)
        stored = handle.get_slice(module)
        if stored.get_dtype() != code:
            raise StatisticsError(path, f"{module}: dtype {stored.get_dtype()}, expected {code} ({dtype})")
        if tuple(stored.get_shape()) != expected_shape:
            raise StatisticsError(
                path, f"{module}: shape {tuple(stored.get_shape())}, expected {expected_shape} from the adapters"
            )
        tensor = handle.get_tensor(module)
        if not torch.isfinite(tensor).all():
            raise StatisticsError(path, f"{module}: NaN or Inf values")
        return tensor

    def _open(self, task: int, kind: str, path: Path) -> tuple[Any, frozenset[str]]:
        key = (task, kind)
        if key not in self._files:
            if not path.is_file():
                raise StatisticsError(path, f"missing: no {kind} statistics for this task")
            try:
                read_safetensors_header(path)
                handle = safe_open(path, framework="pt", device="cpu")
                self._files[key] = handle, frozenset(handle.keys())
            except Exception as error:  # safetensors raises its own error types on corrupt or truncated files
                raise StatisticsError(path, f"unreadable safetensors file: {error}") from error
        return self._files[key]

    def provenance(self) -> dict[str, Any]:
        """The folder and each task's stats.json, for a merge's manifest."""
        return {
            "path": str(self.folder),
            "tasks": {name: asdict(info) for name, info in zip(self.adapters.task_names, self.info, strict=True)},
        }


def required_statistics(statistics: Statistics | None, method: str) -> Statistics:
    """The statistics folder of a merge, which `method` cannot do without."""
    if statistics is None:
        raise ParameterError(
            "statistics", f"method {method!r} reads per-task statistics: give a folder (--statistics DIR, statistics=)"
        )
    return statistics


def open_statistics(folder: str | Path | None, adapters: AdapterSet) -> Statistics | None:
    """The statistics folder of `adapters` (every task's stats.json checked now), or None when none is given."""
    return None if folder is None else Statistics(folder, adapters)
