"""Behaviour tests for tasks.core.memory.reuse_freed_memory."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from tasks.core.memory import reuse_freed_memory


def test_arrow_pool_is_restored_after_the_block() -> None:
    # Given the process's Arrow memory pool
    before = pa.default_memory_pool().backend_name

    # When work allocates inside the block
    with reuse_freed_memory():
        inside = pa.array(np.arange(1_000_000)).take(pa.array([3, 1]))
        assert inside.to_pylist() == [3, 1]

    # Then the pool is the original one again and data made inside stays valid
    assert pa.default_memory_pool().backend_name == before
    assert inside.to_pylist() == [3, 1]


def test_restored_when_the_block_raises() -> None:
    # Given the process's Arrow memory pool
    before = pa.default_memory_pool().backend_name

    # When the block fails
    with pytest.raises(RuntimeError), reuse_freed_memory():
        raise RuntimeError("boom")

    # Then the settings were still restored
    assert pa.default_memory_pool().backend_name == before


def test_nested_and_concurrent_uses_restore_once_all_have_left() -> None:
    # Given two threads inside the block at the same time, one of them nested
    before = pa.default_memory_pool().backend_name
    entered, release = threading.Barrier(2), threading.Event()

    def worker() -> None:
        with reuse_freed_memory(), reuse_freed_memory():
            entered.wait()
            release.wait()

    thread = threading.Thread(target=worker)
    thread.start()
    with reuse_freed_memory():
        entered.wait()
        # When the other thread leaves while this one is still inside
        release.set()
        thread.join()
        during = pa.default_memory_pool().backend_name

    # Then the settings held until the last one left, then were restored
    assert during == ("jemalloc" if _has_jemalloc() else before)
    assert pa.default_memory_pool().backend_name == before


def _has_jemalloc() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True
