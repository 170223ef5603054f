"""α·method₁ + (1−α)·method₂ for any two registered methods, each with its own parameters.

α is a number in [0, 1], or chosen per module from the two merged updates: `auto-magnitude`
α = ‖ΔW₁‖_F / (‖ΔW₁‖_F + ‖ΔW₂‖_F) (the paper's eq. 33) or `auto-energy` with squared norms (eq. 31).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from loramerge.errors import ParameterError
from loramerge.methods.base import MergeContext, MergeMethod, get_method, register
from loramerge.params import field_names, parse_alpha
from loramerge.updates import Update, mix_updates


@dataclass(frozen=True)
class MixParams:
    alpha: float | str
    first: str
    second: str
    first_params: Any
    second_params: Any


def branch_alpha(alpha: float | str, first: Update, second: Update) -> float:
    if not isinstance(alpha, str):
        return alpha
    first_energy, second_energy = first.squared_norm(), second.squared_norm()
    if alpha == "auto-magnitude":
        first_energy, second_energy = math.sqrt(first_energy), math.sqrt(second_energy)
    total = first_energy + second_energy
    return 0.5 if total == 0 else first_energy / total  # both branches zero: ΔW = 0 whatever α


def split_branch_values(
    values: Mapping[str, Any], prefixes: tuple[str, str], methods: tuple[MergeMethod, MergeMethod]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`prefix.key` goes to that branch; a bare key goes to every branch whose method takes it."""
    branches: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for key, value in values.items():
        prefix, _, rest = key.partition(".")
        if rest and prefix in prefixes:
            branches[prefixes.index(prefix)][rest] = value
            continue
        takers = [i for i, method in enumerate(methods) if key in field_names(method.params_type)]
        if not takers:
            raise ParameterError(key, f"neither {methods[0].name} nor {methods[1].name} takes this parameter")
        for i in takers:
            branches[i][key] = value
    return branches


class TwoBranchMethod(MergeMethod):
    """Mixes the per-module updates of two methods; the merge is low rank when both branches are."""

    @property
    def prefixes(self) -> tuple[str, str]:
        """The parameter prefixes of the two branches (`svd.lam`), from the catalogue."""
        return self.facts.branch_prefixes

    def branches(self, params: MixParams) -> tuple[MergeMethod, MergeMethod]:
        return get_method(params.first), get_method(params.second)

    def is_low_rank(self, params: MixParams) -> bool:
        first, second = self.branches(params)
        return first.is_low_rank(params.first_params) and second.is_low_rank(params.second_params)

    def describe(self, params: MixParams) -> dict[str, Any]:
        first, second = self.branches(params)
        return {
            "method": self.name,
            "alpha": params.alpha,
            self.prefixes[0]: first.describe(params.first_params),
            self.prefixes[1]: second.describe(params.second_params),
        }

    def merge(self, context: MergeContext, params: MixParams) -> Iterator[tuple[str, Update]]:
        first, second = self.branches(params)
        alphas = context.diagnostics.setdefault("alpha", {})
        for (name, first_update), (second_name, second_update) in zip(
            first.merge(context, params.first_params), second.merge(context, params.second_params), strict=True
        ):
            assert name == second_name, "both branches iterate the modules in sorted order"
            alphas[name] = branch_alpha(params.alpha, first_update, second_update)
            yield name, mix_updates(first_update, second_update, alphas[name])


@register
class Mix(TwoBranchMethod):
    name = "mix"
    params_type = MixParams

    def params(self, values: Mapping[str, Any] | None = None) -> MixParams:
        values = dict(values or {})
        alpha = parse_alpha(values.pop("alpha", 0.5))
        names = [values.pop(key, None) for key in self.prefixes]
        if None in names:
            raise ParameterError("first/second", "mix needs two methods: set first=NAME and second=NAME")
        methods = (get_method(names[0]), get_method(names[1]))
        first_values, second_values = split_branch_values(values, self.prefixes, methods)
        return MixParams(alpha, names[0], names[1], methods[0].params(first_values), methods[1].params(second_values))
