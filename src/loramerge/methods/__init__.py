"""Merge methods: the torch-free catalogue (`loramerge.methods.catalog`) and the registry that implements it.

Everything here loads lazily (PEP 562), so that `import loramerge.methods.catalog` does not import torch;
`METHODS` imports every method module and is the full name -> method mapping.
"""

from importlib import import_module
from typing import Any

_FROM_BASE = ("MergeContext", "MergeMethod", "get_method", "register")

__all__ = ["METHODS", *_FROM_BASE]


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        return import_module("loramerge.methods.base").load_all_methods()
    if name in _FROM_BASE:
        return getattr(import_module("loramerge.methods.base"), name)
    raise AttributeError(f"module 'loramerge.methods' has no attribute {name!r}")
