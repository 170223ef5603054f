"""KnOTS-DARE-TIES: DARE on the SVD-aligned Z_t, then TIES (KnOTS: top-K 100), ΔW = λ·U·Z*."""

from loramerge.bases.spaces import CoefficientSpace, svd_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import DareTiesParams


@register
class KnotsDareTies(SpaceTiesMethod):
    name = "knots_dare_ties"
    params_type = DareTiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return svd_space(context.adapters, context.bases())
