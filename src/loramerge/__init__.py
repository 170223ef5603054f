"""loramerge: exact, fast merging of LoRA adapters (TA, TIES, DARE-TIES, KnOTS, Core Space, CUR, SVD+CUR hybrid).

The public names load lazily (PEP 562): the workflow imports `loramerge.repro.plan` at every DAG build, and that must
not pay for importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AdapterSet": "loramerge.adapters",
    "load_adapter": "loramerge.adapters",
    "load_adapters": "loramerge.adapters",
    "iter_merge": "loramerge.api",
    "merge": "loramerge.api",
    "merge_to_folder": "loramerge.api",
    "load_decomposition": "loramerge.bases.cache",
    "save_decomposition": "loramerge.bases.cache",
    "Decomposition": "loramerge.bases.decompose",
    "decompose": "loramerge.bases.decompose",
    "AdapterError": "loramerge.errors",
    "CacheError": "loramerge.errors",
    "LoramergeError": "loramerge.errors",
    "ParameterError": "loramerge.errors",
    "StatisticsError": "loramerge.errors",
    "METHODS": "loramerge.methods",
    "get_method": "loramerge.methods",
    "Statistics": "loramerge.stats",
    "StatisticsInfo": "loramerge.stats",
    "write_task_statistics": "loramerge.stats",
    "DenseUpdate": "loramerge.updates",
    "LowRankUpdate": "loramerge.updates",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loramerge' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
