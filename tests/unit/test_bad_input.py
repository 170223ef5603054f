"""Bad input stops with an error naming the offending file or parameter, and the CLI writes nothing."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import SHAPES, random_adapter_dirs, random_factors, write_adapter
from safetensors.torch import save_file

from loramerge.adapters import load_adapter, load_adapters
from loramerge.api import merge_to_folder
from loramerge.cli import main
from loramerge.errors import AdapterError, LoramergeError, ParameterError

Q0 = "encoder.layers.0.self_attn.q_proj"


class NotATensor:
    """A harmless custom class: weights_only loading must still refuse to rebuild it."""

    def __init__(self) -> None:
        self.value = 1


class WritesMarker:
    """Unpickling this object runs Path.write_text(marker, ...): a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "code ran while unpickling")


def _good(root: Path, n: int = 2) -> list[Path]:
    return random_adapter_dirs(root / "good", n=n, seed=11)


# ------------------------------------------------------------------------------ the bad adapters, one per case


@dataclass
class Case:
    """adapter folders for the CLI/library, the file that the error must name, and the exception type."""

    adapters: list[Path]
    culprit: Path | str
    problem: str  # a regular expression the error message must match
    error: type[LoramergeError] = AdapterError
    marker: Path | None = None  # a file that must never be created


def _bad_folder(root: Path, name: str = "bad") -> Path:
    return write_adapter(root / name, random_factors(torch.Generator().manual_seed(3), SHAPES, 4))


def missing_folder(root: Path) -> Case:
    path = root / "does_not_exist"
    return Case([_good(root)[0], path], path, "does not exist")


def no_config(root: Path) -> Case:
    folder = _bad_folder(root)
    (folder / "adapter_config.json").unlink()
    return Case([*_good(root), folder], folder / "adapter_config.json", "missing adapter_config.json")


def truncated_safetensors(root: Path) -> Case:
    folder = _bad_folder(root)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return Case([*_good(root), folder], weights, "unreadable safetensors")


def garbage_safetensors(root: Path) -> Case:
    folder = _bad_folder(root)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(b"\x00this is not a safetensors file at all" * 10)
    return Case([*_good(root), folder], weights, "unreadable safetensors")


def empty_safetensors(root: Path) -> Case:
    folder = _bad_folder(root)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(b"")
    return Case([*_good(root), folder], weights, "unreadable safetensors")


def truncated_bin(root: Path) -> Case:
    folder = write_adapter(root / "bad", random_factors(torch.Generator(), SHAPES, 4), pickle_weights=True)
    weights = folder / "adapter_model.bin"
    weights.write_bytes(weights.read_bytes()[:200])
    return Case([*_good(root), folder], weights, "unreadable torch file")


def no_weights_file(root: Path) -> Case:
    folder = _bad_folder(root)
    (folder / "adapter_model.safetensors").unlink()
    return Case([*_good(root), folder], folder, "no adapter_model.safetensors or adapter_model.bin")


def invalid_json(root: Path) -> Case:
    folder = _bad_folder(root)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4,, "lora_alpha": 8')
    return Case([*_good(root), folder], folder / "adapter_config.json", "invalid JSON")


def json_not_an_object(root: Path) -> Case:
    folder = _bad_folder(root)
    (folder / "adapter_config.json").write_text("[4, 8]")
    return Case([*_good(root), folder], folder / "adapter_config.json", "expected a JSON object")


def ia3(root: Path) -> Case:
    folder = write_adapter(root / "bad", random_factors(torch.Generator(), SHAPES, 4), config={"peft_type": "IA3"})
    return Case([*_good(root), folder], folder / "adapter_config.json", "peft_type is 'IA3'")


def rank_mismatch(root: Path) -> Case:
    generator = torch.Generator().manual_seed(4)
    factors = random_factors(generator, SHAPES, 4)
    A, _ = factors[Q0]
    factors[Q0] = (A, torch.randn(SHAPES[Q0][0], 3, generator=generator))  # A 4×I, B O×3
    folder = write_adapter(root / "bad", factors)
    return Case([*_good(root), folder], folder / "adapter_model.safetensors", "A/B rank mismatch .*q_proj")


def shape_mismatch(root: Path) -> Case:
    shapes = dict(SHAPES)
    shapes[Q0] = (SHAPES[Q0][0], SHAPES[Q0][1] + 4)
    first = _good(root)[0]
    folder = write_adapter(root / "bad", random_factors(torch.Generator(), shapes, 4))
    return Case(
        [first, folder], folder / "adapter_model.safetensors", r"q_proj' has shape \(24, 24\) here but \(24, 20\)"
    )


