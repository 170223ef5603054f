"""CUR-TIES in UR space (the paper's CUR branch): TIES on Y_t = U_c·R_t, ΔW = λ·C·Y*."""

from loramerge.bases.spaces import CoefficientSpace, cur_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import TiesParams


@register
class CurTies(SpaceTiesMethod):
    name = "cur_ties"
    params_type = TiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return cur_space(context.adapters, context.bases())
