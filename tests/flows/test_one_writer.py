"""One writer per run folder, end to end: a live `imdb-pipeline train` process and resumes of
its run (manual, automatic, after a SIGKILL), and two trainings of one run id at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tasks.core.runs as runs_module
from flows.resume import resume
from tasks.core.run_folder import RunError, RunFolder
from tasks.training.steps import HOLD_FILE_ENV
from tests.imdb_fixtures import train_argv

pytestmark = pytest.mark.usefixtures("prefect_server")
ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("imdb-pipeline"))
EPOCHS = 3


def start_training(archive: Path, root: Path, run_id: str, hold: Path | None) -> subprocess.Popen:
    """`imdb-pipeline train --run-id RUN_ID` in its own process, on this session's Prefect
    server; while `hold` exists it holds after each epoch's checkpoint."""
    from prefect.settings import PREFECT_API_URL

    argv = [CLI, *train_argv(archive, root), "--run-id", run_id, "--epochs", str(EPOCHS)]
    argv += ["--no-early-stopping"]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    if hold is not None:
        env[HOLD_FILE_ENV] = str(hold)
    with (root / f"{run_id}.{time.monotonic_ns()}.log").open("w") as log:  # open in the child
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until `path` exists (the event), failing early if `proc` ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the training process ended with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.fixture
def live(small_archive: Path, tmp_path: Path):
    """A run "live" held by its training process after its epoch-1 checkpoint."""
    hold = tmp_path / "hold"
    hold.touch()
    proc = start_training(small_archive, tmp_path, "live", hold)
    run_dir = tmp_path / "art" / "runs" / "live"
    wait_for(run_dir / "checkpoints" / "epoch-0001" / "manifest.json", proc)
    yield run_dir, proc, hold
    hold.unlink(missing_ok=True)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_resumes_of_a_live_run_leave_it_to_its_writer_and_a_killed_one_is_taken_over(
    live, caplog: pytest.LogCaptureFixture
) -> None:
    # (one test, one live training process: each such process imports TensorFlow and trains)
    run_dir, proc, _ = live
    art = run_dir.parent.parent
    # When an automatic resume may wait only a moment for the live writer
    summary = resume(run_id="live", artifacts_dir=art, automatic=True, wait_for_writer_s=0.5)
    # Then it leaves the run to its writer, untouched
    assert summary["status"] == "running elsewhere"
    assert proc.poll() is None and RunFolder(run_dir).read_info()["resumes"] == []
    assert RunFolder(run_dir).read_info()["automatic_resumes"] == 0

    # When the run is resumed by hand while its process trains it
    with pytest.raises(RunError, match=f"pid {proc.pid} ") as refused:
        resume(run_id="live", artifacts_dir=art)
    # Then nothing was written: the refusal names the process that holds the run
    assert "not resuming it" in str(refused.value)
    assert RunFolder(run_dir).read_info()["resumes"] == []
    assert RunFolder(run_dir).read_info()["status"] == "running"

    # When that process is SIGKILLed (its lock file and writer.json stay behind)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    summary = resume(run_id="live", artifacts_dir=art)

    # Then the resume takes the run over at once and finishes it from the checkpoint
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_completed"] == EPOCHS
    assert f"pid {proc.pid}" in caplog.text and "no longer holds it" in caplog.text
    assert [r["epoch"] for r in RunFolder(run_dir).read_history()] == ["1", "2", "3"]


def test_an_automatic_resume_of_a_live_run_waits_and_leaves_a_finished_run_alone(
    live, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, proc, hold = live
    real_acquire = runs_module.acquire_run

    def acquire(run_dir, flow_run_id=None, *, wait_s=0.0, poll_s=0.5, on_wait=None):
        def waiting(holder) -> None:  # the event: the resume is blocked; let the run go on
            on_wait(holder)
            hold.unlink()

        return real_acquire(run_dir, flow_run_id, wait_s=wait_s, poll_s=0.1, on_wait=waiting)

    monkeypatch.setattr(runs_module, "acquire_run", acquire)  # take_over's lock

    # When an automatic resume (a false "Crashed") starts while the process still trains
    summary = resume(run_id="live", artifacts_dir=run_dir.parent.parent, automatic=True)

    # Then it waited for the writer, which finished the run, and did nothing itself
    assert proc.wait(timeout=300) == 0
    assert summary["status"] == "completed"
    info = RunFolder(run_dir).read_info()
    assert info["status"] == "completed" and info["resumes"] == []
    assert info["automatic_resumes"] == 0
    assert [r["epoch"] for r in RunFolder(run_dir).read_history()] == ["1", "2", "3"]


def test_two_trainings_of_one_run_id_at_once_exactly_one_trains(
    small_archive: Path, tmp_path: Path
) -> None:
    # When two `imdb-pipeline train --run-id same` start together
    procs = [start_training(small_archive, tmp_path, "same", None) for _ in range(2)]
    codes = sorted(p.wait(timeout=600) for p in procs)

    # Then exactly one trained and the other was refused, naming the folder
    assert codes == [0, 1]
    logs = [p.read_text() for p in sorted(tmp_path.glob("same.*.log"))]
    assert sum("already exists; runs never share one" in log for log in logs) == 1
    run_dir = tmp_path / "art" / "runs" / "same"
    assert RunFolder(run_dir).read_info()["status"] == "completed"
    assert [r["epoch"] for r in RunFolder(run_dir).read_history()] == ["1", "2", "3"]
