"""The library's entry points: merge adapters in memory, or merge them into an output folder."""

from __future__ import annotations

import platform
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from loramerge.adapters import AdapterSet, load_adapters
from loramerge.atomic import write_json
from loramerge.bases.decompose import Decomposition
from loramerge.errors import ParameterError
from loramerge.io import atomic_directory, write_delta, write_peft_adapter
from loramerge.methods import MergeContext, get_method
from loramerge.stats import open_statistics
from loramerge.updates import Update

FORMATS = ("auto", "peft", "delta")
MANIFEST = "merge.json"


def _adapter_set(adapters: AdapterSet | Sequence[str | Path]) -> AdapterSet:
    return adapters if isinstance(adapters, AdapterSet) else load_adapters(adapters)


def iter_merge(
    adapters: AdapterSet | Sequence[str | Path],
    method: str,
    params: Mapping[str, Any] | None = None,
    decomposition: Decomposition | None = None,
    progress: bool = False,
    diagnostics: dict | None = None,
    statistics: str | Path | None = None,
) -> Iterator[tuple[str, Update]]:
    """(module, merged update) in sorted module order, computed lazily: peak memory stays one module's worth.

    `statistics` is a statistics folder (loramerge.stats) of these adapters, for methods that read one.
    """
    merge_method = get_method(method)
    resolved = merge_method.params(params)
    adapter_set = _adapter_set(adapters)
    context = MergeContext(adapter_set, decomposition, progress, statistics=open_statistics(statistics, adapter_set))
    if diagnostics is not None:
        context.diagnostics = diagnostics
    return merge_method.merge(context, resolved)


def merge(
    adapters: AdapterSet | Sequence[str | Path],
    method: str,
    decomposition: Decomposition | None = None,
    progress: bool = False,
    statistics: str | Path | None = None,
    **params: Any,
) -> dict[str, Update]:
    """All merged updates in memory, e.g. `merge(paths, "hybrid", alpha=0.6, **{"svd.lam": 0.6})`."""
    return dict(iter_merge(adapters, method, params, decomposition, progress, statistics=statistics))


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"loramerge": version("loramerge"), "torch": torch.__version__, "python": platform.python_version()}


def merge_to_folder(
    adapters: AdapterSet,
    method: str,
    out: str | Path,
    params: Mapping[str, Any] | None = None,
    output_format: str = "auto",
    decomposition: Decomposition | None = None,
    overwrite: bool = False,
    progress: bool = False,
    statistics: str | Path | None = None,
) -> Path:
    """Merge into `out` (a peft adapter or delta.safetensors, plus merge.json); nothing is written on error.

    `statistics` is a statistics folder (loramerge.stats) of these adapters; its stats.json files go in merge.json.
    """
    merge_method = get_method(method)
    resolved = merge_method.params(params)
    if output_format not in FORMATS:
        raise ParameterError("format", f"must be one of {', '.join(FORMATS)}; got {output_format!r}")
    low_rank = merge_method.is_low_rank(resolved)
    if output_format == "peft" and not low_rank:
        raise ParameterError("format", f"{method} gives a dense update, which is not a LoRA adapter; use delta")
    output_format = ("peft" if low_rank else "delta") if output_format == "auto" else output_format

    context = MergeContext(adapters, decomposition, progress, statistics=open_statistics(statistics, adapters))
    manifest = {
        "method": merge_method.describe(resolved),
        "format": output_format,
        "adapters": adapters.provenance(),
        "versions": versions(),
    }
    if context.statistics is not None:
        manifest["statistics"] = context.statistics.provenance()
    with atomic_directory(out, overwrite=overwrite) as staging:
        updates = merge_method.merge(context, resolved)
        if output_format == "peft":
            merged = dict(updates)
            write_peft_adapter(staging, merged, adapters.adapters[0].config)
            manifest["ranks"] = {name: update.rank for name, update in merged.items()}
        else:
            shapes = {name: stack.shape for name, stack in adapters.stacks.items()}
            write_delta(staging, shapes, updates, {"method": method})
        if "alpha" in context.diagnostics:
            manifest["alpha_per_module"] = context.diagnostics["alpha"]
        write_json(staging / MANIFEST, manifest)
    return Path(out)
