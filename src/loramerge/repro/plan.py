"""The experiment plan a workflow config describes: which merges to run, which λ to evaluate, how to search.

Pure Python on purpose: the Snakefile builds its DAG from this at every invocation, so it must not import torch.
Range checks of single values live in the config schema; the checks here relate values to each other, and repeat
the range check of a search default, which need not be a grid value and then becomes merges of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loramerge.errors import LoramergeError
from loramerge.methods.catalog import CATALOG, TUNED_BRANCHES, MethodFacts

SCALE_PARAM = "lam"
SEED_PARAM = "seed"
TUNED = "tuned"


class ConfigError(LoramergeError):
    """A config value that is inconsistent with another; the message starts with the key's dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': {problem}")


def format_value(value: Any) -> str:
    """One spelling per number, so 20, 20.0 and 2e1 name the same merge folder."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{float(value):g}"


def point_name(point: Mapping[str, Any]) -> str:
    """The folder name of one merge's structural hyper-parameters, e.g. `drop_p~0.5_seed~0_top_k~100`."""
    return "_".join(f"{key}~{format_value(point[key])}" for key in sorted(point)) or "default"


@dataclass(frozen=True)
class SearchSpace:
    """One greedy search's walk: the parameters in the order it tunes them, each grid in the order it walks it (the
    full-grid argmax ranges over the same grids), and the values of the parameters it is not tuning (fixed ones too)."""

    order: list[str]
    grids: dict[str, list[Any]]
    defaults: dict[str, Any]

    def structural_sweeps(self) -> list[dict[str, list[Any]]]:
        """Per step of the walk, the values of the merge parameters the greedy search may visit then.

        While it sweeps ``order[j]``, the parameters before it hold one of their grid values and those after it their
        defaults. λ is left out: it is no merge parameter, every merge is evaluated at every λ. That the earlier ones
        hold grid values relies on each sweep keeping its first value, as KnOTS's scripts and the workflow do (the
        best score is reset per parameter), so no parameter keeps a default that is not a grid value.
        """
        structural = [param for param in self.order if param != SCALE_PARAM]
        sweeps = []
        for step in range(len(self.order)):
            swept = set(self.order[: step + 1])
            sweeps.append({p: self.grids[p] if p in swept else [self.defaults[p]] for p in structural})
        return sweeps


@dataclass(frozen=True)
class MethodPlan:
    """One method's merges (one per point), the λ applied to each at evaluation, and its two searches.

    `joint_search` is the joint (union label space) search's walk: `search` with the method's `joint` block applied.
    `branches` maps a two-branch method's parameter prefix to the method whose search tunes that branch (empty when
    the method is merged as configured)."""

    method: str
    points: dict[str, dict[str, Any]]
    lambdas: list[float]
    search: SearchSpace
    joint_search: SearchSpace
    seeds: list[int] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    @property
    def facts(self) -> MethodFacts:
        return CATALOG[self.method]

    @property
    def uses_decomposition(self) -> bool:
        """Whether its merges read the cached bases: it needs them, or one of its branch methods does."""
        defaults = self.search.defaults
        branch_methods = {*self.branches.values(), *(defaults.get(p) for p in self.facts.branch_prefixes or ())}
        return any(CATALOG[name].needs_decomposition() for name in {self.method, *branch_methods} if name in CATALOG)

    def search_spec(self, *, joint: bool = False) -> dict[str, Any]:
        """The arguments of the per-task search, or with ``joint`` of the joint search (order, grids, defaults and
        the seed replicates)."""
        space = self.joint_search if joint else self.search
        spec = {"order": space.order, "grids": space.grids, "defaults": space.defaults}
        if self.seeds:
            spec["replicates"] = {SEED_PARAM: self.seeds}
        return spec


