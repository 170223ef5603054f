"""CUR-TIES in R space (the paper's Fig. 2 ablation): TIES on the selected rows R_t, ΔW = λ·C·U_c·R*."""

from loramerge.bases.spaces import CoefficientSpace, cur_r_space
from loramerge.methods.base import MergeContext, SpaceTiesMethod, register
from loramerge.params import TiesParams


@register
class CurRTies(SpaceTiesMethod):
    name = "cur_r_ties"
    params_type = TiesParams

    def space(self, context: MergeContext) -> CoefficientSpace:
        return cur_r_space(context.adapters, context.bases())
