"""KnOTS-TIES (Stoica et al., 2025): TIES on Z_t = S·V_tᵀ in the SVD basis of M, ΔW = λ·U·Z*."""

from loramerge.bases.spaces import CoefficientSpace, svd_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import TiesParams


@register
class KnotsTies(SpaceTiesMethod):
    name = "knots_ties"
    params_type = TiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return svd_space(context.adapters, context.bases())
