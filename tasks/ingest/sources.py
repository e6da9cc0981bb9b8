"""Fetch labelled-review files from their sources into the incoming folder.

A source is an http(s):// URL, a file:// URL or a path, optionally followed by
`#sha256=<64 hex digits>`. The file lands as `incoming/<its base name>`: written to a `.part`
file first (downloaded with resume and retries, or copied), checked against the checksum when
one is given, then renamed into place, so the ingest never sees half a file.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tasks.config import normalise_sha256
from tasks.core.atomic import file_sha256, fsync_dir
from tasks.data.download import FetchError, download

_FRAGMENT = "sha256="


@dataclass(frozen=True)
class Source:
    """A parsed source: where it is, the name it is saved under, its expected checksum."""

    location: str  # as given, without the checksum
    url: str | None  # http(s) URL, else None
    local: Path | None  # local file, else None
    name: str
    sha256: str | None


def parse_source(source: str) -> Source:
    """The source's location, file name and expected sha256; FetchError if it is not one."""
    base, hashed, fragment = source.strip().partition("#")
    if not base:
        raise FetchError(f"source {source!r} names no location")
    expected = None
    if hashed:
        if not fragment.lower().startswith(_FRAGMENT):
            raise FetchError(f"source {source!r}: expected '#sha256=<hex>' after the location")
        try:
            expected = normalise_sha256(fragment[len(_FRAGMENT) :])
        except ValueError as exc:
            raise FetchError(f"source {source!r}: {exc}") from exc
    parsed = urllib.parse.urlparse(base)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        name = PurePosixPath(urllib.parse.unquote(parsed.path)).name
        if not name:
            raise FetchError(f"source URL has no file name to save it under: {source}")
        return Source(base, base, None, name, expected)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise FetchError(f"file:// URL with a remote host is not supported: {source}")
        local = Path(urllib.request.url2pathname(parsed.path))
    elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a Windows drive letter
        local = Path(base).expanduser()
    else:
        raise FetchError(
            f"unsupported source scheme {parsed.scheme!r} in {source!r}: "
            "use an http(s):// URL, a file:// URL or a local path"
        )
    return Source(base, None, Path(os.path.abspath(local)), local.name, expected)


def fetch_incoming(
    sources: Sequence[str],
    incoming: Path,
    *,
    log: Callable[[str], None],
    retries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    on_error: Callable[[FetchError], None] | None = None,
) -> list[Path]:
    """Fetch each source into `incoming` (see the module docstring); the paths, in order.
    With `on_error`, a source that fails is handed to it and skipped (the others are still
    fetched); without, the first failure is raised.

    A file already there under the source's name with the given checksum is not fetched again
    (without a checksum it is fetched again and replaced). FetchError names a source that is
    missing, unsupported, unreachable or whose content does not match its checksum; nothing of
    that source is left in `incoming`.
    """
    parsed = [parse_source(s) for s in sources]
    names: dict[str, str] = {}
    for s in parsed:
        if s.name in names:
            raise FetchError(
                f"sources {names[s.name]!r} and {s.location!r} would both be saved as {s.name}"
            )
        names[s.name] = s.location
    if parsed:
        incoming.mkdir(parents=True, exist_ok=True)
    fetched = []
    for s in parsed:
        try:
            fetched.append(
                _fetch_one(
                    s, incoming, log=log, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s
                )
            )
        except FetchError as exc:
            if on_error is None:
                raise
            on_error(exc)
    return fetched


def _fetch_one(
    source: Source,
    incoming: Path,
    *,
    log: Callable[[str], None],
    retries: int,
    backoff_s: float,
    timeout_s: float,
) -> Path:
    dest = incoming / source.name
    if source.sha256 is not None and dest.is_file() and file_sha256(dest) == source.sha256:
        log(f"{dest} is already there (sha256 {source.sha256[:12]}…); not fetched again")
        return dest
    part = dest.with_name(dest.name + ".part")
    if source.url is not None:
        download(
            source.url,
            part,
            retries=max(0, retries),
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            progress=False,
            log=log,
        )
    else:
        local = source.local
        assert local is not None
        if not local.exists():
            raise FetchError(f"incoming source not found: {local} (from {source.location!r})")
        if not local.is_file():
            raise FetchError(f"incoming source is not a regular file: {local}")
        try:
            shutil.copyfile(local, part)
            with part.open("rb") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    actual = file_sha256(part)
    if source.sha256 is not None and actual != source.sha256:
        part.unlink(missing_ok=True)  # a wrong body must not be resumed next time
        raise FetchError(
            f"checksum mismatch for {source.location}: "
            f"expected sha256 {source.sha256}, got {actual}"
        )
    os.replace(part, dest)
    fsync_dir(incoming)
    log(f"fetched {source.location} to {dest} ({dest.stat().st_size:,} bytes, sha256 {actual})")
    return dest
