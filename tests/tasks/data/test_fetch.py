"""Behaviour tests for tasks.data.fetch against a real local HTTP server."""

import contextlib
import gzip
import hashlib
import io
import json
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.config import DEFAULT_SHA256
from tasks.data.archive import ArchiveError, check_gzip_tar
from tasks.data.fetch import FetchedArchive, FetchError, fetch, file_sha256

ARCHIVE_NAME = "aclImdb_v1.tar.gz"
FAST = {"backoff_s": 0.01, "timeout_s": 5.0, "progress": False}


def _make_archive() -> bytes:
    """Return the bytes of a tiny aclImdb-shaped .tar.gz."""
    buffer = io.BytesIO()
    members = {
        "aclImdb/README": b"Large Movie Review Dataset (test copy)\n",
        "aclImdb/train/pos/0_9.txt": b"A wonderful film. " * 200,
    }
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    """Return the sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    """A small valid gzip tar archive."""
    return _make_archive()


@pytest.fixture
def archive_file(tmp_path: Path, archive_bytes: bytes) -> Path:
    """The archive written to a user-owned location outside raw_dir."""
    path = tmp_path / "user" / ARCHIVE_NAME
    path.parent.mkdir()
    path.write_bytes(archive_bytes)
    return path


@dataclass
class FakeServer:
    """Scriptable HTTP server state: per-request actions and a log of requests seen."""

    body: bytes = b""
    actions: list[str] = field(default_factory=list)
    requests: list[dict[str, str | None]] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The archive URL on this server."""
        return f"{self.base_url}/data/{ARCHIVE_NAME}"

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of each request, in order."""
        return [r["range"] for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    """Serves FakeServer.body, doing whatever the next scripted action says."""

    state: FakeServer  # set on a subclass per server

    def log_message(self, fmt: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Handle one scripted request."""
        state = self.state
        with state.lock:
            state.requests.append({"path": self.path, "range": self.headers.get("Range")})
            action = state.actions.pop(0) if state.actions else "serve"
        body = state.body
        if action in ("500", "404"):
            self.send_error(int(action))
        elif action == "drop_half":
            # Promise the full length, send half, then hang up mid-body.
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif action == "ignore_range":
            self._send(200, body)
        else:
            self._serve_with_range(body)

    def _serve_with_range(self, body: bytes) -> None:
        """Serve ``body`` honouring ``Range: bytes=N-``."""
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match is None:
            self._send(200, body)
            return
        start = int(match.group(1))
        if start >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(206, body[start:], f"bytes {start}-{len(body) - 1}/{len(body)}")

    def _send(self, status: int, payload: bytes, content_range: str | None = None) -> None:
        """Write a complete response."""
        self.send_response(status)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(payload)))
        if content_range is not None:
            self.send_header("Content-Range", content_range)
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server(archive_bytes: bytes) -> Iterator[FakeServer]:
    """A real HTTP server on 127.0.0.1 in a background thread, serving the archive."""
    with serving(archive_bytes) as state:
        yield state


@contextlib.contextmanager
def serving(body: bytes) -> Iterator[FakeServer]:
    """A scriptable HTTP server on 127.0.0.1 in a background thread, serving `body`."""
    state = FakeServer(body=body)
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- local sources -------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_local_source_is_verified_in_place(
    tmp_path: Path, archive_file: Path, archive_bytes: bytes, as_url: bool
) -> None:
    # Given a valid archive the user already has, named by path or file:// URL
    source = archive_file.as_uri() if as_url else str(archive_file)
    raw_dir = tmp_path / "raw"

    # When it is fetched with the right digest
    result = fetch(source, raw_dir, _sha(archive_bytes).upper(), **FAST)

    # Then the original file is used as-is and nothing is copied
    assert result == FetchedArchive(
        path=archive_file,
        sha256=_sha(archive_bytes),
        size=len(archive_bytes),
        source=source,
        downloaded=False,
    )
    assert archive_file.read_bytes() == archive_bytes
    assert not raw_dir.exists() or not any(raw_dir.iterdir())


