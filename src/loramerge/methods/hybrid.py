"""The paper's method: ΔW = α·ΔW_SVD + (1−α)·ΔW_CUR, the KnOTS-TIES and UR-space CUR-TIES merges of the same
adapters, each with its own λ and top-K (`svd.lam`, `cur.top_k`, …; a bare `lam` sets both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loramerge.methods.base import get_method, register
from loramerge.methods.mix import MixParams, TwoBranchMethod, split_branch_values
from loramerge.params import parse_alpha


@register
class Hybrid(TwoBranchMethod):
    name = "hybrid"
    params_type = MixParams

    def params(self, values: Mapping[str, Any] | None = None) -> MixParams:
        values = dict(values or {})
        alpha = parse_alpha(values.pop("alpha", 0.5))
        branch_methods = self.facts.branches  # knots_ties and cur_ties, from the catalogue
        methods = (get_method(branch_methods[0]), get_method(branch_methods[1]))
        svd_values, cur_values = split_branch_values(values, self.prefixes, methods)
        return MixParams(alpha, *branch_methods, methods[0].params(svd_values), methods[1].params(cur_values))
