"""TIES in the full weight space (KnOTS `ties_merging`): trim, elect, disjoint mean of the dense ΔW_t."""

from loramerge.bases.spaces import CoefficientSpace, full_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import TiesParams


@register
class Ties(SpaceTiesMethod):
    name = "ties"
    params_type = TiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return full_space(context.adapters)
