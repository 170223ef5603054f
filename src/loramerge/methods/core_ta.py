"""Task Arithmetic in Core Space (Panariello et al., 2025): λ·U_B·(Σ_t M_t)·V_Aᵀ; lossless, so it equals TA."""

from collections.abc import Iterator

from loramerge.bases.spaces import core_space
from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import TaParams
from loramerge.updates import Update


@register
class CoreTaskArithmetic(MergeMethod):
    name = "core_ta"
    params_type = TaParams

    def merge(self, context: MergeContext, params: TaParams) -> Iterator[tuple[str, Update]]:
        space = core_space(context.adapters)
        for name in space.names:
            module = space.modules[name]
            total = sum(module.left[p] @ module.right[p] for p in range(len(module.tasks)))
            weight = params.lam if params.mode == "sum" else params.lam / len(module.tasks)
            yield name, space.reconstruct(name, total.float(), weight)
