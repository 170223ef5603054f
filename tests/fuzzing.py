"""Shared pieces of the fuzz tests (tests/unit/test_fuzz_*.py): the hypothesis settings every property runs under,
and strategies that damage a file's bytes or a JSON document the ways real files get damaged or forged.

Every property runs a fixed number of examples (its module's `*_CASES` constants, summed in `FUZZ_CASES`), derived
from a fixed seed (`derandomize=True`), so CI runs the same cases each time and the count is known. The 1 s deadline
is per example: a reader that hangs or backtracks fails the property instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Length prefixes a forged or damaged safetensors file may carry: gigabytes and more, just past the file, zero.
ABSURD_HEADER_LENGTHS = (2**64 - 1, 2**63, 2**40, 2**32, 10**9, 100_000_001, 99_999_999)


def fuzz_settings(examples: int) -> settings:
    """`examples` seeded examples, each within one second; no example database is written into the repository."""
    return settings(
        max_examples=examples,
        deadline=1000,
        derandomize=True,
        database=None,
        print_blob=False,
        # the fixtures used (monkeypatch, module-scoped folders) are not reset between examples, on purpose
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# Python's own default, which the workflow and the command line run under.
PYTHON_RECURSION_LIMIT = 1000


@contextlib.contextmanager
def python_recursion_limit() -> Iterator[None]:
    """Run the code under test at Python's default recursion limit: hypothesis raises the limit while a test runs
    (room for its own frames), which would hide a reader that recurses as deep as its input nests."""
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(PYTHON_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


def header_length(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


@st.composite
def damaged_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` truncated, with bytes flipped, with bytes spliced in, or with its first 8 bytes (a safetensors
    file's header length) replaced; the result differs from `original`."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "length"]))
    if kind == "truncate":
        return original[: draw(st.integers(0, len(original) - 1))]
    if kind == "flip":
        damaged = bytearray(original)
        for position in draw(st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=8, unique=True)):
            damaged[position] ^= draw(st.integers(1, 255))
        return bytes(damaged)
    if kind == "splice":
        position = draw(st.integers(0, len(original)))
        return original[:position] + draw(st.binary(min_size=1, max_size=64)) + original[position:]
    near = [len(original) - 7, len(original), 0, 1, 7]
    length = draw(st.sampled_from(ABSURD_HEADER_LENGTHS + tuple(near)) | st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + original[8:]


def nested(depth: int, innermost: Any = 0) -> Any:
    """A list nested `depth` deep, built without recursion."""
    value = innermost
    for _ in range(depth):
        value = [value]
    return value


# JSON values that a reader must judge without crashing: wrong types, non-finite and huge numbers, long strings,
# containers (deep ones too).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 2**63, 10**40, 10**300])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e-320, 1e308, 3.4e38, 4e38])
    | st.text(max_size=20)
    | st.builds(lambda n: "x" * n, st.integers(1000, 200_000)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
) | st.builds(nested, st.integers(50, 900))


@st.composite
def encoded_json(draw: st.DrawFn, document: Any) -> bytes:
    """`document` as a file would hold it: plain JSON (NaN and Infinity spelled as Python writes them), or, for a
    non-empty object, with a key given twice, in another encoding than UTF-8, cut short, nested past the parser's
    depth, with an integer of more digits than Python converts, or behind a byte-order mark."""
    text = json.dumps(document)
    kind = draw(st.sampled_from(["plain", "duplicate", "latin-1", "utf-16", "cut", "deep", "digits", "bom"]))
    if kind == "plain" or not (isinstance(document, dict) and document):
        return text.encode()
    if kind == "duplicate":
        key = draw(st.sampled_from(sorted(document)))
        value = draw(json_values.filter(lambda v: not isinstance(v, list) or len(json.dumps(v)) < 10_000))
        return ("{" + json.dumps(key) + ": " + json.dumps(value) + ", " + text[1:]).encode()
    if kind == "latin-1":
        return text[:-1].encode() + b', "note": "caf\xe9"}'
    if kind == "utf-16":
        return text.encode("utf-16")
    if kind == "cut":
        return text.encode()[: draw(st.integers(0, len(text) - 1))]
    if kind == "deep":
        depth = draw(st.integers(1000, 100_000))
        return (text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}").encode()
    if kind == "digits":
        return (text[:-1] + ', "big": ' + "9" * draw(st.integers(4301, 20_000)) + "}").encode()
    return b"\xef\xbb\xbf" + text.encode()