def _non_finite(value: float, factor: int) -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        factors = random_factors(torch.Generator().manual_seed(5), SHAPES, 4)
        broken = factors[Q0][factor].clone()
        broken[1, 2] = value
        factors[Q0] = (broken, factors[Q0][1]) if factor == 0 else (factors[Q0][0], broken)
        folder = write_adapter(root / "bad", factors)
        return Case([*_good(root), folder], folder / "adapter_model.safetensors", "NaN or Inf")

    return build


def only_a_head(root: Path) -> Case:
    folder = root / "bad"
    folder.mkdir(parents=True)
    save_file({"base_model.model.classifier.weight": torch.ones(3, 24)}, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    return Case([*_good(root), folder], folder / "adapter_model.safetensors", "no LoRA weights")


def _pickled(payload: Callable[[Path], object], problem: str = "refused to unpickle") -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        folder = _bad_folder(root)
        (folder / "adapter_model.safetensors").unlink()
        marker = root / "marker.txt"
        torch.save(payload(marker), folder / "adapter_model.bin")
        return Case([*_good(root), folder], folder / "adapter_model.bin", problem, marker=marker)

    return build


def only_one_adapter(root: Path) -> Case:
    return Case(_good(root, n=1), "'adapters'", "at least two adapters, got 1", ParameterError)


BAD_ADAPTERS = [
    pytest.param(missing_folder, id="missing-folder"),
    pytest.param(no_config, id="no-adapter_config"),
    pytest.param(truncated_safetensors, id="truncated-safetensors"),
    pytest.param(garbage_safetensors, id="garbage-safetensors"),
    pytest.param(empty_safetensors, id="empty-safetensors"),
    pytest.param(truncated_bin, id="truncated-bin"),
    pytest.param(no_weights_file, id="no-weights-file"),
    pytest.param(invalid_json, id="invalid-json"),
    pytest.param(json_not_an_object, id="json-not-an-object"),
    pytest.param(ia3, id="peft-type-IA3"),
    pytest.param(rank_mismatch, id="A-B-rank-mismatch"),
    pytest.param(shape_mismatch, id="shape-differs-between-adapters"),
    pytest.param(_non_finite(float("nan"), 0), id="nan-in-A"),
    pytest.param(_non_finite(float("nan"), 1), id="nan-in-B"),
    pytest.param(_non_finite(float("inf"), 0), id="inf-in-A"),
    pytest.param(_non_finite(float("-inf"), 1), id="minus-inf-in-B"),
    pytest.param(only_a_head, id="no-lora-weights"),
    pytest.param(_pickled(lambda marker: {"x": NotATensor()}), id="pickle-custom-class"),
    pytest.param(_pickled(lambda marker: {"x": {1, 2}}, "mapping of names to tensors"), id="pickle-set"),
    pytest.param(_pickled(lambda marker: {"x": os.getcwd}), id="pickle-function"),
    pytest.param(
        _pickled(lambda marker: {"x": 3, "y": torch.ones(2)}, "mapping of names to tensors"), id="pickle-int-value"
    ),
    pytest.param(
        _pickled(lambda marker: [torch.ones(4, 20), torch.ones(24, 4)], "mapping of names to tensors"),
        id="pickle-list-not-mapping",
    ),
    pytest.param(_pickled(lambda marker: {"x": WritesMarker(marker)}), id="pickle-reduce-code-execution"),
    pytest.param(only_one_adapter, id="only-one-adapter"),
]


@pytest.mark.parametrize("make_case", BAD_ADAPTERS)
def test_library_raises_an_error_naming_the_file(tmp_path: Path, make_case) -> None:
    case = make_case(tmp_path)
    with pytest.raises(case.error) as caught:
        load_adapters(case.adapters)
    assert type(caught.value) is case.error
    assert re.search(case.problem, str(caught.value)), str(caught.value)
    assert str(case.culprit) in str(caught.value), f"the error does not name {case.culprit}: {caught.value}"
    if isinstance(caught.value, AdapterError):
        assert caught.value.path == str(case.culprit)
        assert str(caught.value).startswith(str(case.culprit))
    if case.marker is not None:
        assert not case.marker.exists(), "unpickling the adapter ran code: weights_only loading was bypassed"


@pytest.mark.parametrize("nested", [False, True], ids=["flat-out", "nested-out"])
@pytest.mark.parametrize("make_case", BAD_ADAPTERS)
def test_cli_returns_2_names_the_file_and_writes_nothing(tmp_path: Path, capsys, make_case, nested: bool) -> None:
    case = make_case(tmp_path / "in")
    out = tmp_path / "new" / "deeper" / "out" if nested else tmp_path / "out"
    before = sorted(tmp_path.rglob("*"))
    code = main(["merge", "--method", "ties", "--adapters", *map(str, case.adapters), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert str(case.culprit) in captured.err, f"stderr does not name {case.culprit}: {captured.err!r}"
    assert captured.err.startswith("loramerge: error: ")
    assert re.search(case.problem, captured.err), captured.err
    assert captured.out == ""
    assert not out.exists()
    assert not (tmp_path / "new").exists(), "the CLI created the output's parent folders"
    assert sorted(tmp_path.rglob("*")) == before, "the CLI wrote files although it failed"
    if case.marker is not None:
        assert not case.marker.exists(), "unpickling the adapter ran code: weights_only loading was bypassed"


def test_the_code_execution_payload_is_live(tmp_path: Path) -> None:
    """Control for the pickle cases: without weights_only the payload does write its marker file."""
    case = _pickled(lambda marker: {"x": WritesMarker(marker)})(tmp_path)
    with pytest.raises(AdapterError):
        load_adapters(case.adapters)
    assert not case.marker.exists()
    torch.load(case.culprit, weights_only=False)
    assert case.marker.read_text() == "code ran while unpickling"


def test_control_good_adapters_merge_through_the_cli(tmp_path: Path, capsys) -> None:
    """The same command with good adapters succeeds, so the failures above come from the bad input alone."""
    out = tmp_path / "new" / "deeper" / "out"
    code = main(
        ["merge", "--method", "ties", "--adapters", *map(str, _good(tmp_path, n=3)), "--out", str(out), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["delta.safetensors", "merge.json"]


# ------------------------------------------------------------------------------ hyper-parameters

BAD_PARAMETERS = [  # (method, CLI flags, library parameters, output format, parameter named in the error)
    pytest.param("ties", ["--top-k", "0"], {"top_k": "0"}, "auto", "top_k", id="top-k-0"),
    pytest.param("ties", ["--top-k", "101"], {"top_k": 101}, "auto", "top_k", id="top-k-101"),
    pytest.param("ties", ["--top-k", "-5"], {"top_k": -5}, "auto", "top_k", id="top-k-minus-5"),
    pytest.param("ties", ["--top-k", "nan"], {"top_k": float("nan")}, "auto", "top_k", id="top-k-nan"),
    pytest.param("ties", ["--top-k", "lots"], {"top_k": "lots"}, "auto", "top_k", id="top-k-not-a-number"),
    pytest.param("dare_ties", ["--drop-p", "1.0"], {"drop_p": 1.0}, "auto", "drop_p", id="drop-p-1"),
    pytest.param("dare_ties", ["--drop-p", "-0.1"], {"drop_p": -0.1}, "auto", "drop_p", id="drop-p-minus-0.1"),
    pytest.param("hybrid", ["--alpha", "1.5"], {"alpha": 1.5}, "auto", "alpha", id="alpha-1.5"),
    pytest.param("hybrid", ["--alpha", "-0.2"], {"alpha": -0.2}, "auto", "alpha", id="alpha-minus-0.2"),
    pytest.param("hybrid", ["--alpha", "auto-bogus"], {"alpha": "auto-bogus"}, "auto", "alpha", id="alpha-auto-bogus"),
    pytest.param(
        "mix",
        ["--alpha", "2", "--set", "first=ta", "--set", "second=ties"],
        {"alpha": 2, "first": "ta", "second": "ties"},
        "auto",
        "alpha",
        id="mix-alpha-2",
    ),
    pytest.param("no_such_method", [], {}, "auto", "method", id="unknown-method"),
    pytest.param("ties", ["--drop-p", "0.1"], {"drop_p": 0.1}, "auto", "drop_p", id="drop-p-for-ties"),
    pytest.param("ta", ["--set", "top_k=20"], {"top_k": 20}, "auto", "top_k", id="top-k-for-ta"),
    pytest.param("ties", ["--format", "peft"], {}, "peft", "format", id="peft-format-for-dense-ties"),
]


@pytest.mark.parametrize(("method", "flags", "params", "output_format", "name"), BAD_PARAMETERS)
def test_library_rejects_bad_parameters(
    tmp_path: Path, method: str, flags: list[str], params: dict, output_format: str, name: str
) -> None:
    adapters = load_adapters(_good(tmp_path))
    out = tmp_path / "new" / "out"
    with pytest.raises(ParameterError) as caught:
        merge_to_folder(adapters, method, out, params, output_format)
    assert caught.value.name == name
    assert repr(name) in str(caught.value)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("nested", [False, True], ids=["flat-out", "nested-out"])
@pytest.mark.parametrize(("method", "flags", "params", "output_format", "name"), BAD_PARAMETERS)
def test_cli_rejects_bad_parameters_and_writes_nothing(
    tmp_path: Path, capsys, method: str, flags: list[str], params: dict, output_format: str, name: str, nested: bool
) -> None:
    paths = _good(tmp_path)
    out = tmp_path / "new" / "deeper" / "out" if nested else tmp_path / "out"
    before = sorted(tmp_path.rglob("*"))
    code = main(["merge", "--method", method, "--adapters", *map(str, paths), "--out", str(out), "--quiet", *flags])
    captured = capsys.readouterr()
    assert code == 2
    assert f"parameter {name!r}" in captured.err, f"stderr does not name {name}: {captured.err!r}"
    assert not out.exists()
    assert not (tmp_path / "new").exists()
    assert sorted(tmp_path.rglob("*")) == before


# ------------------------------------------------------------------------------ existing output


def _existing_output(root: Path) -> tuple[Path, dict[str, bytes]]:
    out = root / "out"
    (out / "sub").mkdir(parents=True)
    contents = {"delta.safetensors": b"old result", "merge.json": b"{}", "sub/notes.txt": b"keep me"}
    for name, data in contents.items():
        (out / name).write_bytes(data)
    return out, contents


def _assert_untouched(out: Path, contents: dict[str, bytes]) -> None:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert files == contents
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == [], "a staging folder was left behind"


def test_library_refuses_an_existing_output_without_overwrite(tmp_path: Path) -> None:
    adapters = load_adapters(_good(tmp_path))
    out, contents = _existing_output(tmp_path)
    with pytest.raises(LoramergeError) as caught:
        merge_to_folder(adapters, "ties", out)
    assert str(out) in str(caught.value)
    assert "overwrite" in str(caught.value)
    _assert_untouched(out, contents)


def test_cli_refuses_an_existing_output_without_overwrite(tmp_path: Path, capsys) -> None:
    paths = _good(tmp_path)
    out, contents = _existing_output(tmp_path)
    command = ["merge", "--method", "ties", "--adapters", *map(str, paths), "--out", str(out), "--quiet"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err
    _assert_untouched(out, contents)
    # with --overwrite the same command replaces the folder completely
    assert main([*command, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["delta.safetensors", "merge.json"]
    assert (out / "delta.safetensors").read_bytes() != contents["delta.safetensors"]


def test_cli_refuses_bad_adapters_even_with_overwrite_and_keeps_the_old_output(tmp_path: Path, capsys) -> None:
    case = ia3(tmp_path / "in")
    out, contents = _existing_output(tmp_path)
    command = ["merge", "--method", "ties", "--adapters", *map(str, case.adapters), "--out", str(out)]
    assert main([*command, "--overwrite", "--quiet"]) == 2
    assert str(case.culprit) in capsys.readouterr().err
    _assert_untouched(out, contents)


# ------------------------------------------------------------------------------ malformed LoRA settings in the config

MALFORMED_CONFIGS = [  # adapter_config.json entries that are wrong although the JSON itself is valid
    pytest.param({"r": 0}, id="r-0"),
    pytest.param({"lora_alpha": -8}, id="lora_alpha-negative"),
    pytest.param({"lora_alpha": "8"}, id="lora_alpha-string"),
    pytest.param({"use_dora": True}, id="dora"),
    pytest.param({"rank_pattern": {"q_proj(": 4}}, id="rank_pattern-invalid-regex"),
    pytest.param({"rank_pattern": ["q_proj"]}, id="rank_pattern-not-an-object"),
    pytest.param({"alpha_pattern": {"q_proj": "x"}}, id="alpha_pattern-string-value"),
    pytest.param({"lora_alpha": float("inf")}, id="lora_alpha-Infinity"),
    pytest.param({"alpha_pattern": {"q_proj": float("nan")}}, id="alpha_pattern-NaN"),
]


def _malformed(root: Path, config: dict) -> Path:
    return write_adapter(root / "bad", random_factors(torch.Generator().manual_seed(6), SHAPES, 4), config=config)


@pytest.mark.parametrize("config", MALFORMED_CONFIGS)
def test_library_rejects_malformed_lora_settings(tmp_path: Path, config: dict) -> None:
    folder = _malformed(tmp_path, config)
    with pytest.raises(AdapterError) as caught:
        load_adapter(folder)
    assert str(folder) in str(caught.value)


@pytest.mark.parametrize("config", MALFORMED_CONFIGS)
def test_cli_rejects_malformed_lora_settings_and_writes_nothing(tmp_path: Path, capsys, config: dict) -> None:
    folder = _malformed(tmp_path / "in", config)
    out = tmp_path / "new" / "deeper" / "out"
    command = ["merge", "--method", "ta", "--adapters", str(_good(tmp_path)[0]), str(folder), "--out", str(out)]
    assert main([*command, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err
    assert not (tmp_path / "new").exists()
