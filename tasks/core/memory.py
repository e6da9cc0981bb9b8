"""Allocator settings for bursts of large, short-lived NumPy and Arrow temporaries.

Tokenising the IMDB archive makes thousands of megabyte-sized temporaries. With the default
settings both allocators hand that memory back to the kernel as soon as it is freed and fault it
in again for the next one: glibc serves every block above 128 KiB with a fresh mmap, and Arrow's
mimalloc pool purges freed pages after 10 ms. On the real archive that cost ~1 s of kernel time,
as much as the tokenising itself. Inside `reuse_freed_memory()` glibc keeps freed blocks in its
heap and Arrow allocates from its jemalloc pool, which keeps freed pages for reuse.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator

import pyarrow as pa

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit systems
_DEFAULT_THRESHOLD = 128 << 10  # glibc's initial value of both settings
_lock = threading.Lock()
_depth = 0
_saved_pool: pa.MemoryPool | None = None


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - AttributeError where the C library is not glibc
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _jemalloc_pool() -> pa.MemoryPool | None:
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # pyarrow built without jemalloc (some platforms)
        return None


_GLIBC = _glibc()


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Keep freed memory for reuse during the block; give it back to the system afterwards.

    Process-wide settings, so nested and concurrent uses share one activation.
    """
    global _depth, _saved_pool
    with _lock:
        _depth += 1
        if _depth == 1:
            if _GLIBC is not None:
                _GLIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                _GLIBC.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            pool = _jemalloc_pool()
            if pool is not None:
                _saved_pool = pa.default_memory_pool()
                pa.set_memory_pool(pool)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if _saved_pool is not None:
                    pa.set_memory_pool(_saved_pool)
                    _saved_pool = None
                if _GLIBC is not None:
                    _GLIBC.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
                    _GLIBC.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
                    _GLIBC.malloc_trim(0)
