"""Fuzzed adapter folders: damaged safetensors bytes, forged header lengths, wrong dtypes, hostile adapter_config.json
files, and factors that are finite alone but overflow once the LoRA scale is folded in. Each case ends in an
AdapterError naming the file (and `loramerge merge` exits 2 leaving nothing behind), within the 1 s deadline, or,
when the change was harmless, in an adapter whose folded factors and updates are finite."""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_adapter
from fuzzing import (
    ABSURD_HEADER_LENGTHS,
    damaged_bytes,
    encoded_json,
    fuzz_settings,
    header_length,
    json_values,
    python_recursion_limit,
)
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

import loramerge.adapters
from loramerge.adapters import CONFIG_FILE, SAFETENSORS_FILE, load_adapter
from loramerge.cli import main
from loramerge.errors import AdapterError

# Examples per property; FUZZ_CASES (their sum, with the subprocess cases) is the number of fuzzed inputs this file
# runs.
WEIGHTS_BYTES_CASES = 120
HEADER_LENGTH_CASES = 30
CONFIG_CASES = 150
PATTERN_CASES = 60
DTYPE_CASES = 40
OVERFLOW_CASES = 80
CLI_CASES = 20
SUBPROCESS_CASES = 2
FUZZ_CASES = (
    WEIGHTS_BYTES_CASES + HEADER_LENGTH_CASES + CONFIG_CASES + PATTERN_CASES + DTYPE_CASES + OVERFLOW_CASES + CLI_CASES
) + SUBPROCESS_CASES

SHAPES = {"layers.0.q_proj": (6, 5), "layers.0.v_proj": (4, 5)}  # module -> (out, in): tiny, so each case is fast
RANK = 2


def _factors(seed: int = 0, magnitude_a: float = 1.0, magnitude_b: float = 1.0) -> dict[str, tuple[Any, Any]]:
    """Factors with entries uniform in (-magnitude, magnitude), so any magnitude below float32's maximum is finite."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(rows: int, columns: int, magnitude: float) -> torch.Tensor:
        return (torch.rand(rows, columns, generator=generator, dtype=torch.float64) * 2 - 1).mul(magnitude).float()

    return {
        module: (uniform(RANK, inputs, magnitude_a), uniform(outputs, RANK, magnitude_b))
        for module, (outputs, inputs) in SHAPES.items()
    }


def _original_files() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_adapter(Path(scratch) / "adapter", _factors())
        return {name: (folder / name).read_bytes() for name in (CONFIG_FILE, SAFETENSORS_FILE)}


ORIGINAL = _original_files()
CONFIG = json.loads(ORIGINAL[CONFIG_FILE])


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    folder = root / "adapter"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def _load_or_named_error(folder: Path) -> AdapterError | None:
    """None when the adapter loads (its folded factors and every ΔW checked finite), else the AdapterError, checked
    to name a file of `folder`. Any other exception fails the property."""
    try:
        with python_recursion_limit():
            adapter = load_adapter(folder)
    except AdapterError as error:
        assert str(folder) in str(error), f"the error does not name the file: {error}"
        return error
    for name, module in adapter.modules.items():
        assert math.isfinite(module.scale), name
        assert torch.isfinite(module.scale * module.B).all(), name
        assert torch.isfinite(module.delta()).all(), name
    return None


# ------------------------------------------------------------------------------------------ the weights file


@fuzz_settings(WEIGHTS_BYTES_CASES)
@given(weights=damaged_bytes(ORIGINAL[SAFETENSORS_FILE]))
def test_damaged_weights_are_refused_naming_the_file(weights: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = _folder(Path(scratch), {CONFIG_FILE: ORIGINAL[CONFIG_FILE], SAFETENSORS_FILE: weights})
        error = _load_or_named_error(folder)
        if error is not None:
            assert str(folder / SAFETENSORS_FILE) in str(error)


@fuzz_settings(HEADER_LENGTH_CASES)
@given(length=st.sampled_from(ABSURD_HEADER_LENGTHS) | st.integers(len(ORIGINAL[SAFETENSORS_FILE]) - 7, 2**64 - 1))
def test_a_header_length_beyond_the_file_is_refused_before_safetensors_reads_it(
    length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader compares the claimed length with the file size itself: safetensors is never asked to read (and
    whatever it would allocate for the claim is never allocated)."""

    def must_not_load(*_: Any, **__: Any) -> None:
        raise AssertionError("safetensors was asked to read a file whose header length exceeds it")

    monkeypatch.setattr(loramerge.adapters, "load_file", must_not_load)
    weights = struct.pack("<Q", length) + ORIGINAL[SAFETENSORS_FILE][8:]
    with tempfile.TemporaryDirectory() as scratch:
        folder = _folder(Path(scratch), {CONFIG_FILE: ORIGINAL[CONFIG_FILE], SAFETENSORS_FILE: weights})
        with pytest.raises(AdapterError, match=f"claims {length} bytes") as caught, python_recursion_limit():
            load_adapter(folder)
        assert str(folder / SAFETENSORS_FILE) in str(caught.value)


