"""DARE-TIES in the full weight space: DARE on each dense ΔW_t, then TIES (KnOTS: top-K 100, no trim)."""

from loramerge.bases.spaces import CoefficientSpace, full_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import DareTiesParams


@register
class DareTies(SpaceTiesMethod):
    name = "dare_ties"
    params_type = DareTiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return full_space(context.adapters)
