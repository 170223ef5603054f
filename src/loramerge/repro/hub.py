"""Pinned, checksummed downloads from the Hugging Face hub and from fixed URLs.

Every artifact a suite downloads is recorded in a *lock file* (JSON, committed next to the suite config): the hub
commit each repository is read at, and the sha256 of every file. `loramerge lock` writes it once on a machine with
hub access; afterwards every download is read at the locked commit and checked against the locked sha256, and a
mismatch stops the run naming the file. Downloads go through `huggingface_hub`, so its cache (HF_HOME / HF_HUB_CACHE)
and offline mode (HF_HUB_OFFLINE=1) apply as usual. A gated repository (one whose licence must be accepted, e.g.
Meta's Llama models) is locked and downloaded with the token in HF_TOKEN; without it, or when the hub refuses it, the
error says so.

Lock file layout::

    {"repos": {"model:openai/clip-vit-base-patch32": {"revision": "<40 hex>", "files": {"config.json": "<sha256>"}}},
     "urls": {"https://.../cars_shuffled_idxs.pt": "<sha256>"}}
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loramerge.adapters import sha256_file
from loramerge.atomic import write_atomically, write_json
from loramerge.errors import SubjectError

REPO_TYPES = ("model", "dataset")


class HubError(SubjectError):
    """A lock entry, a download or a downloaded file that cannot be used; the message names it."""


def repo_key(repo_type: str, repo_id: str) -> str:
    if repo_type not in REPO_TYPES:
        raise HubError(repo_id, f"repository type must be one of {REPO_TYPES}, got {repo_type!r}")
    return f"{repo_type}:{repo_id}"


def read_lock(path: str | Path) -> dict[str, Any]:
    """The lock file's content; an absent file is an empty lock (every lookup then says how to create it)."""
    path = Path(path)
    if not path.is_file():
        return {"repos": {}, "urls": {}}
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise HubError(path, f"unreadable lock file: {error}") from error
    if not isinstance(lock, dict) or not isinstance(lock.get("repos"), dict) or not isinstance(lock.get("urls"), dict):
        raise HubError(path, "a lock file holds {'repos': {...}, 'urls': {...}}")
    return lock


def write_lock(path: str | Path, lock: Mapping[str, Any]) -> None:
    write_json(path, {"repos": dict(sorted(lock["repos"].items())), "urls": dict(sorted(lock["urls"].items()))})


def _how_to_lock(lock_path: str | Path) -> str:
    return f"run `loramerge lock` for this suite on a machine with hub access to record it in {lock_path}"


def locked_repo(lock: Mapping[str, Any], lock_path: str | Path, repo_type: str, repo_id: str) -> dict[str, Any]:
    """The locked revision and file checksums of one repository."""
    entry = lock["repos"].get(repo_key(repo_type, repo_id))
    if entry is None:
        raise HubError(repo_id, f"no lock entry for this {repo_type} repository; {_how_to_lock(lock_path)}")
    revision = entry.get("revision", "")
    if not (isinstance(revision, str) and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)):
        raise HubError(lock_path, f"{repo_id}: the locked revision must be a 40-hex commit id, got {revision!r}")
    if not entry.get("files"):
        raise HubError(lock_path, f"{repo_id}: the lock lists no files")
    return entry


def verify_file(path: str | Path, expected_sha256: str, source: str) -> Path:
    """`path` if its sha256 is the recorded one, else a HubError naming the source and both checksums."""
    path = Path(path)
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise HubError(
            source,
            f"sha256 mismatch: the lock records {expected_sha256} but the downloaded file {path} has {actual}; "
            "the file changed or is corrupt (delete it from the cache to download again)",
        )
    return path


class HubClient(Protocol):
    """The part of `huggingface_hub` this module uses; tests pass a fake."""

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str) -> str: ...

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]: ...


class HuggingFaceHub:
    """`huggingface_hub` itself: files come from (or go into) its cache; trust_remote_code never applies here."""

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str) -> str:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision)

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]:
        from huggingface_hub import HfApi

        api = HfApi()
        commit = api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
        return commit, api.list_repo_files(repo_id, repo_type=repo_type, revision=commit)


def fetch_repo_files(
    lock: Mapping[str, Any],
    lock_path: str | Path,
    repo_type: str,
    repo_id: str,
    client: HubClient | None = None,
) -> dict[str, Path]:
    """Every locked file of a repository (filename -> local path in the hub cache), each checked against its sha256."""
    client = client or HuggingFaceHub()
    entry = locked_repo(lock, lock_path, repo_type, repo_id)
    files = {}
    for filename, sha256 in sorted(entry["files"].items()):
        source = f"{repo_id}@{entry['revision'][:12]}/{filename}"
        try:
            local = client.download(repo_id, filename, repo_type, entry["revision"])
        except Exception as error:  # huggingface_hub raises many types: offline, missing file, HTTP errors
            raise HubError(source, f"download failed: {error}") from error
        files[filename] = verify_file(local, sha256, source)
    return files


