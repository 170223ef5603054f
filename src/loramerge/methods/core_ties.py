"""CoreSpace-TIES (Panariello et al., 2025): TIES on the core matrices M_t, per layer as in the Core Space code."""

from loramerge.bases.spaces import CoefficientSpace, core_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import CoreTiesParams


@register
class CoreTies(SpaceTiesMethod):
    name = "core_ties"
    params_type = CoreTiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return core_space(context.adapters)
