"""Merge methods, registered by name on import."""

from loramerge.methods import (  # noqa: F401  (each module registers its method)
    core_ta,
    core_ties,
    cur_r_ties,
    cur_ties,
    dare_ties,
    hybrid,
    knots_dare_ties,
    knots_ties,
    mix,
    ta,
    ties,
)
from loramerge.methods.base import METHODS, MergeContext, MergeMethod, get_method, register

__all__ = ["METHODS", "MergeContext", "MergeMethod", "get_method", "register"]
