"""Atomic, deterministic file writes (torch-free, so report jobs can use them without importing torch)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loramerge.errors import LoramergeError


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary path)` in `path`'s folder, then rename the file onto `path`: readers (and an interrupted
    run) never see a partial file, and nothing is left behind on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    staging = Path(staging_name)
    os.chmod(staging, 0o644)  # mkstemp makes it 0600; outputs are meant to be read by others
    try:
        write(staging)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text with the line ends given, written atomically."""
    return write_atomically(path, lambda staging: staging.write_bytes(text.encode("utf-8")))


def write_json(path: str | Path, payload: Any) -> Path:
    """Deterministic, atomic JSON (sorted keys, no timestamps)."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """JSON from a file, with an error that names the file when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LoramergeError(f"{path}: cannot read JSON ({error})") from None
