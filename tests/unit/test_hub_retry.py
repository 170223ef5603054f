"""Hub and URL downloads that fail mid-way: a failure that may pass (dropped connection, timeout, HTTP 408/429/5xx,
a truncated or corrupt file) is tried again with exponential back-off, up to `Retry.attempts` times, and then stops
with a HubError naming the file and every attempt; a refusal (401, 403, 404, a gated or missing repository, offline
mode) is not tried again. No partial file is ever returned or left at a destination. The injected sleep records the
back-off instead of waiting."""

from __future__ import annotations

import hashlib
import http.client
import io
import urllib.error
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)

from loramerge.repro.hub import DEFAULT_RETRY, HubError, Retry, fetch_repo_files, fetch_url, lock_repo, lock_url

REPO = "org/adapter"
REVISION = "0123456789" * 4
CONTENT = b"adapter weights " * 64
URL = "https://example.org/heads.pt"
LOCK = {
    "repos": {f"model:{REPO}": {"revision": REVISION, "files": {"weights.bin": hashlib.sha256(CONTENT).hexdigest()}}},
    "urls": {URL: hashlib.sha256(CONTENT).hexdigest()},
}
SOURCE = f"{REPO}@{REVISION[:12]}/weights.bin"


def http_error(status: int) -> HfHubHTTPError:
    request = httpx2.Request("GET", f"https://huggingface.co/{REPO}/resolve/{REVISION}/weights.bin")
    return HfHubHTTPError(f"{status} error", response=httpx2.Response(status, request=request))


def offline_cache_miss() -> LocalEntryNotFoundError:
    """What huggingface_hub raises when the connection failed and the cache lacks the file: retried."""
    try:
        raise ConnectionResetError("connection reset by peer")
    except ConnectionResetError as cause:
        error = LocalEntryNotFoundError("cannot find the requested files in the local cache")
        error.__cause__ = cause
        return error


class FlakyHub:
    """A HubClient whose downloads follow a script: an exception is raised, b"truncated" serves the first half of
    CONTENT, b"ok" serves CONTENT; the last step repeats. Records each call's force_download."""

    def __init__(self, folder: Path, script: list[BaseException | bytes]) -> None:
        self.folder, self.script, self.forced = folder, script, []

    def download(self, repo_id: str, filename: str, repo_type: str, revision: str, force_download: bool = False) -> str:
        step = self.script[min(len(self.forced), len(self.script) - 1)]
        self.forced.append(force_download)
        if isinstance(step, BaseException):
            raise step
        path = self.folder / "cache" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CONTENT if step == b"ok" else CONTENT[: len(CONTENT) // 2])
        return str(path)

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, list[str]]:
        return REVISION, ["weights.bin"]


def recording_retry() -> tuple[Retry, list[float]]:
    waits: list[float] = []
    return Retry(sleep=waits.append), waits


def test_the_default_back_off_is_four_tries_waiting_2_4_8_seconds():
    assert (DEFAULT_RETRY.attempts, DEFAULT_RETRY.waits()) == (4, [2.0, 4.0, 8.0])
    assert Retry(attempts=3, first_wait=0.5, factor=3).waits() == [0.5, 1.5]


@pytest.mark.parametrize(
    "failure",
    [ConnectionError("reset"), TimeoutError("read timed out"), http_error(503), http_error(429), offline_cache_miss()],
    ids=["connection", "timeout", "http-503", "http-429", "cache-miss-after-connection-error"],
)
def test_a_download_that_fails_twice_then_succeeds_is_retried_with_back_off(tmp_path, failure):
    hub = FlakyHub(tmp_path, [failure, failure, b"ok"])
    retry, waits = recording_retry()
    files = fetch_repo_files(LOCK, tmp_path / "lock.json", "model", REPO, hub, retry)
    assert files["weights.bin"].read_bytes() == CONTENT
    assert len(hub.forced) == 3 and waits == [2.0, 4.0]


