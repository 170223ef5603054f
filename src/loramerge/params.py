"""Hyper-parameters of the merge methods, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from loramerge.errors import ParameterError

ALPHA_MODES = ("auto-magnitude", "auto-energy")
TA_MODES = ("sum", "mean")
TRIM_SCOPES = ("global", "per_layer")
LEGO_NORMS = ("l2", "linf")
TARA_VARIANTS = ("a", "b", "weight")


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ParameterError(name, f"expected a finite number, got {value!r}")
    return number


def _lam(value: Any) -> float:
    return _number("lam", value)


def _top_k(value: Any) -> float:
    top_k = _number("top_k", value)
    if not 0 < top_k <= 100:
        raise ParameterError("top_k", f"the percent of entries kept must be in (0, 100], got {value!r}")
    return top_k


def _drop_p(value: Any) -> float:
    drop_p = _number("drop_p", value)
    if not 0 <= drop_p < 1:
        raise ParameterError("drop_p", f"the DARE drop probability must be in [0, 1), got {value!r}")
    return drop_p


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise ParameterError("seed", f"expected a non-negative integer, got {value!r}")
    return int(value)


def _count(name: str, minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            raise ParameterError(name, f"expected an integer ≥ {minimum}, got {value!r}")
        if int(value) < minimum:
            raise ParameterError(name, f"expected an integer ≥ {minimum}, got {value!r}")
        return int(value)

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None or value == "null" else check(value)

    return optional


def _fraction(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number = _number(name, value)
        if not 0 <= number <= 1:
            raise ParameterError(name, f"must be in [0, 1], got {value!r}")
        return number

    return check


def _non_negative(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number = _number(name, value)
        if number < 0:
            raise ParameterError(name, f"must be ≥ 0, got {value!r}")
        return number

    return check


def _flag(name: str) -> Callable[[Any], bool]:
    spellings = {True: True, False: False, "true": True, "false": False}

    def check(value: Any) -> bool:
        if isinstance(value, bool) or (isinstance(value, str) and value in spellings):
            return spellings[value]
        raise ParameterError(name, f"expected true or false, got {value!r}")

    return check


def _path(name: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ParameterError(name, f"expected a file path, got {value!r}")
        return value

    return check


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ParameterError(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return check


def parse_alpha(value: Any) -> float | str:
    """α in [0, 1], or 'auto-magnitude' | 'auto-energy' (chosen per layer from the branch norms)."""
    if value in ALPHA_MODES:
        return value
    try:
        alpha = _number("alpha", value)
    except ParameterError:
        raise ParameterError(
            "alpha", f"must be a number in [0, 1] or one of {', '.join(ALPHA_MODES)}; got {value!r}"
        ) from None
    if not 0 <= alpha <= 1:
        raise ParameterError("alpha", f"must be in [0, 1], got {value!r}")
    return alpha


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "lam": _lam,
    "top_k": _top_k,
    "drop_p": _drop_p,
    "seed": _seed,
    "trim_scope": _choice("trim_scope", TRIM_SCOPES),
    "mode": _choice("mode", TA_MODES),
    "alpha": parse_alpha,
    "clusters": _optional(_count("clusters", 1)),
    "iterations": _count("iterations", 0),
    "norm": _choice("norm", LEGO_NORMS),
    "off_diagonal": _fraction("off_diagonal"),
    "normalize": _flag("normalize"),
    "min_fisher": _non_negative("min_fisher"),
    "variant": _choice("variant", TARA_VARIANTS),
    "init": lambda value: _number("init", value),
    "coefficients": _optional(_path("coefficients")),
}


class _Validated:
    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if field.name in CONVERTERS:
                object.__setattr__(self, field.name, CONVERTERS[field.name](getattr(self, field.name)))


@dataclass(frozen=True)
class TaParams(_Validated):
    lam: float = 1.0
    mode: str = "sum"


@dataclass(frozen=True)
class TiesParams(_Validated):
    lam: float = 1.0
    top_k: float = 20.0
    trim_scope: str = "global"


@dataclass(frozen=True)
class CoreTiesParams(TiesParams):
    trim_scope: str = "per_layer"  # Core Space trims each layer's core matrices on their own


@dataclass(frozen=True)
class DareTiesParams(_Validated):
    lam: float = 1.0
    top_k: float = 100.0  # KnOTS's DARE-TIES configs do not trim after DARE
    drop_p: float = 0.1
    seed: int = 0
    trim_scope: str = "global"


@dataclass(frozen=True)
class ScaleParams(_Validated):
    """Methods whose only parameter is the merged update's scale λ."""

    lam: float = 1.0


@dataclass(frozen=True)
class LoraLegoParams(_Validated):
    lam: float = 1.0
    clusters: int | None = None  # K; None: the module's largest adapter rank r
    iterations: int = 10  # Lloyd iterations after the seeded initialisation
    norm: str = "linf"  # the norm of the centroid rescaling; the only public implementation uses ℓ∞
    seed: int = 0


@dataclass(frozen=True)
class RegmeanParams(_Validated):
    lam: float = 1.0  # RegMean's reference code has no λ; 1 is its merge
    off_diagonal: float = 0.95  # the Gram's off-diagonal entries are scaled by this (FusionBench's CLIP setting)


@dataclass(frozen=True)
class FisherParams(_Validated):
    lam: float = 1.0  # Fisher merging's reference code has no λ; 1 is its merge
    normalize: bool = True  # weight each task's Fisher by 1/‖F_t‖ over all merged modules (FusionBench's default)
    min_fisher: float = 1.0e-6  # added to every Fisher entry, so that an all-zero entry still averages


@dataclass(frozen=True)
class TaraParams(_Validated):
    lam: float = 1.0  # scales the learned update; the coefficients already carry the merge's scale
    variant: str = "b"  # a: per (task, rank) LoRA piece; b: per (task, KnOTS direction); weight: per task (AdaMerging)
    init: float = 0.4  # every coefficient's start (ΔW = init·Σ ΔW_t); the original's λ/T = 3.2/8 = 2.4/6
    coefficients: str | None = None  # the adaptation stage's learned coefficients; None: the initial point
    seed: int = 0  # the adaptation's batch order (recorded with the merge; the merge itself draws nothing)


def field_names(params_type: type) -> list[str]:
    return [field.name for field in dataclasses.fields(params_type)]


def build(params_type: type, values: Mapping[str, Any], method: str) -> Any:
    """An instance of `params_type` from a mapping of field names to values (strings are converted)."""
    names = field_names(params_type)
    for key in values:
        if key not in names:
            raise ParameterError(key, f"method {method!r} takes no such parameter; it takes {', '.join(names)}")
    return params_type(**values)


def as_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params)