def _grid_points(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [dict(fixed)]
    for key in sorted(grid):
        points = [{**point, key: value} for point in points for value in grid[key]]
    return points


def _tuned_branches(
    key: str, facts: MethodFacts, spec: Mapping[str, Any], methods: Mapping[str, Any]
) -> dict[str, str]:
    """Prefix -> the configured method whose search tunes that branch; {} when the branches are merged as given."""
    tuned = spec.get("branches") == TUNED
    if TUNED_BRANCHES in facts.needs and not tuned:
        raise ConfigError(f"{key}.branches", f"{facts.name}'s branches are always tuned; set 'branches: {TUNED}'")
    if not tuned:
        return {}
    if not facts.is_two_branch():
        raise ConfigError(f"{key}.branches", f"{facts.name} has no branches to tune")
    fixed = spec.get("fixed", {})
    names = facts.branches or tuple(fixed.get(prefix) for prefix in facts.branch_prefixes)
    branches = {}
    for prefix, branch in zip(facts.branch_prefixes, names, strict=True):
        if branch is None:
            raise ConfigError(f"{key}.fixed.{prefix}", f"tuned branches need the branch method in {key}.fixed")
        if branch not in methods or branch == facts.name:
            raise ConfigError(f"{key}.branches", f"the '{prefix}' branch is tuned by the '{branch}' search; add it")
        branches[prefix] = branch
    if "lambdas" in spec:
        raise ConfigError(f"{key}.lambdas", "with tuned branches λ comes from the branch searches; do not search it")
    return branches


# The values a default may take. A default need not be a grid value (KnOTS holds DARE's p at 1e-5 while it sweeps λ),
# and such a default becomes merges of its own, so it is range-checked here like the schema checks grid values.
_DEFAULT_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "top_k": (lambda value: 0 < value <= 100, "in (0, 100]"),
    "drop_p": (lambda value: 0 <= value < 1, "in [0, 1)"),
    "alpha": (lambda value: 0 <= value <= 1, "in [0, 1]"),
}


def _check_default(key: str, param: str, value: Any, grid_values: Sequence[Any]) -> None:
    if grid_values and all(isinstance(choice, str) for choice in grid_values):  # categorical (TARA's variant)
        if value not in grid_values:
            raise ConfigError(key, f"{value!r} is not one of the swept choices {list(grid_values)}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, f"{value!r} is not a number")
    if param in _DEFAULT_RANGES:
        within, allowed = _DEFAULT_RANGES[param]
        if not within(value):
            raise ConfigError(key, f"{value} is not {allowed}")


def _check_search(key: str, order: list[str], grid: dict, fixed: dict, defaults: dict, scaled: bool) -> None:
    if not scaled and SCALE_PARAM in order:
        raise ConfigError(f"{key}.order", "with tuned branches λ comes from the branch searches; do not search it")
    if scaled and SCALE_PARAM not in order:
        raise ConfigError(f"{key}.order", "must contain 'lam' (the merged update's scale is always searched)")
    if scaled and order[0] != SCALE_PARAM:
        raise ConfigError(f"{key}.order", f"'lam' must come first: no default λ is held while '{order[0]}' is swept")
    for param in order:
        if param != SCALE_PARAM and param not in grid:
            raise ConfigError(f"{key}.order", f"'{param}' has no values in {key}.grid")
    for param in grid:
        if param not in order:
            raise ConfigError(f"{key}.grid", f"'{param}' is swept but missing from {key}.order, so no search sets it")
        if param in fixed:
            raise ConfigError(f"{key}.fixed", f"'{param}' is both fixed and swept in {key}.grid")
    for param, value in defaults.items():
        if param not in grid:
            raise ConfigError(f"{key}.defaults.{param}", f"'{param}' is not swept in {key}.grid")
        _check_default(f"{key}.defaults.{param}", param, value, grid[param])
    # Every parameter after the first is held at its default while an earlier one is swept.
    for param in order[1:]:
        if param not in defaults:
            raise ConfigError(
                f"{key}.defaults", f"'{param}' is searched after '{order[0]}', so the greedy search needs its default"
            )


def _joint_walk(
    key: str, joint: Mapping[str, Any], order: list[str], grid: dict, defaults: dict
) -> tuple[list[str], dict, dict]:
    """The joint search's order, grid and defaults: the per-task ones with `<key>.joint` applied.

    Its grids may reorder or leave out per-task grid values but add none: the joint evaluation evaluates the per-task
    points, and the full-grid argmax of the joint search must find all of its grid evaluated."""
    joint_grid = dict(grid)
    for param, values in joint.get("grid", {}).items():
        if param not in grid:
            raise ConfigError(f"{key}.joint.grid", f"'{param}' is not swept in {key}.grid")
        added = [value for value in values if value not in grid[param]]
        if added:
            raise ConfigError(
                f"{key}.joint.grid.{param}",
                f"{added} not in {key}.grid.{param} {grid[param]}: the joint search reads the points it evaluates",
            )
        joint_grid[param] = list(values)
    return list(joint.get("order", order)), joint_grid, {**defaults, **joint.get("defaults", {})}


def _space(order: list[str], grid: dict, fixed: dict, defaults: dict, scales: list[float], tuned: bool) -> SearchSpace:
    if tuned:
        # λ scales each branch inside the merge (tuned by the branch searches), so the merged update is used as is.
        return SearchSpace(order, {**grid, SCALE_PARAM: [1.0]}, {SCALE_PARAM: 1.0, **fixed, **defaults})
    return SearchSpace(order, {SCALE_PARAM: scales, **grid}, {**fixed, **defaults})


def _merge_points(
    grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any], seeds: list[int], spaces: Sequence[SearchSpace]
) -> dict[str, dict[str, Any]]:
    """Name -> point: the full grid's points (what the argmax ranges over), then the points the greedy searches also
    visit, where a default is no grid value; each once, in the order first needed."""
    replicated = {SEED_PARAM: seeds} if seeds else {}
    points = {point_name(point): point for point in _grid_points({**grid, **replicated}, fixed)}
    for space in spaces:
        for sweep in space.structural_sweeps():
            for point in _grid_points({**sweep, **replicated}, fixed):
                points.setdefault(point_name(point), point)
    return points