def test_a_download_that_always_fails_stops_after_the_last_attempt_naming_the_file(tmp_path):
    hub = FlakyHub(tmp_path, [http_error(502)])
    retry, waits = recording_retry()
    with pytest.raises(HubError) as caught:
        fetch_repo_files(LOCK, tmp_path / "lock.json", "model", REPO, hub, retry)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: download failed: 502 error [tried 4 times, waiting 2, 4, 8 s between tries: ")
    assert all(f"({attempt}) download failed: 502 error" in message for attempt in (1, 2, 3, 4))
    assert len(hub.forced) == 4 and waits == [2.0, 4.0, 8.0]


def test_a_truncated_download_is_fetched_again_bypassing_the_cache(tmp_path):
    hub = FlakyHub(tmp_path, [b"truncated", b"ok"])
    retry, waits = recording_retry()
    files = fetch_repo_files(LOCK, tmp_path / "lock.json", "model", REPO, hub, retry)
    assert files["weights.bin"].read_bytes() == CONTENT
    assert hub.forced == [False, True] and waits == [2.0]


def test_a_download_that_never_matches_its_checksum_is_reported_as_a_mismatch(tmp_path):
    hub = FlakyHub(tmp_path, [b"truncated"])
    retry, waits = recording_retry()
    with pytest.raises(HubError, match=rf"^{SOURCE}: sha256 mismatch: the lock records {LOCK['urls'][URL]}") as caught:
        fetch_repo_files(LOCK, tmp_path / "lock.json", "model", REPO, hub, retry)
    assert "[tried 4 times, waiting 2, 4, 8 s between tries: (1) sha256 mismatch" in str(caught.value)
    assert hub.forced == [False, True, True, True] and waits == [2.0, 4.0, 8.0]


def test_a_corrupt_cached_file_that_cannot_be_downloaded_again_reports_the_mismatch(tmp_path):
    """Offline (HF_HUB_OFFLINE=1), huggingface_hub refuses to bypass its cache: the corrupt copy is what to report."""
    offline = ValueError("Cannot pass 'force_download=True' when offline mode is enabled.")
    hub = FlakyHub(tmp_path, [b"truncated", offline])
    retry, waits = recording_retry()
    with pytest.raises(HubError, match=rf"^{SOURCE}: sha256 mismatch") as caught:
        fetch_repo_files(LOCK, tmp_path / "lock.json", "model", REPO, hub, retry)
    assert "(2) download failed: Cannot pass 'force_download=True' when offline mode is enabled." in str(caught.value)
    assert hub.forced == [False, True] and waits == [2.0]


@pytest.mark.parametrize(
    "refusal",
    [
        http_error(401),
        http_error(403),
        http_error(404),
        GatedRepoError("Access to model org/adapter is restricted.", response=http_error(403).response),
        RepositoryNotFoundError("Repository Not Found", response=http_error(404).response),
        RemoteEntryNotFoundError("Entry Not Found", response=http_error(404).response),
        OfflineModeIsEnabled("offline mode is enabled"),
        LocalEntryNotFoundError("cannot find the requested files in the disk cache and outgoing traffic is disabled"),
        ValueError("Invalid repo id"),
    ],
    ids=["401", "403", "404", "gated", "no-repository", "no-file", "offline", "not-cached-offline", "bad-argument"],
)
def test_a_refusal_is_not_retried(tmp_path, refusal):
    hub = FlakyHub(tmp_path, [refusal, b"ok"])
    retry, waits = recording_retry()
    with pytest.raises(HubError, match=rf"^{SOURCE}: download failed: ") as caught:
        fetch_repo_files(LOCK, tmp_path / "lock.json", "model", REPO, hub, retry)
    assert caught.value.__cause__ is refusal  # fetch_gated_repo_files reads the chain to spot a refused token
    assert len(hub.forced) == 1 and waits == []


def test_locking_a_repository_retries_its_downloads(tmp_path):
    hub = FlakyHub(tmp_path, [TimeoutError("read timed out"), b"ok"])
    retry, waits = recording_retry()
    entry = lock_repo("model", REPO, ["*.bin"], client=hub, retry=retry)
    assert entry == LOCK["repos"][f"model:{REPO}"] and waits == [2.0]


# ------------------------------------------------------------------------------------------ URLs


class Response(io.BytesIO):
    """What urlopen returns: a readable, closable body."""


def scripted_opener(script: list[BaseException | bytes]) -> tuple[Callable[[str], Response], list[str]]:
    """An opener following `script` like FlakyHub (b"ok": the content; b"truncated": half of it); the list records
    each URL opened."""
    opened: list[str] = []

    def opener(url: str) -> Response:
        step = script[min(len(opened), len(script) - 1)]
        opened.append(url)
        if isinstance(step, BaseException):
            raise step
        return Response(CONTENT if step == b"ok" else CONTENT[: len(CONTENT) // 2])

    return opener, opened


def url_error(status: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError(URL, status, f"status {status}", None, None)


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "failure",
    [
        urllib.error.URLError(ConnectionRefusedError("connection refused")),
        url_error(500),
        http.client.IncompleteRead(b"partial", 1024),
        TimeoutError("timed out"),
        b"truncated",
    ],
    ids=["refused-connection", "http-500", "incomplete-read", "timeout", "truncated-body"],
)
def test_a_url_that_fails_then_succeeds_is_written_once_complete(tmp_path, failure):
    opener, opened = scripted_opener([failure, b"ok"])
    retry, waits = recording_retry()
    destination = tmp_path / "out" / "heads.pt"
    assert fetch_url(LOCK, tmp_path / "lock.json", URL, destination, opener, retry) == destination
    assert destination.read_bytes() == CONTENT and leftovers(destination.parent) == ["heads.pt"]
    assert opened == [URL, URL] and waits == [2.0]


def test_a_url_that_always_fails_leaves_nothing_at_the_destination(tmp_path):
    opener, opened = scripted_opener([b"truncated", url_error(503)])
    retry, waits = recording_retry()
    destination = tmp_path / "out" / "heads.pt"
    with pytest.raises(HubError, match=rf"^{URL}: sha256 mismatch: ") as caught:
        fetch_url(LOCK, tmp_path / "lock.json", URL, destination, opener, retry)
    assert "[tried 4 times, waiting 2, 4, 8 s between tries: (1) sha256 mismatch" in str(caught.value)
    assert "(4) download failed: HTTP Error 503: status 503" in str(caught.value)
    assert len(opened) == 4 and waits == [2.0, 4.0, 8.0]
    assert leftovers(destination.parent) == []  # neither the file nor its temporary sibling


def test_a_missing_url_is_not_retried_and_leaves_nothing(tmp_path):
    opener, opened = scripted_opener([url_error(404), b"ok"])
    retry, waits = recording_retry()
    destination = tmp_path / "out" / "heads.pt"
    with pytest.raises(HubError, match=rf"^{URL}: download failed: HTTP Error 404"):
        fetch_url(LOCK, tmp_path / "lock.json", URL, destination, opener, retry)
    assert len(opened) == 1 and waits == [] and leftovers(destination.parent) == []


def test_locking_a_url_retries_a_dropped_connection(tmp_path):
    opener, opened = scripted_opener([ConnectionResetError("reset"), b"ok"])
    retry, waits = recording_retry()
    assert lock_url(URL, opener, retry) == LOCK["urls"][URL]
    assert len(opened) == 2 and waits == [2.0]
