"""Pinned, checksummed downloads from the Hugging Face hub and from fixed URLs.

Every artifact a suite downloads is recorded in a *lock file* (JSON, committed next to the suite config): the hub
commit each repository is read at, and the sha256 of every file. `loramerge lock` writes it once on a machine with
hub access; afterwards every download is read at the locked commit and checked against the locked sha256, and a
mismatch stops the run naming the file. Downloads go through `huggingface_hub`, so its cache (HF_HOME / HF_HUB_CACHE)
and offline mode (HF_HUB_OFFLINE=1) apply as usual. A gated repository (one whose licence must be accepted, e.g.
Meta's Llama models) is locked and downloaded with the token in HF_TOKEN; without it, or when the hub refuses it, the
error says so.

A download that fails for a reason that may pass (a dropped connection, a timeout, HTTP 408, 429 or 5xx, a file
whose sha256 is not the locked one, e.g. truncated) is tried again with exponential back-off (`Retry`: 4 tries,
waiting 2, 4 and 8 s); a refusal (401, 403, a gated or missing repository, file or revision, offline mode) is not,
as it would fail again. A file that never matched its checksum is never returned: a URL's file is written to a
temporary sibling and renamed into place only once its sha256 matches, and a hub file whose cached copy is corrupt
is downloaded again, bypassing the cache.

Lock file layout::

    {"repos": {"model:openai/clip-vit-base-patch32": {"revision": "<40 hex>", "files": {"config.json": "<sha256>"}}},
     "urls": {"https://.../cars_shuffled_idxs.pt": "<sha256>"}}
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loramerge.adapters import describe_value, parse_json, sha256_file
from loramerge.atomic import write_atomically, write_json
from loramerge.errors import SubjectError

REPO_TYPES = ("model", "dataset")


class HubError(SubjectError):
    """A lock entry, a download or a downloaded file that cannot be used; the message names it."""


def repo_key(repo_type: str, repo_id: str) -> str:
    if repo_type not in REPO_TYPES:
        raise HubError(repo_id, f"repository type must be one of {REPO_TYPES}, got {repo_type!r}")
    return f"{repo_type}:{repo_id}"


_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _repo_entry_problem(entry: object) -> str | None:
    """What is wrong with one repository's lock entry, or None."""
    if not isinstance(entry, dict):
        return f"an entry must be an object with 'revision' and 'files', got {describe_value(entry)}"
    revision = entry.get("revision", "")
    if not (isinstance(revision, str) and _COMMIT.fullmatch(revision)):
        return f"the locked revision must be a 40-hex commit id, got {describe_value(revision)}"
    files = entry.get("files")
    if not (isinstance(files, dict) and files):
        return "the lock lists no files"
    for name, sha256 in files.items():
        if not _is_sha256(sha256):
            got = describe_value(sha256)
            return f"file {describe_value(name)}: the sha256 must be 64 lower-case hex digits, got {got}"
    return None


def read_lock(path: str | Path) -> dict[str, Any]:
    """The lock file's content, every entry checked; an absent file is an empty lock (every lookup then says how to
    create it)."""
    path = Path(path)
    if not path.is_file():
        return {"repos": {}, "urls": {}}
    try:
        lock = parse_json(path.read_bytes())
    except (OSError, ValueError) as error:
        raise HubError(path, f"unreadable lock file: {error}") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("repos"), dict) or not isinstance(lock.get("urls"), dict):
        raise HubError(path, "a lock file holds {'repos': {...}, 'urls': {...}}")
    for key, entry in lock["repos"].items():
        repo_type, _, repo_id = key.partition(":")
        if repo_type not in REPO_TYPES or not repo_id:
            raise HubError(path, f"repository key {describe_value(key)} is not '<model|dataset>:<owner>/<name>'")
        problem = _repo_entry_problem(entry)
        if problem is not None:
            raise HubError(path, f"{repo_id}: {problem}")
    for url, sha256 in lock["urls"].items():
        if not _is_sha256(sha256):
            raise HubError(path, f"{describe_value(url)}: the sha256 must be 64 lower-case hex digits")
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
    problem = _repo_entry_problem(entry)
    if problem is not None:
        raise HubError(lock_path, f"{repo_id}: {problem}")
    return entry


def _mismatch(expected_sha256: str, actual: str, what: str, advice: str) -> str:
    return f"sha256 mismatch: the lock records {expected_sha256} but {what} has {actual}; {advice}"


# ------------------------------------------------------------------------------------------ retrying downloads


