"""`loramerge lock`: the reproduction package's command. The library's CLI imports this module only when `lock`
runs, so that the library itself needs none of the reproduction package's dependencies."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from loramerge.repro.hub import HubError, lock_suite, read_lock, write_lock


def lock(config: Path) -> Path:
    """Record the hub commits and sha256s of a paper suite's downloads in the lock file its config names."""
    try:
        vision = yaml.safe_load(config.read_text(encoding="utf-8"))["vision"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise HubError(config, f"not a paper-suite config with a 'vision' section: {error}") from error
    lock_path = Path(vision["lock"])
    write_lock(lock_path, lock_suite(vision, read_lock(lock_path), log=lambda line: print(line, file=sys.stderr)))
    print(f"wrote {lock_path}")
    return lock_path
