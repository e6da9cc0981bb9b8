"""One writer per run folder: tests of tasks.core.lock with real processes holding the lock."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.lock import RunLocked, acquire_run, holds, read_holder, release_run
from tasks.core.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[3]
HOLD = """
import sys
from pathlib import Path
from tasks.core.lock import acquire_run
acquire_run(Path(sys.argv[1]), "flow-run-of-the-child")
print("holding", flush=True)
sys.stdin.readline()  # hold until the parent says so (or kills us)
"""


@pytest.fixture
def child_holding(tmp_path: Path):
    """A process that holds the lock of tmp_path/run until its stdin gets a line."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            pipe.close()


def test_a_live_holder_is_named_and_keeps_the_run(child_holding) -> None:
    run_dir, proc = child_holding
    # When this process tries to take the run without waiting
    with pytest.raises(RunLocked) as refused:
        acquire_run(run_dir, "mine")
    # Then it is refused, with the holder's pid, host and flow run named
    message = str(refused.value)
    assert f"pid {proc.pid} on {socket.gethostname()}" in message
    assert "flow-run-of-the-child" in message
    assert not holds(run_dir)


def test_a_waiting_writer_gets_the_run_when_the_holder_finishes(child_holding) -> None:
    run_dir, proc = child_holding
    told: list[int | None] = []

    def waiting(holder) -> None:  # the event: we are blocked; let the holder finish now
        told.append(holder.pid if holder else None)
        proc.stdin.write("done\n")
        proc.stdin.flush()

    # When this process waits for the run while its holder finishes
    previous = acquire_run(run_dir, "mine", wait_s=60, poll_s=0.05, on_wait=waiting)
    try:
        # Then it was told once whom it waited for, and now holds the run
        assert told == [proc.pid]
        assert previous is not None and previous.pid == proc.pid
        assert holds(run_dir) and read_holder(run_dir).pid == os.getpid()
        assert proc.wait(timeout=30) == 0
    finally:
        release_run(run_dir)
    assert not holds(run_dir)


def test_a_killed_holders_lock_is_taken_over_at_once(child_holding) -> None:
    run_dir, proc = child_holding
    # Given the holder SIGKILLed: its writer.json still names it
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(run_dir).pid == proc.pid

    # When this process takes the run without waiting
    previous = acquire_run(run_dir, "mine")
    try:
        # Then it gets it (the kernel dropped the dead process's lock) and learns who was there
        assert previous is not None and previous.pid == proc.pid
        holder = json.loads(RunFolder(run_dir).writer_file.read_text())
        assert (holder["pid"], holder["flow_run_id"]) == (os.getpid(), "mine")
    finally:
        release_run(run_dir)


def test_the_holding_process_may_take_it_again(tmp_path: Path) -> None:
    # A Prefect retry of the train task runs in the process that already holds the run
    assert acquire_run(tmp_path, "a") is None
    try:
        assert acquire_run(tmp_path, "a") is None and holds(tmp_path)
    finally:
        release_run(tmp_path)
    release_run(tmp_path)  # releasing what is not held does nothing


def test_taking_over_a_live_run_refuses_a_person_and_leaves_it_to_an_automatic_resume(
    child_holding,
) -> None:
    from tasks.core.run_folder import RunError
    from tasks.core.runs import take_over

    run_dir, _ = child_holding
    said: list[str] = []
    # When a person resumes a run another live process writes, then it is refused, naming it
    with pytest.raises(RunError, match="flow-run-of-the-child.*not resuming it"):
        take_over(run_dir, "mine", False, 0.0, said.append, said.append)
    # When an automatic resume finds it alive past its wait, then it leaves the run be
    assert take_over(run_dir, "mine", True, 0.2, said.append, said.append) is False
    assert any("waiting up to 0 s" in s for s in said)
    assert any("leaving it to that writer" in s for s in said)
    assert not holds(run_dir)


def test_taking_over_a_dead_writers_run_names_the_last_writer(child_holding) -> None:
    from tasks.core.runs import take_over

    run_dir, proc = child_holding
    proc.kill()
    proc.wait()
    said: list[str] = []
    assert take_over(run_dir, "mine", True, 5.0, said.append, said.append) is True
    assert holds(run_dir) and any("no longer holds it" in s for s in said)
    release_run(run_dir)
