"""Fetch and verify the IMDB review archive (pure logic, no Prefect)."""

import json
import logging
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tasks.config import normalise_sha256
from tasks.core.atomic import atomic_write_text, file_sha256, fsync_dir
from tasks.data.archive import ArchiveError, check_gzip_tar
from tasks.data.download import FetchError, download

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedArchive:
    """A verified archive on disk and where it came from."""

    path: Path
    sha256: str
    size: int
    source: str
    downloaded: bool


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


def cached(
    source: str,
    raw_dir: Path,
    sha256: str | None = None,
    *,
    log: Callable[[str], None] = _LOGGER.info,
) -> FetchedArchive | None:
    """The archive `fetch` would return without downloading anything or making any request: a
    local file (path or file:// URL) that verifies, or a verified copy of a URL's file in
    `raw_dir`. None when `fetch` would have to download it, or would fail (it says why)."""
    parsed = urllib.parse.urlparse(source)
    try:
        if parsed.scheme.lower() not in ("http", "https"):
            return fetch(source, raw_dir, sha256, log=log)  # verified in place, never copied
        expected = _normalise_sha256(sha256)
        name = PurePosixPath(urllib.parse.unquote(parsed.path)).name
        if not name:
            return None
        dest = Path(raw_dir) / name
        hit = _reuse_cached(dest, source, expected, lambda _: None)  # fetch says why not
    except (FetchError, OSError):
        return None
    return None if hit is None else _reused(dest, source, hit, expected is None, log)


def _reused(
    dest: Path, url: str, hit: tuple[str, int], computed: bool, log: Callable[[str], None]
) -> FetchedArchive:
    digest, size = hit
    log(f"reusing verified {dest} (sha256 {digest})")
    if computed:
        _log_computed(log, digest, dest)
    return FetchedArchive(path=dest, sha256=digest, size=size, source=url, downloaded=False)


def _normalise_sha256(sha256: str | None) -> str | None:
    """The expected digest in lower case (FetchError if it is not a sha256 digest)."""
    try:
        return None if sha256 is None else normalise_sha256(sha256)
    except ValueError as exc:
        raise FetchError(str(exc)) from exc


def _check_format(path: Path) -> None:
    """FetchError unless `path` is a gzip-compressed tar archive."""
    try:
        check_gzip_tar(path)
    except ArchiveError as exc:
        raise FetchError(str(exc)) from exc


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
    _check_format(path)
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
        _check_format(dest)
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

    hit = _reuse_cached(dest, url, expected, log)
    if hit is not None:
        return _reused(dest, url, hit, expected is None, log)

    download(
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
        _check_format(part)
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
