"""`loramerge lock`: the reproduction package's command. The library's CLI imports this module only when `lock`
runs, so that the library itself needs none of the reproduction package's dependencies."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from loramerge.repro.hub import HubError, extend_lock, lock_suite, read_lock, write_lock

Locker = Callable[[Mapping[str, Any] | None, Callable[[str], None]], dict[str, Any]]


def _clip_locker(vision: Mapping[str, Any]) -> Locker:
    return lambda previous, log: lock_suite(vision, previous, log=log)


def _nli_locker(nli: Mapping[str, Any]) -> Locker:
    from loramerge.repro.suites.llama.suite import LlamaNliSuite

    repos, urls = LlamaNliSuite.lock_requests(nli)
    return lambda previous, log: extend_lock(repos, urls, previous, log=log)


# kind -> (the section that lists its downloads, what locks them); kinds that download nothing are absent
LOCKED_KINDS: dict[str, tuple[str, Callable[[Mapping[str, Any]], Locker]]] = {
    "clip": ("vision", _clip_locker),
    "llama_nli": ("nli", _nli_locker),
}


def lock(config: Path) -> Path:
    """Record the hub commits and sha256s of a paper suite's downloads in the lock file its config names."""
    kinds = " or ".join(f"a '{section}' section (kind {kind})" for kind, (section, _) in LOCKED_KINDS.items())
    try:
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        kind = settings["kind"]
        if kind not in LOCKED_KINDS:
            raise HubError(config, f"a suite of kind {kind!r} downloads nothing to lock; paper suites have {kinds}")
        section, locker = LOCKED_KINDS[kind]
        downloads = settings[section]
        lock_path = Path(downloads["lock"])
    except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError, KeyError, TypeError) as error:
        problem = {KeyError: f"no key {error}", RecursionError: "nested too deeply to read"}.get(
            type(error), str(error)
        )
        raise HubError(config, f"not a paper-suite config with {kinds}: {problem}") from error
    extended = locker(downloads)(read_lock(lock_path), lambda line: print(line, file=sys.stderr))
    write_lock(lock_path, extended)
    print(f"wrote {lock_path}")
    return lock_path