def test_a_header_with_a_tensor_twice_is_refused() -> None:
    """safetensors itself keeps one of two same-named tensors silently; which one is a guess."""
    original = ORIGINAL[SAFETENSORS_FILE]
    header = original[8 : 8 + header_length(original)].decode().rstrip()
    first_key = next(key for key in json.loads(header) if key != "__metadata__")
    entry = json.dumps(json.loads(header)[first_key])
    forged = "{" + json.dumps(first_key) + ":" + entry + "," + header[1:]
    forged += " " * (-len(forged) % 8)
    weights = struct.pack("<Q", len(forged)) + forged.encode() + original[8 + header_length(original) :]
    with tempfile.TemporaryDirectory() as scratch:
        folder = _folder(Path(scratch), {CONFIG_FILE: ORIGINAL[CONFIG_FILE], SAFETENSORS_FILE: weights})
        with pytest.raises(AdapterError, match="appears twice") as caught:
            load_adapter(folder)
        assert str(folder / SAFETENSORS_FILE) in str(caught.value)


# ------------------------------------------------------------------------------------------ adapter_config.json

# rank/alpha pattern keys: module names, ordinary regular expressions, invalid ones, ones valid alone but not
# where peft puts them (a global flag mid-pattern), and ones that backtrack exponentially on a near miss
PATTERN_KEYS = st.sampled_from(
    [
        "q_proj",
        "layers\\.0\\.v_proj",
        ".*_proj",
        "(q|v)_proj",
        "[",
        "(?i)q_proj",
        "(a+)+$",
        "(a|aa)*b",
        "(x?x)*y",
        "((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))",
        "(" * 5000 + ")" * 5000,
    ]
) | st.text(max_size=12)


