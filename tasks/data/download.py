"""Streaming HTTP download into a `.part` file: Range resume, retries with exponential backoff."""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

_CHUNK = 1 << 20  # 1 MiB: big enough to be fast, small enough to keep memory flat
_TRANSIENT_HTTP = frozenset({408, 429, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511})
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class FetchError(RuntimeError):
    """Fetching or verifying the archive failed; the message says why."""


class _TransientDownloadError(Exception):
    """A download attempt failed in a way that a retry (with resume) may fix."""


class _RangeNotSatisfiable(Exception):
    """The server rejected our resume offset (HTTP 416)."""


def download(
    url: str,
    part: Path,
    *,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Stream `url` into `part`, retrying transient failures and resuming with Range."""
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