def fetch_url(lock: Mapping[str, Any], lock_path: str | Path, url: str, destination: str | Path) -> Path:
    """The locked URL's file at `destination` (written atomically), checked against its sha256."""
    expected = lock["urls"].get(url)
    if expected is None:
        raise HubError(url, f"no lock entry for this URL; {_how_to_lock(lock_path)}")

    def download(staging: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(staging, "wb") as handle:
                shutil.copyfileobj(response, handle)
        except OSError as error:
            raise HubError(url, f"download failed: {error}") from error
        verify_file(staging, expected, url)

    return write_atomically(destination, download)


def _matching(files: Sequence[str], patterns: Sequence[str], repo_id: str) -> list[str]:
    chosen = []
    for pattern in patterns:
        matches = sorted(name for name in files if fnmatch.fnmatchcase(name, pattern))
        if not matches:
            raise HubError(repo_id, f"no file matches {pattern!r} (the repository has {len(files)} files)")
        chosen.extend(name for name in matches if name not in chosen)
    return chosen


def lock_repo(
    repo_type: str,
    repo_id: str,
    patterns: Sequence[str],
    revision: str = "main",
    client: HubClient | None = None,
) -> dict[str, Any]:
    """A lock entry for one repository: `revision` resolved to its commit, each file matching `patterns` downloaded
    at that commit and checksummed."""
    client = client or HuggingFaceHub()
    commit, files = client.resolve(repo_id, repo_type, revision)
    checksums = {}
    for filename in _matching(files, patterns, repo_id):
        checksums[filename] = sha256_file(Path(client.download(repo_id, filename, repo_type, commit)))
    return {"revision": commit, "files": checksums}


def lock_url(url: str, opener: Callable[[str], Any] = urllib.request.urlopen) -> str:
    """The sha256 of a URL's content now."""
    digest = hashlib.sha256()
    with opener(url) as response:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_suite(
    vision: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    client: HubClient | None = None,
    opener: Callable[[str], Any] = urllib.request.urlopen,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The lock of a paper suite's `vision` config section: the backbone, every adapter, every dataset (and full
    release a validation split is reconstructed from) and every permutation URL. Entries already in `previous` are
    kept (a lock is only ever extended; delete an entry to re-resolve it)."""
    wanted = [
        RepoRequest("model", vision["backbone"]["repo"], vision["backbone"]["files"], vision["backbone"]["revision"])
    ]
    for spec in vision["tasks"].values():
        wanted.append(RepoRequest("model", spec["adapter"], vision["adapter_files"]))
        dataset = spec["dataset"]
        patterns = [pattern for split in sorted(dataset["files"]) for pattern in dataset["files"][split]]
        wanted.append(RepoRequest("dataset", dataset["repo"], patterns, dataset["revision"]))
        if "release" in spec:
            release = spec["release"]
            wanted.append(RepoRequest("dataset", release["repo"], release["files"], release["revision"]))
    permutations = vision["permutations"]
    urls = [
        permutations["url"].format(revision=permutations["revision"], file=spec["permutation"])
        for spec in vision["tasks"].values()
        if spec["split"] == "permutation"
    ]
    return extend_lock(wanted, urls, previous, client, opener, log)


# ---------------------------------------------------------------------------------------------- any suite's lock


@dataclass(frozen=True)
class RepoRequest:
    """One repository a suite downloads: the files matching `patterns` at `revision`. A gated repository (an
    accepted licence, e.g. Meta's Llama models) is read with the token in HF_TOKEN."""

    repo_type: str
    repo_id: str
    patterns: Sequence[str]
    revision: str = "main"
    gated: bool = False


TOKEN_VARIABLE = "HF_TOKEN"


def hub_token(repo_id: str) -> str:
    """The token a gated repository is read with: HF_TOKEN, or a HubError that says to set it."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise HubError(
            repo_id,
            f"a gated repository: set {TOKEN_VARIABLE} to a hub token of an account that accepted its licence "
            f"(https://huggingface.co/{repo_id}); {TOKEN_VARIABLE} is not set",
        )
    return token


def _refused(error: BaseException | None) -> bool:
    """Whether the hub refused the token (gated repository, 401 or 403) anywhere in an exception's chain."""
    from huggingface_hub.errors import GatedRepoError

    while error is not None:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(error, GatedRepoError) or status in (401, 403):
            return True
        error = error.__cause__ or error.__context__
    return False


def _refusal(repo_id: str, error: BaseException) -> HubError:
    return HubError(
        repo_id,
        f"the hub refused the token in {TOKEN_VARIABLE} for this gated repository: accept its licence at "
        f"https://huggingface.co/{repo_id} with the token's account and check the token can read it ({error})",
    )


def fetch_gated_repo_files(
    lock: Mapping[str, Any],
    lock_path: str | Path,
    repo_type: str,
    repo_id: str,
    client: HubClient | None = None,
) -> dict[str, Path]:
    """`fetch_repo_files` of a gated repository: HF_TOKEN must be set, and a refusal says so."""
    hub_token(repo_id)
    try:
        return fetch_repo_files(lock, lock_path, repo_type, repo_id, client)
    except HubError as error:
        if _refused(error):
            raise _refusal(repo_id, error) from error
        raise


def extend_lock(
    repos: Sequence[RepoRequest],
    urls: Sequence[str],
    previous: Mapping[str, Any] | None = None,
    client: HubClient | None = None,
    opener: Callable[[str], Any] = urllib.request.urlopen,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`previous` (a lock) with an entry for every repository and URL it lacks; entries it has are kept (a lock is
    only ever extended; delete an entry to re-resolve it)."""
    lock = {"repos": dict((previous or {}).get("repos", {})), "urls": dict((previous or {}).get("urls", {}))}
    for request in repos:
        key = repo_key(request.repo_type, request.repo_id)
        if key in lock["repos"]:
            continue
        log(f"locking {key} at {request.revision}")
        if request.gated:
            hub_token(request.repo_id)
        try:
            entry = lock_repo(request.repo_type, request.repo_id, request.patterns, request.revision, client)
        except Exception as error:  # huggingface_hub raises many types; only a refused token is reworded
            if request.gated and _refused(error):
                raise _refusal(request.repo_id, error) from error
            raise
        lock["repos"][key] = entry
    for url in urls:
        if url not in lock["urls"]:
            log(f"locking {url}")
            lock["urls"][url] = lock_url(url, opener)
    return lock
