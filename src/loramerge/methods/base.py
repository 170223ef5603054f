"""The merge-method interface and registry: one class per method, registered by name (as mergekit does).

The registry is filled lazily: `get_method(name)` imports the module that the catalogue names for `name`, so asking
for one method does not import every other. A method's facts (summary, low rank, needs) come from the catalogue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar

from loramerge.adapters import AdapterSet
from loramerge.bases.decompose import Decomposition, decompose
from loramerge.bases.spaces import CoefficientSpace
from loramerge.errors import ParameterError
from loramerge.methods.catalog import CATALOG, MethodFacts
from loramerge.params import DareTiesParams, as_dict, build
from loramerge.stats import Statistics
from loramerge.ties.dare import DareSpace
from loramerge.ties.ties import ties_merge
from loramerge.updates import Update


@dataclass
class MergeContext:
    """What a merge reads (adapters, cached bases, per-task statistics) and what it reports besides the updates."""

    adapters: AdapterSet
    decomposition: Decomposition | None = None
    progress: bool = False
    diagnostics: dict[str, Any] = field(default_factory=dict)
    statistics: Statistics | None = None  # the statistics folder, read lazily (loramerge.stats)

    def bases(self) -> Decomposition:
        if self.decomposition is None:
            self.decomposition = decompose(self.adapters, progress=self.progress)
        return self.decomposition


class MergeMethod(ABC):
    name: ClassVar[str]  # its catalogue entry, which holds every other fact about it
    params_type: ClassVar[type]

    @property
    def facts(self) -> MethodFacts:
        return CATALOG[self.name]

    @property
    def summary(self) -> str:
        return self.facts.summary

    @property
    def low_rank(self) -> bool:
        """Every update is a LowRankUpdate, so the result is a peft LoRA adapter."""
        return self.facts.low_rank

    @property
    def uses_decomposition(self) -> bool:
        return self.facts.needs_decomposition()

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
    """Class decorator: one instance per catalogue entry, defined in the module the catalogue names."""
    facts = CATALOG.get(cls.name)
    if facts is None:
        raise ValueError(f"merge method {cls.name!r} has no entry in loramerge.methods.catalog")
    if cls.__module__ != facts.module:
        raise ValueError(f"merge method {cls.name!r} is defined in {cls.__module__}, the catalogue says {facts.module}")
    if cls.name in METHODS:
        raise ValueError(f"merge method {cls.name!r} registered twice")
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> MergeMethod:
    """The registered method `name`, importing its module on first use."""
    facts = CATALOG.get(name)
    if facts is None:
        raise ParameterError("method", f"unknown method {name!r}; known: {', '.join(sorted(CATALOG))}")
    if name not in METHODS:
        import_module(facts.module)
    return METHODS[name]


def load_all_methods() -> dict[str, MergeMethod]:
    """Every catalogued method, registered: the registry as a name -> method mapping."""
    for name in CATALOG:
        get_method(name)
    return METHODS


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
