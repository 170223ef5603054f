"""Fuzzed workflow configs, checked the way workflow/common.smk checks one before any job runs: snakemake's
`validate` against workflow/schemas/config.schema.yaml, then the suite's own checks (`load_suite`) and the plan
(`build_plan`). Each case, one value of the demo or the ViT-B/32 config replaced (wrong types, NaN and infinity,
huge numbers, strings of hundreds of thousands of characters against the schema's patterns, lists nested hundreds
deep), a key dropped, an unknown key added or a list item repeated, ends within the 1 s deadline in the schema's
error (snakemake's WorkflowError) or a ConfigError naming the key, or in a plan of a config whose numbers are all
finite; never a raw KeyError, TypeError or RecursionError."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzing import fuzz_settings, nested, python_recursion_limit
from hypothesis import given
from hypothesis import strategies as st
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from loramerge.repro.plan import ConfigError, build_plan
from loramerge.repro.suites.base import load_suite

# Examples of the property; the number of fuzzed configs this file runs.
CONFIG_CASES = 100
FUZZ_CASES = CONFIG_CASES

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
CONFIGS = {name: yaml.safe_load((ROOT / "config" / name).read_text()) for name in ("config.yaml", "paper-vit-b32.yaml")}
# How deep the fuzzed lists nest. PyYAML (snakemake's config loader) loads lists nested up to about 490 levels, but
# snakemake's `validate` pretty-prints a rejected value into its error, which recurses past Python's limit from about
# 330 levels: that gap is snakemake's (its loader and its error formatting), not the schema's or the plan's.
DEPTH = 300


def _locations(config: Any, path: tuple = ()) -> list[tuple]:
    """Every key path in `config`, containers and leaves alike."""
    found = [path]
    children = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else []
    for key, child in children:
        found += _locations(child, (*path, key))
    return found


LOCATIONS = {name: _locations(config)[1:] for name, config in CONFIGS.items()}


def _value_at(config: Any, location: tuple) -> Any:
    for key in location:
        config = config[key]
    return config


# Lists are where the schema's uniqueness and item checks meet; half the edits land on one.
LIST_LOCATIONS = {
    name: [location for location in LOCATIONS[name] if isinstance(_value_at(CONFIGS[name], location), list)]
    for name in CONFIGS
}

config_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 2**64, 10**400, 1e308, 1e-320, -0.0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.builds(lambda n: "a" * n + "!", st.integers(1000, 500_000))
    | st.builds(lambda n: "{file}" * n, st.integers(1, 50_000))
    | st.builds(nested, st.integers(1, DEPTH), st.sampled_from([0, "q_proj", None]))
    | st.lists(st.integers(-3, 200) | st.floats(allow_nan=True), max_size=4)
    | st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5), max_size=3)
)


numbers = (
    st.integers(-3, 300)
    | st.sampled_from([math.nan, math.inf, -math.inf])  # YAML's .nan and .inf
    | st.sampled_from([0, -1, 2**64, 10**400, 1e308, 1e-320, -0.0, 0.5, 1e-5])
    | st.floats(allow_nan=True, allow_infinity=True)
)
strings = (
    st.text(max_size=20)
    | st.sampled_from(["", "cuda", "tuned", "greedy", "lam", "-x", "0" * 40, "mnist_shuffled_idxs.pt"])
    | st.builds(lambda n: "a" * n + "!", st.integers(1000, 500_000))
)


def _similar(value: Any, draw: st.DrawFn) -> Any:
    """A value of the same kind: another number (NaN, infinite or huge too), another string, the list shortened,
    reversed or with an item replaced by a number."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return draw(numbers)
    if isinstance(value, str):
        return draw(strings)
    if isinstance(value, list) and value:
        kind = draw(st.sampled_from(["empty", "reverse", "number", "deep"]))
        if kind == "empty":
            return []
        if kind == "reverse":
            return value[::-1]
        if kind == "deep":
            depth = draw(st.integers(200, DEPTH))
            return [nested(depth), nested(depth)]
        return [*value[:-1], draw(numbers)]
    return draw(config_values)


def _edited(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(CONFIGS)))
    config = copy.deepcopy(CONFIGS[name])
    *parents, key = draw(st.sampled_from(LIST_LOCATIONS[name]) | st.sampled_from(LOCATIONS[name]))
    container = _value_at(config, parents)
    edit = draw(st.sampled_from(["similar", "similar", "similar", "replace", "drop", "add", "repeat"]))
    if edit == "similar":
        container[key] = _similar(container[key], draw)
    elif edit == "replace" or (edit == "drop" and isinstance(container, list)):
        container[key] = draw(config_values)
    elif edit == "drop":
        del container[key]
    elif edit == "add" and isinstance(container, dict):
        container[draw(st.text(min_size=1, max_size=10))] = draw(config_values)
    elif isinstance(container, list):  # repeat an item (arrays the schema wants unique)
        container.append(copy.deepcopy(container[key]))
    else:
        container[key] = [container[key], copy.deepcopy(container[key])]
    return config


def _validate_and_plan(config: dict[str, Any]) -> dict[str, Any]:
    """What workflow/common.smk runs on a config before building the DAG."""
    validate(config, schema=SCHEMA)
    load_suite(config)
    return build_plan(config)


def test_the_configs_themselves_pass() -> None:
    for config in CONFIGS.values():
        assert _validate_and_plan(copy.deepcopy(config))


def test_a_nan_or_infinity_stops_naming_its_key() -> None:
    for value in (math.nan, math.inf):
        config = copy.deepcopy(CONFIGS["config.yaml"])
        config["merge"]["lambdas"][1] = value
        with pytest.raises(ConfigError, match=r"config key 'merge\.lambdas\[1\]': must be a finite number"):
            _validate_and_plan(config)


def test_deeply_nested_items_of_a_unique_array_are_a_schema_error() -> None:
    config = copy.deepcopy(CONFIGS["config.yaml"])
    config["merge"]["lambdas"] = [nested(DEPTH), nested(DEPTH)]
    with pytest.raises(WorkflowError, match="Error validating config file"), python_recursion_limit():
        _validate_and_plan(config)


@fuzz_settings(CONFIG_CASES)
@given(config=st.composite(_edited)())
def test_fuzzed_configs_stop_with_the_schema_error_or_a_config_error(config: dict[str, Any]) -> None:
    try:
        with python_recursion_limit():
            plans = _validate_and_plan(config)
    except WorkflowError as error:
        assert "Error validating config file" in str(error)
        return
    except ConfigError as error:
        assert str(error).startswith("config key '")
        return
    assert plans
    json.dumps(config, allow_nan=False)  # raises on a NaN or infinity the checks let through