def _method_plan(
    name: str, spec: Mapping[str, Any], lambdas: Sequence[float], methods: Mapping[str, Any]
) -> MethodPlan:
    key = f"merge.methods.{name}"
    if name not in CATALOG:
        raise ConfigError(key, f"unknown method '{name}'; known: {', '.join(CATALOG)}")
    facts = CATALOG[name]
    branches = _tuned_branches(key, facts, spec, methods)
    grid = {param: list(values) for param, values in spec.get("grid", {}).items()}
    fixed = dict(spec.get("fixed", {}))
    defaults = dict(spec.get("defaults", {}))
    order = list(spec["order"])
    for param in order:
        if param != SCALE_PARAM and param not in facts.searched:
            raise ConfigError(
                f"{key}.order", f"{name} has no searched parameter '{param}' ({', '.join(facts.searched)})"
            )
    _check_search(key, order, grid, fixed, defaults, scaled=not branches)
    joint_order, joint_grid, joint_defaults = _joint_walk(key, spec.get("joint") or {}, order, grid, defaults)
    _check_search(f"{key}.joint", joint_order, joint_grid, fixed, joint_defaults, scaled=not branches)
    seeds = [int(seed) for seed in spec.get("seeds", [])]
    if seeds and SEED_PARAM in fixed:
        raise ConfigError(f"{key}.seeds", f"the seed is also fixed in {key}.fixed; keep one of them")
    scales = [1.0] if branches else [float(value) for value in spec.get("lambdas", lambdas)]
    search = _space(order, grid, fixed, defaults, scales, tuned=bool(branches))
    joint_search = _space(joint_order, joint_grid, fixed, joint_defaults, scales, tuned=bool(branches))
    points = _merge_points(grid, fixed, seeds, [search, joint_search])
    return MethodPlan(name, points, scales, search, joint_search, seeds, branches)


def _non_finite_number(config: Mapping[str, Any]) -> str | None:
    """The dotted key of the first number in `config` that is NaN or infinite, or None. The schema cannot refuse
    them: YAML spells them .nan and .inf, and every range check compares false with NaN. Walked without recursion,
    as a config may nest deeply."""
    pending: list[tuple[str, Any]] = [("", config)]
    while pending:
        key, value = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return key
        if isinstance(value, Mapping):
            children = [(f"{key}.{name}" if key else str(name), child) for name, child in value.items()]
        elif isinstance(value, list | tuple):
            children = [(f"{key}[{index}]", child) for index, child in enumerate(value)]
        else:
            continue
        pending.extend(reversed(children))  # popped in the config's order
    return None


def build_plan(config: Mapping[str, Any]) -> dict[str, MethodPlan]:
    """Every method's plan, in the config's method order; raises ConfigError. A method set to null is not run: a
    suite config is merged over config/config.yaml key by key, so null is how it drops one of the demo's methods."""
    non_finite = _non_finite_number(config)
    if non_finite is not None:
        raise ConfigError(non_finite, "must be a finite number, not NaN or infinity")
    merge = config["merge"]
    methods = {name: spec for name, spec in merge["methods"].items() if spec is not None}
    return {name: _method_plan(name, spec, merge["lambdas"], methods) for name, spec in methods.items()}


def derive_seed(root: int, *tags: str) -> int:
    """A seed for one random stream (e.g. `derive_seed(0, "data", "digits")`), independent of every other stream."""
    digest = hashlib.sha256(json.dumps([root, *tags]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def tuned_branch_params(
    branches: Mapping[str, str], branch_params: Sequence[str], chosen: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A tuned two-branch merge's branch settings (`svd.lam`, `cur.top_k`, …): `branches` maps each prefix to the
    method whose search tunes it (MethodPlan.branches), `chosen` each such method to the parameters its search chose."""
    params: dict[str, Any] = {}
    for prefix, method in branches.items():
        params.update({f"{prefix}.{name}": chosen[method][name] for name in branch_params if name in chosen[method]})
    return params
