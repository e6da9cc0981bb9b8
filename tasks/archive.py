"""Streaming reader for gzip-compressed tar archives.

`tarfile` spends most of its time building TarInfo objects for the 100k members of the IMDB
archive; this reader parses the 512-byte headers directly from a zlib stream, so only the
members the caller wants are copied and nothing is ever extracted to disk.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

_BLOCK = 512
_READ_SIZE = 1 << 20
_REGULAR = (b"0", b"\0", b"7")


class ArchiveError(ValueError):
    """The archive is not a readable gzip tar (truncated, corrupt or of another format)."""


class _Stream:
    """Decompressed bytes of a gzip file, read forward on demand.

    A background thread inflates the file (zlib releases the GIL) while the caller parses
    headers, so decompression and parsing overlap on two cores.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        self.path = path
        self._thread = threading.Thread(target=self._inflate, name="gunzip", daemon=True)
        self._thread.start()

    def _inflate(self) -> None:
        inflater = zlib.decompressobj(wbits=31)  # 31: expect a gzip header and trailer
        try:
            first = True
            while not inflater.eof:
                chunk = self._file.read(_READ_SIZE)
                if not chunk:
                    raise ArchiveError(
                        f"{self.path}: archive is truncated (gzip stream ends early)"
                    )
                if first and not chunk.startswith(b"\x1f\x8b"):
                    raise ArchiveError(f"{self.path}: is not a gzip-compressed file")
                first = False
                try:
                    data = inflater.decompress(chunk)
                except zlib.error as exc:
                    raise ArchiveError(f"{self.path}: archive is corrupt ({exc})") from exc
                if data and not self._put(data):
                    return
            self._put(None)
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._file.close()

    def _fill(self, n: int) -> bool:
        """Make at least `n` bytes available; False if the stream ends first."""
        while len(self._buf) - self._pos < n:
            if self._eof:
                return False
            item = self._chunks.get()
            if item is None:
                self._eof = True
                return False
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if self._pos > _READ_SIZE * 4:  # drop consumed bytes so memory stays bounded
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += item
        return True

    def read(self, n: int) -> bytes | None:
        if not self._fill(n):
            return None
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def drain(self) -> None:
        """Read to the end so the gzip trailer's CRC and length are checked."""
        while not self._eof:
            self._pos = len(self._buf)
            self._fill(1)

    def skip(self, n: int) -> bool:
        if not self._fill(n):
            return False
        self._pos += n
        return True


def _field(header: bytes, start: int, end: int) -> bytes:
    return header[start:end].split(b"\0", 1)[0]


def _size(header: bytes) -> int:
    raw = header[124:136]
    if raw[0] & 0x80:  # GNU base-256 encoding for sizes >= 8 GiB
        return int.from_bytes(raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header, if any."""
    pos = 0
    found = None
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= space - pos:
            raise ValueError(f"bad pax record length {length}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            found = value.decode("utf-8", "surrogateescape")
        pos += length
    return found


def iter_members(path: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yield (name, content) of the regular files in a .tar.gz whose name `want` accepts."""
    stream = _Stream(path)
    try:
        first = True
        long_name: str | None = None
        while True:
            header = stream.read(_BLOCK)
            if header is None:
                if first:
                    raise ArchiveError(f"{path}: is not a tar archive")
                raise ArchiveError(f"{path}: archive is truncated (no end-of-archive marker)")
            if header.count(0) == _BLOCK:  # end-of-archive marker
                stream.drain()
                return
            if header[257:262] != b"ustar":
                where = "is not a tar archive" if first else "has a damaged tar header"
                raise ArchiveError(f"{path}: {where}")
            first = False
            try:
                size = _size(header)
            except ValueError as exc:
                raise ArchiveError(f"{path}: has a damaged tar header") from exc
            padded = (size + _BLOCK - 1) // _BLOCK * _BLOCK
            kind = header[156:157]
            if kind in (b"L", b"x"):  # GNU long name / pax header: names the next member
                data = stream.read(padded)
                if data is None:
                    raise ArchiveError(f"{path}: archive is truncated")
                data = data[:size]
                try:
                    long_name = (
                        data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                        if kind == b"L"
                        else _pax_path(data) or long_name
                    )
                except ValueError as exc:
                    raise ArchiveError(f"{path}: has a damaged pax header") from exc
                continue
            name = long_name
            long_name = None
            if name is None:
                prefix = _field(header, 345, 500)
                raw = _field(header, 0, 100)
                name = (prefix + b"/" + raw if prefix else raw).decode("utf-8", "surrogateescape")
            if kind in _REGULAR and want(name):
                data = stream.read(padded)
                if data is None:
                    raise ArchiveError(f"{path}: archive is truncated inside {name}")
                yield name, data[:size]
            elif not stream.skip(padded):
                raise ArchiveError(f"{path}: archive is truncated inside {name}")
    finally:
        stream.close()