@fuzz_settings(PATTERN_CASES)
@given(
    rank_pattern=st.dictionaries(PATTERN_KEYS, st.just(RANK), max_size=3),
    alpha_pattern=st.dictionaries(PATTERN_KEYS, st.sampled_from([1, 8, 1e-3]), max_size=3),
    near_miss_module=st.booleans(),
)
def test_rank_and_alpha_patterns_load_or_are_refused_without_backtracking(
    rank_pattern: dict[str, int], alpha_pattern: dict[str, float], near_miss_module: bool
) -> None:
    """peft matches these keys against every module name; one that could backtrack exponentially is refused before
    any matching (the deadline would catch a hang)."""
    factors = _factors()
    if near_miss_module:  # a module name that an exponential pattern such as (a+)+$ almost matches
        factors = {"a" * 40 + "!": factors["layers.0.q_proj"]}
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_adapter(
            Path(scratch) / "adapter", factors, {"rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern}
        )
        error = _load_or_named_error(folder)
        if error is not None:
            assert str(folder / CONFIG_FILE) in str(error)


CONFIG_EDITS = st.dictionaries(
    st.sampled_from(["r", "lora_alpha", "peft_type", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern"]),
    json_values
    | st.dictionaries(PATTERN_KEYS, st.integers(1, 4) | json_values, max_size=3)
    | st.sampled_from(["LORA", "lora", "IA3", 2, 4, 1e-30, 1e30]),
    min_size=1,
    max_size=3,
)


@fuzz_settings(CONFIG_CASES)
@given(edits=CONFIG_EDITS, data=st.data())
def test_hostile_adapter_configs_are_refused_naming_the_file(edits: dict[str, Any], data: st.DataObject) -> None:
    config_bytes = data.draw(encoded_json({**CONFIG, **edits}))
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_adapter(Path(scratch) / "adapter", _factors())
        (folder / CONFIG_FILE).write_bytes(config_bytes)
        error = _load_or_named_error(folder)
        if error is not None and "factors" not in error.problem:
            assert str(folder / CONFIG_FILE) in str(error)


# ------------------------------------------------------------------------------------------ dtypes and values

DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.int8,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.complex64,
]


@fuzz_settings(DTYPE_CASES)
@given(dtype_a=st.sampled_from(DTYPES), dtype_b=st.sampled_from(DTYPES))
def test_factors_of_any_dtype_load_finite_or_are_refused(dtype_a: torch.dtype, dtype_b: torch.dtype) -> None:
    state = {}
    for module, (A, B) in _factors().items():
        state[f"base_model.model.{module}.lora_A.weight"] = (A * 3).to(dtype_a)
        state[f"base_model.model.{module}.lora_B.weight"] = (B * 3).to(dtype_b)
    with tempfile.TemporaryDirectory() as scratch:
        folder = _folder(Path(scratch), {CONFIG_FILE: ORIGINAL[CONFIG_FILE]})
        save_file(state, folder / SAFETENSORS_FILE)
        error = _load_or_named_error(folder)
        floating = dtype_a.is_floating_point and dtype_b.is_floating_point
        assert (error is None) == floating, error


@fuzz_settings(OVERFLOW_CASES)
@given(
    exponent_a=st.integers(-45, 38),
    exponent_b=st.integers(-45, 38),
    alpha=st.sampled_from([1, 16, 1e10, 1e30, 1e38, 1e300]) | st.floats(1e-30, 1e300),
    rslora=st.booleans(),
)
def test_factors_that_overflow_once_scaled_are_refused(
    exponent_a: int, exponent_b: int, alpha: float, rslora: bool
) -> None:
    """Finite float32 factors and a finite lora_alpha whose scale s = alpha/r (or alpha/√r), folded into B, or whose
    product s·B·A, exceeds float32: refused naming the weights file. Whatever loads merges (task arithmetic of three
    copies) into a finite adapter, or the merge stops (exit 2) saying the sum overflowed, writing nothing."""
    factors = _factors(seed=1, magnitude_a=10.0**exponent_a, magnitude_b=10.0**exponent_b)
    assert all(torch.isfinite(a).all() and torch.isfinite(b).all() for a, b in factors.values())
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = write_adapter(root / "adapter", factors, {"r": RANK, "lora_alpha": alpha, "use_rslora": rslora})
        error = _load_or_named_error(folder)
        if error is not None:
            assert str(folder / SAFETENSORS_FILE) in str(error) and "overflow" in str(error)
            return
        out = root / "merged" / "result"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), python_recursion_limit():
            status = main(["merge", "--method", "ta", "--adapters", *[str(folder)] * 3, "--out", str(out), "--quiet"])
        if status == 0:
            assert _load_or_named_error(out) is None
        else:
            assert status == 2 and "overflows float32" in stderr.getvalue(), stderr.getvalue()
            assert not (root / "merged").exists()


def test_a_pattern_that_backtracks_exponentially_is_refused_before_matching(tmp_path):
    """(a+)+ against a 40-letter near miss would take about 2⁴⁰ steps in `re`."""
    factors = {"a" * 40 + "!": _factors()["layers.0.q_proj"]}
    folder = write_adapter(tmp_path / "adapter", factors, {"rank_pattern": {"(a+)+": RANK}})
    with pytest.raises(AdapterError, match=r"rank_pattern key '\(a\+\)\+' repeats a repetition") as caught:
        load_adapter(folder)
    assert str(folder / CONFIG_FILE) in str(caught.value)


def test_a_merge_whose_sum_overflows_float32_writes_nothing(tmp_path):
    """Each adapter's ΔW (one entry of 1.69e38) is finite, their task-arithmetic sum over three is not."""
    A, B = torch.zeros(RANK, 5), torch.zeros(6, RANK)
    A[0, 0] = B[0, 0] = 1.3e19
    folders = [str(write_adapter(tmp_path / name, {"layers.0.q_proj": (A, B)}, {"lora_alpha": RANK})) for name in "abc"]
    for output_format in ("peft", "delta"):
        out = tmp_path / "merged" / output_format
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            command = ["merge", "--method", "ta", "--adapters", *folders, "--out", str(out), "--format", output_format]
            assert main(command) == 2
        assert "merged module layers.0.q_proj: the merged update overflows float32" in stderr.getvalue()
        assert not (tmp_path / "merged").exists()


# ------------------------------------------------------------------------------------------ the command line


def _merge_command(good: Path, bad: Path, out: Path) -> list[str]:
    return ["merge", "--method", "ta", "--adapters", str(good), str(bad), "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def good_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_adapter(tmp_path_factory.mktemp("good") / "good", _factors(seed=5))


@fuzz_settings(CLI_CASES)
@given(weights=damaged_bytes(ORIGINAL[SAFETENSORS_FILE]))
def test_merge_of_a_damaged_adapter_exits_2_and_writes_nothing(good_adapter: Path, weights: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bad = _folder(root, {CONFIG_FILE: ORIGINAL[CONFIG_FILE], SAFETENSORS_FILE: weights})
        out = root / "merged" / "result"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), python_recursion_limit():
            status = main(_merge_command(good_adapter, bad, out))
        if status == 0:  # a harmless change (a flipped bit in the header's padding or in the values)
            assert _load_or_named_error(out) is None
            return
        assert status == 2
        assert str(bad / SAFETENSORS_FILE) in stderr.getvalue()
        assert not (root / "merged").exists()


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: struct.pack("<Q", 2**40) + data[8:]],
    ids=["truncated", "header-claims-a-terabyte"],
)
def test_the_console_script_reports_a_damaged_adapter_without_a_traceback(good_adapter, tmp_path, damage):
    bad = _folder(tmp_path, {CONFIG_FILE: ORIGINAL[CONFIG_FILE], SAFETENSORS_FILE: damage(ORIGINAL[SAFETENSORS_FILE])})
    out = tmp_path / "merged" / "result"
    result = subprocess.run(
        [sys.executable, "-m", "loramerge.cli", *_merge_command(good_adapter, bad, out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"loramerge: error: {bad / SAFETENSORS_FILE}: " in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "merged").exists()
