"""loramerge: exact, fast merging of LoRA adapters (TA, TIES, DARE-TIES, KnOTS, Core Space, CUR, SVD+CUR hybrid)."""

from loramerge.adapters import AdapterSet, load_adapter, load_adapters
from loramerge.api import iter_merge, merge, merge_to_folder
from loramerge.cache import load_decomposition, save_decomposition
from loramerge.decompose import Decomposition, decompose
from loramerge.errors import AdapterError, CacheError, LoramergeError, ParameterError
from loramerge.methods import METHODS, get_method
from loramerge.updates import DenseUpdate, LowRankUpdate

__all__ = [
    "METHODS",
    "AdapterError",
    "AdapterSet",
    "CacheError",
    "Decomposition",
    "DenseUpdate",
    "LoramergeError",
    "LowRankUpdate",
    "ParameterError",
    "decompose",
    "get_method",
    "iter_merge",
    "load_adapter",
    "load_adapters",
    "load_decomposition",
    "merge",
    "merge_to_folder",
    "save_decomposition",
]
