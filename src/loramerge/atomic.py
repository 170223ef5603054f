"""Atomic, deterministic small-file writes (torch-free, so report jobs can use them without importing torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loramerge.errors import LoramergeError


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to a hidden sibling, then rename it over `path`: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    try:
        staging.write_text(text)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def write_json(path: str | Path, payload: Any) -> None:
    """Deterministic, atomic JSON (sorted keys, no timestamps)."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """JSON from a file, with an error that names the file when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LoramergeError(f"{path}: cannot read JSON ({error})") from None
