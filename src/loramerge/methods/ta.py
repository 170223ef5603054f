"""Task Arithmetic (KnOTS `tv_merging`): ΔW = λ·Σ_t ΔW_t ('sum') or λ·mean_t ΔW_t ('mean').

Linear, so it stays low rank: B' = [w·s_1B_1 … w·s_nB_n], A' = [A_1; …; A_n] (peft's 'cat' combination).
"""

from collections.abc import Iterator

import torch

from loramerge.methods.base import MergeContext, MergeMethod, register
from loramerge.params import TaParams
from loramerge.updates import LowRankUpdate, Update


@register
class TaskArithmetic(MergeMethod):
    name = "ta"
    params_type = TaParams

    def merge(self, context: MergeContext, params: TaParams) -> Iterator[tuple[str, Update]]:
        for name, stack in sorted(context.adapters.stacks.items()):
            weight = params.lam if params.mode == "sum" else params.lam / len(stack.tasks)
            yield name, LowRankUpdate(B=torch.cat([weight * b for b in stack.B], dim=1), A=torch.cat(stack.A, dim=0))
