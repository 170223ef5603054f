"""Fuzzed statistics folders (stats.json and the Gram/Fisher safetensors files) and lock files. Each case ends in
the project's error naming the file (StatisticsError, HubError), within the 1 s deadline, or, when the change was
harmless, in finite statistics of the right shapes, or a lock whose files download and verify."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_adapter
from fuzzing import damaged_bytes, encoded_json, fuzz_settings, json_values, python_recursion_limit
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

from loramerge.adapters import load_adapters
from loramerge.errors import StatisticsError
from loramerge.repro.hub import HubError, Retry, fetch_repo_files, fetch_url, read_lock
from loramerge.stats import (
    FISHER,
    GRAM,
    INFO_FILE,
    Statistics,
    StatisticsInfo,
    adapter_weights_sha256,
    kind_file,
    write_task_statistics,
)

# Examples per property; FUZZ_CASES (their sum) is the number of fuzzed inputs this file runs.
STATS_JSON_CASES = 80
STATS_TENSOR_BYTES_CASES = 80
STATS_TENSOR_VALUES_CASES = 40
LOCK_CASES = 120
FUZZ_CASES = STATS_JSON_CASES + STATS_TENSOR_BYTES_CASES + STATS_TENSOR_VALUES_CASES + LOCK_CASES

SHAPES = {"layers.0.q_proj": (6, 5), "layers.0.v_proj": (4, 5)}  # module -> (out, in)
TASKS = ("task0", "task1")
PAIRS = [(task, module) for task in range(len(TASKS)) for module in SHAPES]


# ------------------------------------------------------------------------------------------ statistics


@pytest.fixture(scope="module")
def statistics_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """Two adapters and an intact statistics folder of theirs (each case copies it, then damages one file)."""
    root = tmp_path_factory.mktemp("statistics")
    generator = torch.Generator().manual_seed(0)
    paths = []
    for task in TASKS:
        factors = {
            module: (torch.randn(2, inputs, generator=generator), torch.randn(outputs, 2, generator=generator))
            for module, (outputs, inputs) in SHAPES.items()
        }
        paths.append(write_adapter(root / "adapters" / task, factors))
    adapters = load_adapters(paths)
    for position, task in enumerate(TASKS):
        tensors = {GRAM: {}, FISHER: {}}
        for module, (outputs, inputs) in SHAPES.items():
            rows = torch.randn(20, inputs, generator=generator, dtype=torch.float64)
            tensors[GRAM][module] = rows.T @ rows
            tensors[FISHER][module] = torch.rand(outputs, inputs, generator=generator)
        info = StatisticsInfo(20, 20, "tokens", "train", "ab" * 32, adapter_weights_sha256(adapters.adapters[position]))
        write_task_statistics(root / "stats", task, tensors, info)
    return adapters, root / "stats"


def _read_everything_or_named_error(folder: Path, adapters: Any) -> StatisticsError | None:
    """None when every task's Gram and Fisher of every module reads back finite and of the adapters' shapes, else the
    StatisticsError, checked to name a file of `folder`. Any other exception fails the property."""
    try:
        with python_recursion_limit():
            statistics = Statistics(folder, adapters)
            read = [(statistics.gram(task, module), statistics.fisher(task, module)) for task, module in PAIRS]
        for (gram, fisher), (_, module) in zip(read, PAIRS, strict=True):
            outputs, inputs = SHAPES[module]
            assert gram.shape == (inputs, inputs) and fisher.shape == (outputs, inputs)
            assert torch.isfinite(gram).all() and torch.isfinite(fisher).all()
    except StatisticsError as error:
        assert str(folder) in str(error), f"the error does not name the file: {error}"
        return error
    return None


def _copy(source: Path, root: Path) -> Path:
    return Path(shutil.copytree(source, root / "stats"))


INFO_EDITS = st.dictionaries(
    st.sampled_from([*StatisticsInfo.__dataclass_fields__, "extra"]),
    json_values | st.sampled_from(["images", "tokens", "AB" * 32, "ab" * 31, 0, 1, True]),
    max_size=3,
)


@fuzz_settings(STATS_JSON_CASES)
@given(task=st.sampled_from(TASKS), edits=INFO_EDITS, drop=st.booleans(), data=st.data())
def test_damaged_stats_json_is_refused_naming_the_file(
    statistics_source: tuple[Any, Path], task: str, edits: dict[str, Any], drop: bool, data: st.DataObject
) -> None:
    adapters, source = statistics_source
    document = json.loads((source / task / INFO_FILE).read_text())
    document.update(edits)
    if drop:
        document.pop(data.draw(st.sampled_from(sorted(document))))
    with tempfile.TemporaryDirectory() as scratch:
        folder = _copy(source, Path(scratch))
        (folder / task / INFO_FILE).write_bytes(data.draw(encoded_json(document)))
        error = _read_everything_or_named_error(folder, adapters)
        if error is not None:
            assert str(folder / task / INFO_FILE) in str(error)


@fuzz_settings(STATS_TENSOR_BYTES_CASES)
@given(task=st.sampled_from(TASKS), kind=st.sampled_from([GRAM, FISHER]), data=st.data())
def test_damaged_statistics_tensors_are_refused_naming_the_file(
    statistics_source: tuple[Any, Path], task: str, kind: str, data: st.DataObject
) -> None:
    adapters, source = statistics_source
    with tempfile.TemporaryDirectory() as scratch:
        folder = _copy(source, Path(scratch))
        target = folder / task / kind_file(kind)
        target.write_bytes(data.draw(damaged_bytes(target.read_bytes())))
        error = _read_everything_or_named_error(folder, adapters)
        if error is not None:
            assert str(target) in str(error)


@fuzz_settings(STATS_TENSOR_VALUES_CASES)
@given(
    kind=st.sampled_from([GRAM, FISHER]),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.bool]),
    shape_change=st.sampled_from([(0, 0), (1, 0), (0, 1), (-1, 0)]),
    fill=st.sampled_from([None, float("nan"), float("inf"), 1e300, -1e300, 0.0]),
    drop_module=st.booleans(),
)
def test_statistics_of_the_wrong_dtype_shape_or_values_are_refused(
    statistics_source: tuple[Any, Path],
    kind: str,
    dtype: torch.dtype,
    shape_change: tuple[int, int],
    fill: float | None,
    drop_module: bool,
) -> None:
    """The kind's file rewritten with another dtype, a shape that differs from the adapters' module, non-finite or
    huge values (huge but finite in the kind's dtype reads back), or a module missing."""
    adapters, source = statistics_source
    with tempfile.TemporaryDirectory() as scratch:
        folder = _copy(source, Path(scratch))
        target = folder / TASKS[1] / kind_file(kind)
        tensors = {}
        for module, (outputs, inputs) in SHAPES.items():
            rows, columns = (inputs, inputs) if kind == GRAM else (outputs, inputs)
            tensor = torch.ones(rows + shape_change[0], columns + shape_change[1], dtype=torch.float64)
            if fill is not None:
                tensor[0, 0] = fill
            tensors[module] = tensor.to(dtype)
        if drop_module:
            tensors.pop("layers.0.v_proj")
        save_file(tensors, target)
        error = _read_everything_or_named_error(folder, adapters)
        expected_dtype = torch.float64 if kind == GRAM else torch.float32
        intact = dtype == expected_dtype and shape_change == (0, 0) and not drop_module
        finite = fill is None or torch.isfinite(torch.tensor(fill, dtype=expected_dtype))
        assert (error is None) == (intact and finite), error
        if error is not None:
            assert str(target) in str(error)


# ------------------------------------------------------------------------------------------ the lock file

REPO = "org/adapter"
URL = "https://example.org/permutation.pt"
CONTENT = {"adapter_config.json": b'{"r": 2}', "adapter_model.safetensors": b"\x08" + bytes(range(64))}
URL_CONTENT = b"permutation bytes"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


LOCK = {
    "repos": {f"model:{REPO}": {"revision": "0123456789" * 4, "files": {n: _sha256(c) for n, c in CONTENT.items()}}},
    "urls": {URL: _sha256(URL_CONTENT)},
}


class ServingHub:
    """A hub client that serves CONTENT (every repository, every revision) from a scratch folder."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str, force_download: bool = False) -> str:
        if filename not in CONTENT:
            raise FileNotFoundError(f"{repo_id} has no file {filename!r}")
        path = self.scratch / "served" / hashlib.sha256(filename.encode()).hexdigest()
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(CONTENT[filename])
        return str(path)

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]:
        return "0123456789" * 4, sorted(CONTENT)


class Response:
    """What urlopen returns, over fixed bytes."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def read(self, size: int = -1) -> bytes:
        chunk, self.content = (self.content, b"") if size < 0 else (self.content[:size], self.content[size:])
        return chunk


def _lock_edits(draw: st.DrawFn) -> dict[str, Any]:
    """LOCK with one value replaced (anything JSON, or near misses of a commit id or sha256), or one key removed."""
    lock = json.loads(json.dumps(LOCK))
    entry = lock["repos"][f"model:{REPO}"]
    near_misses = st.sampled_from(["0123456789" * 4 + "0", "ABCDEF" * 10 + "0123", "0" * 64, "g" * 64, "", "main"])
    replacement = draw(json_values | near_misses)
    where = draw(st.sampled_from(["lock", "repos", "repo key", "entry", "revision", "files", "sha", "urls", "url sha"]))
    if where == "lock":
        return replacement
    if where == "repos":
        lock["repos"] = replacement
    elif where == "repo key":
        lock["repos"] = {draw(st.sampled_from(["dataset:" + REPO, REPO, "model:", "space:" + REPO])): entry}
    elif where == "entry":
        lock["repos"][f"model:{REPO}"] = replacement
    elif where in ("revision", "files"):
        entry[where] = replacement
    elif where == "sha":
        entry["files"][draw(st.sampled_from(sorted(CONTENT)))] = replacement
    elif where == "urls":
        lock["urls"] = replacement
    else:
        lock["urls"][URL] = replacement
    return lock


@fuzz_settings(LOCK_CASES)
@given(data=st.data(), raw_damage=st.booleans())
def test_damaged_lock_files_are_refused_naming_the_file(data: st.DataObject, raw_damage: bool) -> None:
    """read_lock refuses what it cannot use naming the lock file; whatever it accepts downloads and verifies, or
    stops with a HubError naming the lock file or the download at fault; no retry waits (the sleep is recorded)."""
    if raw_damage:
        content = data.draw(damaged_bytes(json.dumps(LOCK).encode()))
    else:
        content = data.draw(encoded_json(data.draw(st.composite(_lock_edits)())))
    waits: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "suite.lock.json"
        path.write_bytes(content)
        try:
            with python_recursion_limit():
                lock = read_lock(path)
        except HubError as error:
            assert str(path) in str(error), error
            return
        retry = Retry(sleep=waits.append)
        try:
            with python_recursion_limit():
                files = fetch_repo_files(lock, path, "model", REPO, ServingHub(Path(scratch)), retry)
            assert {name: Path(local).read_bytes() for name, local in files.items()} == CONTENT
            destination = Path(scratch) / "out" / "permutation.pt"
            with python_recursion_limit():
                fetched = fetch_url(lock, path, URL, destination, lambda _: Response(URL_CONTENT), retry)
            assert fetched.read_bytes() == URL_CONTENT
        except HubError as error:
            # the lock file, or the download at fault: the URL, or the repository's file at the locked revision
            assert str(error).startswith((f"{URL}: ", f"{REPO}@")) or str(path) in str(error), error
            assert not (Path(scratch) / "out").exists() or not any((Path(scratch) / "out").iterdir())
        assert set(waits) <= set(retry.waits())
