"""Fetch and verify the IMDB review archive (pure logic, no Prefect)."""

import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from tasks.atomic import atomic_write_text, file_sha256, fsync_dir

DEFAULT_SOURCE = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
DEFAULT_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

_LOGGER = logging.getLogger(__name__)
_CHUNK = 1 << 20  # 1 MiB: big enough to be fast, small enough to keep memory flat
_TRANSIENT_HTTP = frozenset({408, 429, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511})
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# Compressed bytes we are willing to read to find the first tar header; a real archive
# yields its first 512 decompressed bytes from a few hundred compressed ones.
_GZIP_PROBE_LIMIT = 64 * 1024


class FetchError(RuntimeError):
    """Fetching or verifying the archive failed; the message says why."""


@dataclass(frozen=True)
class FetchedArchive:
    """A verified archive on disk and where it came from."""

    path: Path
    sha256: str
    size: int
    source: str
    downloaded: bool


class _TransientDownloadError(Exception):
    """A download attempt failed in a way that a retry (with resume) may fix."""


class _RangeNotSatisfiable(Exception):
    """The server rejected our resume offset (HTTP 416)."""


def check_gzip_tar(path: Path) -> None:
    """Raise FetchError unless ``path`` is gzip whose first block is a tar header."""
    path = Path(path)

    def bad(why: str) -> FetchError:
        return FetchError(f"{path} is not a gzip-compressed tar archive ({why})")

    with path.open("rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            raise bad("missing gzip magic bytes 1f 8b")
        fh.seek(0)
        # Only inflate the first tar block: the archive is ~80 MB and a full pass is slow.
        inflater = zlib.decompressobj(wbits=31)
        head = b""
        consumed = 0
        try:
            while len(head) < 512 and consumed < _GZIP_PROBE_LIMIT and not inflater.eof:
                chunk = fh.read(4096)
                if not chunk:
                    break
                consumed += len(chunk)
                head += inflater.decompress(chunk, 512 - len(head))
        except zlib.error as exc:
            raise bad(f"corrupt gzip stream: {exc}") from exc
    if len(head) < 512:
        raise bad(f"decompressed data too short for a tar header: {len(head)} bytes")
    if head[257:262] != b"ustar":
        raise bad("first decompressed block has no 'ustar' tar magic")


def fetch(
    source: str,
    raw_dir: Path,
    sha256: str | None = None,
    *,
    retries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    progress: bool = True,
    log: Callable[[str], None] = _LOGGER.info,
) -> FetchedArchive:
    """Return a verified gzip tar archive from a URL or local path, downloading if needed."""
    expected = _normalise_sha256(sha256)
    parsed = urllib.parse.urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_http(
            source,
            Path(raw_dir),
            expected,
            retries=max(0, retries),
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            progress=progress,
            log=log,
        )
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise FetchError(f"file:// URL with a remote host is not supported: {source}")
        local = Path(urllib.request.url2pathname(parsed.path))
    elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        # A one-letter "scheme" on Windows is a drive letter, not a URL.
        local = Path(source).expanduser()
    else:
        raise FetchError(
            f"unsupported source scheme {parsed.scheme!r} in {source!r}: "
            "use an http(s):// URL, a file:// URL or a local path"
        )
    return _verify_local(Path(os.path.abspath(local)), source, expected, log)


def _normalise_sha256(sha256: str | None) -> str | None:
    """Return the expected digest in lowercase, or raise if it is not 64 hex chars."""
    if sha256 is None:
        return None
    normalised = sha256.strip().lower()
    if not _SHA256_RE.fullmatch(normalised):
        raise FetchError(f"{sha256!r} is not a valid sha256 digest (expected 64 hex characters)")
    return normalised


def _log_computed(log: Callable[[str], None], digest: str, path: Path) -> None:
    """Tell the user the digest we trusted on first use so they can pin it."""
    log(f"no --sha256 given; computed sha256 {digest} for {path} (pass --sha256 {digest} to pin)")


def _verify_local(
    path: Path, source: str, expected: str | None, log: Callable[[str], None]
) -> FetchedArchive:
    """Verify a user-supplied file in place; it is never copied, changed or deleted."""
    if not path.exists():
        raise FetchError(f"archive not found: {path}")
    if not path.is_file():
        raise FetchError(f"archive path is not a regular file: {path}")
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        raise FetchError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")
    check_gzip_tar(path)
    if expected is None:
        _log_computed(log, actual, path)
    return FetchedArchive(
        path=path, sha256=actual, size=path.stat().st_size, source=source, downloaded=False
    )


def _sidecar_path(dest: Path) -> Path:
    """Return where the provenance record for ``dest`` lives."""
    return dest.with_name(dest.name + ".source.json")


def _read_sidecar(dest: Path) -> dict[str, object] | None:
    """Return the provenance record for ``dest``, or None if absent or unreadable."""
    try:
        record = json.loads(_sidecar_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_sidecar(dest: Path, url: str, digest: str, size: int) -> None:
    """Atomically write the provenance record next to ``dest``."""
    record = {
        "url": url,
        "sha256": digest,
        "size": size,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(_sidecar_path(dest), json.dumps(record, indent=2) + "\n")


def _reuse_cached(
    dest: Path, url: str, expected: str | None, log: Callable[[str], None]
) -> tuple[str, int] | None:
    """Return (sha256, size) if the cached ``dest`` can be used without any network."""
    if not dest.is_file():
        return None
    actual = file_sha256(dest)
    if expected is not None:
        if actual != expected:
            log(
                f"cached {dest} does not match the expected sha256 {expected} (got {actual}); "
                "downloading again, the cached copy stays until the new one verifies"
            )
            return None
    else:
        record = _read_sidecar(dest)
        if record is None or record.get("url") != url or record.get("sha256") != actual:
            log(
                f"cached {dest} has no matching provenance record for {url}; "
                "downloading again, the cached copy stays until the new one verifies"
            )
            return None
    try:
        check_gzip_tar(dest)
    except FetchError as exc:
        log(f"cached {dest} failed verification ({exc}); downloading again")
        return None
    size = dest.stat().st_size
    record = _read_sidecar(dest)
    if record is None or record.get("url") != url or record.get("sha256") != actual:
        # Backfill provenance so a later call without --sha256 can also reuse the file.
        _write_sidecar(dest, url, actual, size)
    return actual, size


def _fetch_http(
    url: str,
    raw_dir: Path,
    expected: str | None,
    *,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    progress: bool,
    log: Callable[[str], None],
) -> FetchedArchive:
    """Download ``url`` into ``raw_dir`` (or reuse a verified copy) and verify it."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise FetchError(f"URL has no file name to save it under: {url}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    dest = raw_dir / name
    part = dest.with_name(dest.name + ".part")

    cached = _reuse_cached(dest, url, expected, log)
    if cached is not None:
        digest, size = cached
        log(f"reusing verified {dest} (sha256 {digest})")
        if expected is None:
            _log_computed(log, digest, dest)
        return FetchedArchive(path=dest, sha256=digest, size=size, source=url, downloaded=False)

    _download_with_retries(
        url,
        part,
        retries=retries,
        backoff_s=backoff_s,
        timeout_s=timeout_s,
        progress=progress,
        log=log,
    )

    actual = file_sha256(part)
    if expected is not None and actual != expected:
        # A wrong body must not be resumed from next time, so drop it entirely.
        part.unlink(missing_ok=True)
        raise FetchError(f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}")
    try:
        check_gzip_tar(part)
    except FetchError:
        part.unlink(missing_ok=True)
        raise
    size = part.stat().st_size
    # Only a fully verified file ever appears under the final name.
    os.replace(part, dest)
    fsync_dir(raw_dir)
    _write_sidecar(dest, url, actual, size)
    log(f"downloaded {url} to {dest} ({size} bytes, sha256 {actual})")
    if expected is None:
        _log_computed(log, actual, dest)
    return FetchedArchive(path=dest, sha256=actual, size=size, source=url, downloaded=True)


def _download_with_retries(
    url: str,
    part: Path,
    *,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Stream ``url`` into ``part``, retrying transient failures and resuming with Range."""
    attempts = retries + 1
    restarted_after_416 = False
    failures = 0
    while True:
        try:
            _download_once(url, part, timeout_s=timeout_s, progress=progress, log=log)
            return
        except _RangeNotSatisfiable as exc:
            # The partial file is unusable for this server (e.g. it changed); start clean once.
            if restarted_after_416:
                raise FetchError(f"HTTP 416 Range Not Satisfiable for {url} twice") from exc
            restarted_after_416 = True
            part.unlink(missing_ok=True)
            log(f"server rejected resume of {part.name} (HTTP 416); starting over")
            continue
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code not in _TRANSIENT_HTTP:
                raise FetchError(f"HTTP {exc.code} {exc.reason} for {url}") from exc
            reason = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            reason = f"connection error: {exc.reason}"
        except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except _TransientDownloadError as exc:
            reason = str(exc)
        failures += 1
        if failures >= attempts:
            raise FetchError(f"could not download {url} after {attempts} attempts: {reason}")
        delay = backoff_s * 2 ** (failures - 1)
        # The .part is kept on purpose so the next attempt resumes instead of restarting.
        log(f"download attempt {failures}/{attempts} failed ({reason}); retrying in {delay:.2f}s")
        time.sleep(delay)


def _download_once(
    url: str, part: Path, *, timeout_s: float, progress: bool, log: Callable[[str], None]
) -> None:
    """Make one HTTP request and append (or write) its body to ``part``."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "imdb-pipeline-fetch/1"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:
            exc.close()
            raise _RangeNotSatisfiable() from exc
        raise
    with response:
        status = response.status
        if offset > 0 and status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                # Bytes at an unknown offset cannot be appended safely; restart from zero.
                part.unlink(missing_ok=True)
                raise _TransientDownloadError(
                    f"server sent Content-Range {response.headers.get('Content-Range')!r} "
                    f"for a request from byte {offset}"
                )
            mode = "ab"
        elif status == 200:
            if offset > 0:
                log(f"server ignored the Range request; restarting {part.name} from zero")
            mode, offset = "wb", 0
        else:
            raise _TransientDownloadError(f"unexpected HTTP {status} {response.reason}")

        length_header = response.headers.get("Content-Length")
        remaining = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + remaining if remaining is not None else None
        received = 0
        with (
            part.open(mode) as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            # The digest is computed next; make sure what we hash is what survives a crash.
            os.fsync(fh.fileno())
    # http.client returns b"" rather than raising when the peer closes early.
    if remaining is not None and received < remaining:
        raise _TransientDownloadError(
            f"connection closed after {offset + received} of {offset + remaining} bytes"
        )
