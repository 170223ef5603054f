"""The merge-method interface and registry: one class per method, registered by name (as mergekit does)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loramerge.adapters import AdapterSet
from loramerge.bases.decompose import Decomposition, decompose
from loramerge.bases.spaces import CoefficientSpace
from loramerge.errors import ParameterError
from loramerge.params import DareTiesParams, as_dict, build
from loramerge.ties.dare import DareSpace
from loramerge.ties.ties import ties_merge
from loramerge.updates import Update


@dataclass
class MergeContext:
    """What a merge reads (adapters, cached bases) and what it reports besides the updates."""

    adapters: AdapterSet
    decomposition: Decomposition | None = None
    progress: bool = False
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def bases(self) -> Decomposition:
        if self.decomposition is None:
            self.decomposition = decompose(self.adapters, progress=self.progress)
        return self.decomposition


class MergeMethod(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    params_type: ClassVar[type]
    low_rank: ClassVar[bool] = True  # every update is a LowRankUpdate, so the result is a peft LoRA adapter
    uses_decomposition: ClassVar[bool] = False

    def params(self, values: Mapping[str, Any] | None = None) -> Any:
        return build(self.params_type, dict(values or {}), self.name)

    def is_low_rank(self, params: Any) -> bool:
        """Whether every update is low rank, so that the merge can be written as a peft LoRA adapter."""
        return self.low_rank

    def describe(self, params: Any) -> dict[str, Any]:
        return {"method": self.name, **as_dict(params)}

    @abstractmethod
    def merge(self, context: MergeContext, params: Any) -> Iterator[tuple[str, Update]]:
        """Merged update of every module, in sorted module order."""


METHODS: dict[str, MergeMethod] = {}


def register(cls: type[MergeMethod]) -> type[MergeMethod]:
    if cls.name in METHODS:
        raise ValueError(f"merge method {cls.name!r} registered twice")
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> MergeMethod:
    if name not in METHODS:
        raise ParameterError("method", f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[name]


class SpaceTiesMethod(MergeMethod):
    """TIES in the coefficient space `space()` builds, after DARE when the parameters carry a drop probability."""

    @abstractmethod
    def space(self, context: MergeContext) -> CoefficientSpace:
        """The per-module, per-task coefficients this method merges."""

    def merge(self, context: MergeContext, params: Any) -> Iterator[tuple[str, Update]]:
        space = self.space(context)
        if isinstance(params, DareTiesParams):
            space = DareSpace(space, params.drop_p, params.seed)
        yield from ties_merge(space, params.lam, params.top_k, params.trim_scope, context.progress)
