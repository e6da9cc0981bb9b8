"""One writer per run folder: an exclusive lock held by the process that trains the run.

The lock is `fcntl.flock` on `<run>/.writer.lock`, taken when a run is created or resumed and
held until the run is finished (or the process ends). The kernel drops it when its process dies
for any reason, SIGKILL included, so a lock is never "stale": a run whose writer is dead is free
to resume at once. `<run>/writer.json` names the holder (pid, host, flow run, since) for the
messages of those who find it taken; it is only information, the lock is the flock.

Where it holds: on one machine always. On NFSv4 Linux maps flock to byte-range locks that the
server arbitrates across hosts, and the server releases the locks of a client that stopped
renewing its lease (a machine gone) after the lease time (90 s by default). NFSv3 without lockd,
SMB mounts with `nobrl`, and object stores (S3, GCS: no locks at all) give no such guarantee:
there, run one orchestrated writer per run (the nightly's `concurrency_limit`) or keep run
folders on a local or NFSv4 disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.atomic import atomic_write_text
from tasks.core.run_folder import RunFolder

_held: dict[Path, int] = {}  # run folder -> descriptor holding its lock, in this process


class RunLocked(RuntimeError):
    """Another live process writes this run; the message names it."""

    def __init__(self, run_dir: Path, holder: Holder | None) -> None:
        self.run_dir = run_dir
        self.holder = holder
        who = holder.describe() if holder else "another process (it did not say which)"
        super().__init__(f"run {run_dir.name} is being written by {who}; one writer per run")


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run's lock."""

    pid: int
    host: str
    flow_run_id: str | None
    since: str

    def describe(self) -> str:
        flow = f", flow run {self.flow_run_id}" if self.flow_run_id else ""
        return f"pid {self.pid} on {self.host}{flow} (since {self.since})"


def read_holder(run_dir: Path) -> Holder | None:
    """The last holder `writer.json` names, if any (it may have died since)."""
    try:
        return Holder(**json.loads(RunFolder(run_dir).writer_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def holds(run_dir: Path) -> bool:
    """Whether this process holds `run_dir`'s lock."""
    return run_dir.resolve() in _held


def acquire_run(
    run_dir: Path,
    flow_run_id: str | None = None,
    *,
    wait_s: float = 0.0,
    poll_s: float = 0.5,
    on_wait: Callable[[Holder | None], None] | None = None,
) -> Holder | None:
    """Take `run_dir`'s lock for this process, waiting up to `wait_s` for a live holder to let
    go (`on_wait` is told once who it waits for). Returns the previous holder named in
    `writer.json` (a dead one whose lock the kernel already dropped, when taking over), or None.
    RunLocked if the holder still lives after `wait_s`. Taking it again in the holding process
    is a no-op."""
    key = run_dir.resolve()
    if key in _held:
        return None
    fd = os.open(RunFolder(key).writer_lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLocked(run_dir, read_holder(key)) from None
                if on_wait is not None and not told:
                    on_wait(read_holder(key))
                    told = True
                time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    except BaseException:
        os.close(fd)
        raise
    previous = read_holder(key)
    me = Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        flow_run_id=flow_run_id,
        since=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    atomic_write_text(RunFolder(key).writer_file, json.dumps(asdict(me), indent=2))
    _held[key] = fd
    return previous


def release_run(run_dir: Path) -> None:
    """Release this process's hold on `run_dir` (no-op if it holds none)."""
    fd = _held.pop(run_dir.resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor drops the flock


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an flock on `lock_file` (created if missing) for the block, waiting for any other
    holder: one at a time, and the kernel drops it if the holding process dies."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