def test_relative_local_path_is_resolved(
    tmp_path: Path, archive_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a relative path from the current directory
    monkeypatch.chdir(archive_file.parent)

    # When it is fetched
    result = fetch(ARCHIVE_NAME, tmp_path / "raw", None, log=lambda _: None, **FAST)

    # Then the returned path is absolute and points at the user's file
    assert result.path == archive_file
    assert result.path.is_absolute()


def test_local_checksum_mismatch_names_both_digests(tmp_path: Path, archive_file: Path) -> None:
    # Given a valid archive and a different expected digest
    wrong = "0" * 64

    # When it is fetched
    with pytest.raises(FetchError) as info:
        fetch(str(archive_file), tmp_path / "raw", wrong, **FAST)

    # Then the error names expected, actual and the path, and the file is untouched
    message = str(info.value)
    assert wrong in message
    assert file_sha256(archive_file) in message
    assert str(archive_file) in message
    assert archive_file.exists()


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    # Given a path that does not exist
    missing = tmp_path / "nope.tar.gz"

    # When / then fetching it fails naming the path
    with pytest.raises(FetchError, match=re.escape(str(missing))):
        fetch(str(missing), tmp_path / "raw", None, **FAST)


# --- HTTP downloads --------------------------------------------------------------------------


def test_http_download_then_reuse_without_network(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a server with the archive and an empty raw_dir
    raw_dir = tmp_path / "raw"
    digest = _sha(archive_bytes)

    # When it is fetched twice
    first = fetch(server.url, raw_dir, digest, **FAST)
    second = fetch(server.url, raw_dir, digest, **FAST)

    # Then the first call downloads, the second reuses without any request
    dest = raw_dir / ARCHIVE_NAME
    assert first == FetchedArchive(dest, digest, len(archive_bytes), server.url, True)
    assert second == FetchedArchive(dest, digest, len(archive_bytes), server.url, False)
    assert dest.read_bytes() == archive_bytes
    assert len(server.requests) == 1
    assert not (raw_dir / f"{ARCHIVE_NAME}.part").exists()


def test_http_with_progress_bar_enabled(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given progress output turned on
    # When the archive is downloaded
    result = fetch(server.url, tmp_path / "raw", _sha(archive_bytes), backoff_s=0.01, progress=True)

    # Then it still lands intact
    assert result.downloaded
    assert result.path.read_bytes() == archive_bytes


def test_dropped_connection_resumes_with_range(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a server that hangs up halfway through the first response
    server.actions = ["drop_half"]
    log: list[str] = []

    # When the archive is fetched
    result = fetch(server.url, tmp_path / "raw", _sha(archive_bytes), log=log.append, **FAST)

    # Then the second request resumes from where the first stopped and the file is whole
    assert server.ranges[0] is None
    assert server.ranges[1] == f"bytes={len(archive_bytes) // 2}-"
    assert len(archive_bytes) // 2 > 0
    assert result.downloaded
    assert result.path.read_bytes() == archive_bytes
    assert any("attempt 1/5" in line for line in log)


def test_leftover_part_is_resumed(tmp_path: Path, server: FakeServer, archive_bytes: bytes) -> None:
    # Given a .part left behind by an interrupted earlier run
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    n = 100
    (raw_dir / f"{ARCHIVE_NAME}.part").write_bytes(archive_bytes[:n])

    # When the archive is fetched
    result = fetch(server.url, raw_dir, _sha(archive_bytes), **FAST)

    # Then only the remainder is requested and the result is correct
    assert server.ranges == [f"bytes={n}-"]
    assert result.path.read_bytes() == archive_bytes
    assert not (raw_dir / f"{ARCHIVE_NAME}.part").exists()


def test_server_ignoring_range_restarts_from_zero(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a stale .part with garbage and a server that ignores Range
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / f"{ARCHIVE_NAME}.part").write_bytes(b"garbage")
    server.actions = ["ignore_range"]

    # When the archive is fetched
    result = fetch(server.url, raw_dir, _sha(archive_bytes), **FAST)

    # Then the .part is overwritten, not appended to
    assert len(server.requests) == 1
    assert result.path.read_bytes() == archive_bytes


def test_range_not_satisfiable_starts_over(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a .part at least as long as the file on the server
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / f"{ARCHIVE_NAME}.part").write_bytes(archive_bytes + b"extra")

    # When the archive is fetched
    result = fetch(server.url, raw_dir, _sha(archive_bytes), **FAST)

    # Then the 416 causes one clean restart
    assert server.ranges == [f"bytes={len(archive_bytes) + 5}-", None]
    assert result.path.read_bytes() == archive_bytes


def test_retries_after_server_error(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a server whose first response is a 500
    server.actions = ["500"]
    log: list[str] = []

    # When the archive is fetched
    result = fetch(server.url, tmp_path / "raw", _sha(archive_bytes), log=log.append, **FAST)

    # Then it retried once, logged why, and succeeded
    assert len(server.requests) == 2
    assert result.path.read_bytes() == archive_bytes
    assert any("attempt 1/5" in line and "500" in line for line in log)


def test_gives_up_after_retries_exhausted(tmp_path: Path, server: FakeServer) -> None:
    # Given a server that always fails with 500
    server.actions = ["500"] * 10

    # When fetched with two retries
    with pytest.raises(FetchError, match=r"after 3 attempts: HTTP 500") as info:
        fetch(server.url, tmp_path / "raw", None, retries=2, **FAST)

    # Then exactly three requests were made and the error says why
    assert len(server.requests) == 3
    assert server.url in str(info.value)


def test_not_found_fails_fast(tmp_path: Path, server: FakeServer) -> None:
    # Given a server that answers 404
    server.actions = ["404"]
    raw_dir = tmp_path / "raw"

    # When the archive is fetched
    with pytest.raises(FetchError) as info:
        fetch(server.url, raw_dir, None, **FAST)

    # Then there is no retry and nothing is left behind
    assert f"HTTP 404 Not Found for {server.url}" in str(info.value)
    assert len(server.requests) == 1
    assert not (raw_dir / ARCHIVE_NAME).exists()
    assert not (raw_dir / f"{ARCHIVE_NAME}.part").exists()


def test_http_checksum_mismatch_leaves_nothing(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a server serving different bytes than expected
    raw_dir = tmp_path / "raw"
    expected = _sha(archive_bytes)
    server.body = _make_archive() + b"tampered"

    # When the archive is fetched
    with pytest.raises(FetchError, match="checksum mismatch") as info:
        fetch(server.url, raw_dir, expected, **FAST)

    # Then the error names both digests and no file is left under either name
    assert expected in str(info.value)
    assert _sha(server.body) in str(info.value)
    assert not (raw_dir / ARCHIVE_NAME).exists()
    assert not (raw_dir / f"{ARCHIVE_NAME}.part").exists()


def test_good_cached_file_survives_mismatching_request(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a cached archive that is good for digest A
    raw_dir = tmp_path / "raw"
    fetch(server.url, raw_dir, _sha(archive_bytes), **FAST)
    dest = raw_dir / ARCHIVE_NAME
    before = dest.stat()

    # When asked for digest B while the server still serves A's bytes
    digest_b = "b" * 64
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(server.url, raw_dir, digest_b, **FAST)

    # Then the cached file is still present and unchanged
    assert dest.read_bytes() == archive_bytes
    assert dest.stat().st_mtime_ns == before.st_mtime_ns
    assert dest.stat().st_ino == before.st_ino
    assert not (raw_dir / f"{ARCHIVE_NAME}.part").exists()


def test_corrupt_cached_file_is_replaced(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given a cached file whose bytes do not match the expected digest
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / ARCHIVE_NAME).write_bytes(b"truncated junk")

    # When the archive is fetched
    result = fetch(server.url, raw_dir, _sha(archive_bytes), **FAST)

    # Then it is downloaded again and replaces the bad copy
    assert result.downloaded
    assert (raw_dir / ARCHIVE_NAME).read_bytes() == archive_bytes


def test_no_sha256_computes_logs_and_records(
    tmp_path: Path, server: FakeServer, archive_bytes: bytes
) -> None:
    # Given no expected digest
    raw_dir = tmp_path / "raw"
    log: list[str] = []

    # When the archive is fetched twice
    first = fetch(server.url, raw_dir, None, log=log.append, **FAST)
    second = fetch(server.url, raw_dir, None, log=log.append, **FAST)

    # Then the digest is computed, logged, recorded in the sidecar, and reused via it
    digest = _sha(archive_bytes)
    assert first.sha256 == second.sha256 == digest
    assert any(digest in line and "no --sha256 given" in line for line in log)
    record = json.loads((raw_dir / f"{ARCHIVE_NAME}.source.json").read_text())
    assert record["url"] == server.url
    assert record["sha256"] == digest
    assert record["size"] == len(archive_bytes)
    assert record["fetched_at"].endswith("+00:00")
    assert (first.downloaded, second.downloaded) == (True, False)
    assert len(server.requests) == 1


# --- archive format checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"just some plain text\n" * 50, gzip.compress(b"not a tar file at all " * 100)],
    ids=["plain-text", "gzip-not-tar"],
)
def test_not_a_gzip_tar_is_rejected(tmp_path: Path, payload: bytes) -> None:
    # Given a file that is not a gzip-compressed tar archive
    path = tmp_path / "fake.tar.gz"
    path.write_bytes(payload)

    # When / then both the checker and fetch reject it clearly
    with pytest.raises(ArchiveError, match="not a gzip-compressed tar archive"):
        check_gzip_tar(path)
    with pytest.raises(FetchError, match="not a gzip-compressed tar archive"):
        fetch(str(path), tmp_path / "raw", None, **FAST)


def test_http_non_archive_is_rejected_and_removed(tmp_path: Path, server: FakeServer) -> None:
    # Given a server returning an HTML page instead of the archive
    server.body = b"<html>moved</html>"
    raw_dir = tmp_path / "raw"

    # When fetched without a digest
    with pytest.raises(FetchError, match="not a gzip-compressed tar archive"):
        fetch(server.url, raw_dir, None, **FAST)

    # Then nothing is left behind
    assert list(raw_dir.iterdir()) == []


# --- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "g" * 64, DEFAULT_SHA256 + "0"])
def test_invalid_sha256_is_rejected(tmp_path: Path, archive_file: Path, bad: str) -> None:
    # Given a malformed digest
    # When / then fetching fails before doing anything
    with pytest.raises(FetchError, match="not a valid sha256"):
        fetch(str(archive_file), tmp_path / "raw", bad, **FAST)


def test_unsupported_scheme_is_rejected(tmp_path: Path) -> None:
    # Given an ftp URL
    # When / then the error names the scheme
    with pytest.raises(FetchError, match="'ftp'"):
        fetch("ftp://example.com/aclImdb_v1.tar.gz", tmp_path / "raw", None, **FAST)


def test_url_without_file_name_is_rejected(tmp_path: Path) -> None:
    # Given a URL whose path has no file name
    # When / then it is rejected without any network access
    with pytest.raises(FetchError, match="no file name"):
        fetch("http://127.0.0.1:9/", tmp_path / "raw", None, **FAST)
