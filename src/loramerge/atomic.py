"""Atomic, deterministic file writes (torch-free, so report jobs can use them without importing torch).

A full disk while writing is reported as an :class:`OutOfSpaceError` naming the file that could not be written, and
leaves neither the file nor its temporary sibling behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from loramerge.errors import LoramergeError, SubjectError

# A full disk and an exhausted quota look alike to whoever has to free space.
_FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Writers in Rust (safetensors) report the OS error inside their own exception type: "... (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class OutOfSpaceError(SubjectError):
    """The disk (or quota) filled up while writing a file; the message starts with the file's path."""


def _full_disk_errno(error: BaseException) -> int | None:
    """ENOSPC or EDQUOT when `error`, or an error it was raised from, is the operating system's "no space left",
    whichever library's exception type carries it; None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_DISK_ERRNOS:
            return current.errno
        for code in map(int, _RUST_OS_ERROR.findall(str(current))):
            if code in _FULL_DISK_ERRNOS:
                return code
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def reporting_full_disk(destination: str | Path) -> Iterator[None]:
    """Turn a full disk inside the block into an OutOfSpaceError naming `destination` (the OS's own error names no
    file: it is a write() that fails, not an open())."""
    try:
        yield
    except OutOfSpaceError:
        raise
    except Exception as error:
        code = _full_disk_errno(error)
        if code is None:
            raise
        problem = f"no space left on device ({errno.errorcode[code]}) while writing; free space and rerun"
        raise OutOfSpaceError(destination, problem) from error


def write_files_atomically(writes: Mapping[str | Path, Callable[[Path], None]]) -> list[Path]:
    """Call each `write(temporary path)` in its destination's folder, and only when every one has succeeded rename
    the temporary files onto their destinations: readers (and an interrupted run) never see a partial file or an
    incomplete set of files (a table's .csv without its .md), and nothing is left behind on error. Returns the
    destinations in the order given."""
    staged: dict[Path, Path] = {}
    try:
        for destination, write in writes.items():
            destination = Path(destination)
            with reporting_full_disk(destination):
                destination.parent.mkdir(parents=True, exist_ok=True)
                handle, staging_name = tempfile.mkstemp(
                    prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
                )
                os.close(handle)
                staged[destination] = Path(staging_name)
                os.chmod(staging_name, 0o644)  # mkstemp makes it 0600; outputs are meant to be read by others
                write(staged[destination])
        # A rename within a folder allocates no data blocks, so a full disk cannot stop the set half-way here.
        for destination, staging in staged.items():
            os.replace(staging, destination)
    except BaseException:
        for staging in staged.values():
            staging.unlink(missing_ok=True)
        raise
    return list(staged)


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary path)` in `path`'s folder, then rename the file onto `path`: readers (and an interrupted
    run) never see a partial file, and nothing is left behind on error."""
    return write_files_atomically({path: write})[0]


def write_texts(texts: Mapping[str | Path, str]) -> list[Path]:
    """UTF-8 texts with the line ends given, written atomically as one set (all or none); returns the paths."""
    return write_files_atomically(
        {path: lambda staging, text=text: staging.write_bytes(text.encode("utf-8")) for path, text in texts.items()}
    )


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text with the line ends given, written atomically."""
    return write_texts({path: text})[0]


def write_json(path: str | Path, payload: Any) -> Path:
    """Deterministic, atomic JSON (sorted keys, no timestamps)."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """JSON from a file, with an error that names the file when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LoramergeError(f"{path}: cannot read JSON ({error})") from None