@dataclass(frozen=True)
class Retry:
    """How a download that failed for a reason that may pass is tried again: `attempts` tries in all, waiting
    `first_wait` seconds after the first failure and `factor` times longer after each next one; `sleep` does the
    waiting (tests pass a recorder)."""

    attempts: int = 4
    first_wait: float = 2.0
    factor: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    def waits(self) -> list[float]:
        """The back-off before each try after the first."""
        return [self.first_wait * self.factor**failure for failure in range(self.attempts - 1)]


DEFAULT_RETRY = Retry()
# Statuses that say "try later": request timeout, too many requests, and every server error.
_RETRIED_STATUSES = frozenset({408, 429, *range(500, 600)})
_Result = TypeVar("_Result")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from or during, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status(error: BaseException) -> int | None:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, urllib.error.HTTPError):
        status = error.code
    return status if isinstance(status, int) else None


def _is_transport_error(error: BaseException) -> bool:
    # huggingface_hub's HTTP client (httpx, or its fork httpx2) raises TransportError subclasses when a connection
    # drops or times out; matched by name so that this module need not import the client.
    return any(cls.__name__ == "TransportError" and cls.__module__.startswith("httpx") for cls in type(error).__mro__)


def _may_pass(error: BaseException) -> bool:
    """Whether a failed download may succeed when tried again: the first HTTP status in the exception chain says
    so (408, 429, 5xx), else a dropped connection, a timeout or an incomplete read anywhere in it. Refusals,
    missing repositories, files and revisions, and offline mode will fail again."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    for cause in _causes(error):
        status = _http_status(cause)
        if status is not None:
            return status in _RETRIED_STATUSES
        if isinstance(cause, OfflineModeIsEnabled):
            return False
        if isinstance(cause, ConnectionError | TimeoutError | http.client.HTTPException) or _is_transport_error(cause):
            return True
        if isinstance(cause, urllib.error.URLError) and not isinstance(cause.reason, FileNotFoundError):
            return True
        if type(cause) is OSError:  # huggingface_hub's "Consistency check failed": fewer bytes than announced
            return True
    return False


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _retrying(
    source: str,
    retry: Retry,
    attempt: Callable[[bool], _Result],
    mismatch: Callable[[_Result], str | None],
) -> _Result:
    """`attempt(again_after_corrupt)`'s result once `mismatch(result)` finds nothing wrong with it, trying again
    after each failure that may pass (`_may_pass`) or mismatch, up to `retry.attempts` times; then a HubError naming
    `source`, leading with the first mismatch (the most telling failure) or else the last error, and listing every
    attempt."""
    failures: list[str] = []
    first_mismatch: str | None = None
    last_error: BaseException | None = None
    waits = retry.waits()
    for number in range(retry.attempts):
        if number:
            retry.sleep(waits[number - 1])
        try:
            result = attempt(first_mismatch is not None)
            problem = mismatch(result)
        except Exception as error:  # huggingface_hub and urllib raise many types; _may_pass sorts them
            failure = f"download failed: {error}"
            if not _may_pass(error):
                if not failures:
                    raise HubError(source, failure) from error
                failures.append(_one_line(failure))
                raise HubError(source, _gave_up(first_mismatch or failure, failures, waits)) from error
            failures.append(_one_line(failure))
            last_error = error
            continue
        if problem is None:
            return result
        first_mismatch = first_mismatch or problem
        failures.append("sha256 mismatch (as above)" if problem == first_mismatch else _one_line(problem))
    raise HubError(source, _gave_up(first_mismatch or failures[-1], failures, waits)) from last_error


def _gave_up(lead: str, failures: Sequence[str], waits: Sequence[float]) -> str:
    spacing = ", ".join(f"{wait:g}" for wait in waits[: len(failures) - 1])
    tries = "; ".join(f"({number}) {failure}" for number, failure in enumerate(failures, start=1))
    waited = f", waiting {spacing} s between tries" if spacing else ""
    return f"{lead} [tried {len(failures)} times{waited}: {tries}]"


class HubClient(Protocol):
    """The part of `huggingface_hub` this module uses; tests pass a fake. `force_download` bypasses the cache: it is
    passed (True) only to download again a file whose cached copy did not match its checksum."""

    def download(
        self, repo_id: str, filename: str, repo_type: str, revision: str, force_download: bool = False
    ) -> str: ...

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]: ...


class HuggingFaceHub:
    """`huggingface_hub` itself: files come from (or go into) its cache; trust_remote_code never applies here."""

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str, force_download: bool = False) -> str:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, force_download=force_download)

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]:
        from huggingface_hub import HfApi

        api = HfApi()
        commit = api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
        return commit, api.list_repo_files(repo_id, repo_type=repo_type, revision=commit)


def _checked_download(
    client: HubClient,
    repo_id: str,
    filename: str,
    repo_type: str,
    revision: str,
    expected_sha256: str | None,
    retry: Retry,
) -> Path:
    """One hub file, tried again while it fails for a reason that may pass or does not match `expected_sha256`."""
    source = f"{repo_id}@{revision[:12]}/{filename}"

    def attempt(again_after_corrupt: bool) -> Path:
        if again_after_corrupt:  # the cache would hand back the same corrupt copy
            return Path(client.download(repo_id, filename, repo_type, revision, force_download=True))
        return Path(client.download(repo_id, filename, repo_type, revision))

    def mismatch(local: Path) -> str | None:
        if expected_sha256 is None:
            return None
        actual = sha256_file(local)
        if actual == expected_sha256:
            return None
        advice = "the file changed or is corrupt (delete it from the cache to download again)"
        return _mismatch(expected_sha256, actual, f"the downloaded file {local}", advice)

    return _retrying(source, retry, attempt, mismatch)


def fetch_repo_files(
    lock: Mapping[str, Any],
    lock_path: str | Path,
    repo_type: str,
    repo_id: str,
    client: HubClient | None = None,
    retry: Retry = DEFAULT_RETRY,
) -> dict[str, Path]:
    """Every locked file of a repository (filename -> local path in the hub cache), each checked against its sha256
    and downloaded again (`retry`) while it fails for a reason that may pass or does not match."""
    client = client or HuggingFaceHub()
    entry = locked_repo(lock, lock_path, repo_type, repo_id)
    return {
        filename: _checked_download(client, repo_id, filename, repo_type, entry["revision"], sha256, retry)
        for filename, sha256 in sorted(entry["files"].items())
    }


def _open_url(url: str) -> Any:
    return urllib.request.urlopen(url, timeout=60)


def fetch_url(
    lock: Mapping[str, Any],
    lock_path: str | Path,
    url: str,
    destination: str | Path,
    opener: Callable[[str], Any] = _open_url,
    retry: Retry = DEFAULT_RETRY,
) -> Path:
    """The locked URL's file at `destination`, checked against its sha256: each try writes a temporary sibling,
    renamed onto `destination` only once it matches; nothing is left behind when every try fails."""
    expected = lock["urls"].get(url)
    if expected is None:
        raise HubError(url, f"no lock entry for this URL; {_how_to_lock(lock_path)}")

    def download(staging: Path) -> None:
        def attempt(_again_after_corrupt: bool) -> Path:
            with opener(url) as response, open(staging, "wb") as handle:
                shutil.copyfileobj(response, handle)
            return staging

        def mismatch(local: Path) -> str | None:
            actual = sha256_file(local)
            advice = "the file at the URL changed, or the transfer was corrupt"
            return None if actual == expected else _mismatch(expected, actual, "the downloaded content", advice)

        _retrying(url, retry, attempt, mismatch)

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
    retry: Retry = DEFAULT_RETRY,
) -> dict[str, Any]:
    """A lock entry for one repository: `revision` resolved to its commit, each file matching `patterns` downloaded
    at that commit (`retry`) and checksummed."""
    client = client or HuggingFaceHub()
    commit, files = client.resolve(repo_id, repo_type, revision)
    checksums = {}
    for filename in _matching(files, patterns, repo_id):
        local = _checked_download(client, repo_id, filename, repo_type, commit, None, retry)
        checksums[filename] = sha256_file(local)
    return {"revision": commit, "files": checksums}


def lock_url(url: str, opener: Callable[[str], Any] = _open_url, retry: Retry = DEFAULT_RETRY) -> str:
    """The sha256 of a URL's content now (read again while it fails for a reason that may pass)."""

    def attempt(_again_after_corrupt: bool) -> str:
        digest = hashlib.sha256()
        with opener(url) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    return _retrying(url, retry, attempt, lambda _: None)


def lock_suite(
    vision: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    client: HubClient | None = None,
    opener: Callable[[str], Any] = _open_url,
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
    retry: Retry = DEFAULT_RETRY,
) -> dict[str, Path]:
    """`fetch_repo_files` of a gated repository: HF_TOKEN must be set, and a refusal says so."""
    hub_token(repo_id)
    try:
        return fetch_repo_files(lock, lock_path, repo_type, repo_id, client, retry)
    except HubError as error:
        if _refused(error):
            raise _refusal(repo_id, error) from error
        raise


def extend_lock(
    repos: Sequence[RepoRequest],
    urls: Sequence[str],
    previous: Mapping[str, Any] | None = None,
    client: HubClient | None = None,
    opener: Callable[[str], Any] = _open_url,
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
