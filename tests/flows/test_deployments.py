"""End to end through a real Prefect server: the conventional `prefect deploy --all`, a nightly
that trains and one that skips, a run crashed and resumed automatically, and the same with its
worker dead too; prints both crash -> resume-start latencies.

The dead-worker case comes first: its resume waits for the heartbeat automation's 90 s window,
and the two nightlies run in that window instead of after it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tasks.training.steps import HOLD_FILE_ENV
from tests.imdb_fixtures import build_archive
from tests.prefect_server import ROOT, UUID, local_prefect

pytestmark = pytest.mark.timeout(900)
EPOCHS = 3


def _params(archive: Path, tmp: Path, epochs: int, **extra) -> str:
    config = {
        "source": str(archive),
        "data_dir": str(tmp / "data"),
        "artifacts_dir": str(tmp / "artifacts"),
        "vocab_size": 60,
        "sequence_length": 64,
        "ngram_buckets": 1024,
        "word2vec_epochs": 1,
        "embedding_dim": 8,
        "lstm_units": 8,
        "bidirectional": False,
        "batch_size": 16,
        "epochs": epochs,
        "learning_rate": 0.01,
        "early_stopping": False,
        **extra,
    }
    return json.dumps({"config": config})


def _wait_for(predicate, timeout: float, what: str, logs) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.2)


def _only_run(artifacts: Path) -> Path:
    runs = list((artifacts / "runs").glob("*/run.json")) if (artifacts / "runs").exists() else []
    return runs[0].parent if len(runs) == 1 else Path("/nonexistent")


def test_deploy_run_crash_and_automatic_resume(tmp_path: Path) -> None:
    deploy_run_crash_and_automatic_resume(tmp_path)


def deploy_run_crash_and_automatic_resume(
    tmp_path: Path, database_url: str | None = None, *, flow_kill: bool = True
) -> None:
    """The whole scenario on a server whose database is its own SQLite file, or `database_url`
    (tests/flows/test_deployments_postgres.py runs it on PostgreSQL, without the `flow_kill`
    case: what the database adds is shown by the dead-worker case, the harder one)."""
    small = build_archive(tmp_path / "small.tar.gz", per_folder=40)
    # While this file exists, training holds after each epoch's checkpoint (HOLD_FILE_ENV): the
    # run is killed at a known epoch, on an event, however fast or loaded the machine is.
    hold = tmp_path / "hold-training"
    # The server's scheduler is off: the nightly's 02:00 (Europe/Berlin) schedule would otherwise
    # start a nightly of its own when the test runs at that hour, which cancels the test's.
    env = {HOLD_FILE_ENV: str(hold), "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    with local_prefect(tmp_path / "prefect", env, database_url) as prefect:
        # Given: the pool, the deployments and automations of prefect.yaml, and a worker
        prefect.cli("work-pool", "create", "imdb-process", "--type", "process")
        # deployed the conventional way: `prefect deploy --all` from the project root, no
        # variables set; each deployment's pull step is then this checkout
        assert "IMDB_PIPELINE_ROOT" not in prefect.env
        out = prefect.cli("deploy", "--all")
        assert "imdb-pipeline/nightly" in out and "resume/resume" in out and "score/score" in out
        deployed = prefect.api("/deployments/name/imdb-pipeline/nightly")
        assert deployed["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ], deployed["pull_steps"]
        assert [s["schedule"].get("cron") for s in deployed["schedules"]] == ["0 2 * * *"]
        prefect.cli("automation", "create", "--from-file", "automations/crashed-runs.yaml")
        automations = prefect.api("/automations/filter", {})
        assert "imdb-mark-silent-runs-crashed" in [a["name"] for a in automations]
        prefect.start("worker", "worker", "start", "--pool", "imdb-process")

        def logs() -> str:
            return prefect.log("worker")[-6000:]

        # When: a pipeline run SIGKILLed with its worker while it holds after its first
        # checkpoint (nothing reports the crash until the heartbeat automation does), and a
        # worker started again
        worker_died = _crash(prefect, small, tmp_path / "third", hold, logs, kill_worker=True)

        # And meanwhile, the nightly deployment runs, as its schedule would, on fresh folders
        first = tmp_path / "first"
        nightly = ("deployment", "run", "imdb-pipeline/nightly", "--params")
        watch = ("--watch", "--watch-timeout", "300")
        out = prefect.cli(*nightly, _params(small, first, epochs=2), *watch, timeout=330)
        # Then: it trained, exported and promoted its model, and recorded it in the registry
        run_dir = _only_run(first / "artifacts")
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "completed", out + logs()
        models = first / "artifacts" / "models"
        assert (models / run_dir.name / "sentiment-lstm.h5").exists()
        assert os.readlink(models / "champion") == run_dir.name
        lineage = (models / "registry.jsonl").read_text().splitlines()
        assert [json.loads(line)["event"] for line in lineage] == [
            "candidate",
            "decision",
            "promotion",
        ]

        # When: the nightly runs again with nothing new
        started = time.monotonic()
        out = prefect.cli(*nightly, _params(small, first, epochs=2), *watch, timeout=330)
        skip_seconds = time.monotonic() - started
        # Then: it completed without training: no new run, no new lineage
        assert "Completed" in out, out + logs()
        assert _only_run(first / "artifacts") == run_dir
        assert (models / "registry.jsonl").read_text().splitlines() == lineage
        print(f"skipped nightly through the server: {skip_seconds:.1f} s")

        # Then: the run whose worker died was resumed automatically from its checkpoint to
        # completion
        worker_died.resumed(logs)
        killed = {worker_died.flow_run_id}
        print(f"crash -> resume start: flow and worker killed {worker_died.latency:.1f} s")
        if flow_kill:
            # When / then: a pipeline run whose flow alone is SIGKILLed there is resumed
            # automatically from that checkpoint to completion too
            flow_killed = _crash(prefect, small, tmp_path / "second", hold, logs)
            flow_killed.resumed(logs)
            killed.add(flow_killed.flow_run_id)
            print(f"crash -> resume start: flow killed {flow_killed.latency:.1f} s")
        # And the server recorded the killed runs as crashed, and their resume runs
        crashed = prefect.api(
            "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["CRASHED"]}}}}
        )
        assert killed <= {run["id"] for run in crashed}, crashed

        # A resume run ends in Prefect a moment after it marks its run folder completed (its
        # flow still returns and reports): wait for that state, then count.
        def resumes_completed() -> int:
            runs = prefect.api("/flow_runs/filter", {"flows": {"name": {"any_": ["resume"]}}})
            return sum(run["state_type"] == "COMPLETED" for run in runs)

        _wait_for(lambda: resumes_completed() >= len(killed), 120, "the resume runs", logs)


@dataclass
class _Crashed:
    """A pipeline run killed after its first checkpoint: what the automatic resume must do."""

    run_dir: Path
    flow_run_id: str
    artifacts: Path
    killed: float
    resume_seen: list[float] = field(default_factory=list)
    watcher: threading.Thread | None = None

    @property
    def latency(self) -> float:
        """Seconds from the kill to the resume's start (its record in run.json)."""
        return self.resume_seen[0] - self.killed

    def watch(self) -> None:
        """Notes the moment the resume starts, in the background (while other steps run)."""

        def poll() -> None:
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline:
                if json.loads((self.run_dir / "run.json").read_text()).get("resumes"):
                    self.resume_seen.append(time.monotonic())
                    return
                time.sleep(0.2)

        self.watcher = threading.Thread(target=poll, daemon=True)
        self.watcher.start()

    def resumed(self, logs) -> None:
        """Wait for the automatic resume to complete the run from epoch 1; check it did."""
        assert self.watcher is not None
        self.watcher.join()
        if not self.resume_seen:
            raise AssertionError(f"timed out waiting for the automatic resume to start\n{logs()}")

        def done() -> bool:
            return json.loads((self.run_dir / "run.json").read_text()).get("status") == "completed"

        _wait_for(done, 400, "the automatic resume to complete", logs)
        info = json.loads((self.run_dir / "run.json").read_text())
        assert info["resumes"][0]["from_epoch"] == 1
        assert info["automatic_resumes"] == 1
        assert len(info["flow_run_ids"]) == 2  # the crashed run and the resume run
        history = (self.run_dir / "history.csv").read_text().splitlines()
        assert len(history) == 1 + EPOCHS  # header + every epoch once
        assert (self.artifacts / "models" / self.run_dir.name / "sentiment-lstm.h5").exists()


def _crash(
    prefect, small: Path, folder: Path, hold: Path, logs, kill_worker: bool = False
) -> _Crashed:
    """Run the pipeline deployment, SIGKILL its flow run (and the worker, restarted at once)
    once it holds after epoch 1, and let it go on: what its automatic resume must do."""
    hold.touch()
    out = prefect.cli(
        "deployment", "run", "imdb-pipeline/pipeline",
        "--params", _params(small, folder, epochs=EPOCHS),
    )  # fmt: skip
    crashed_flow_run = UUID.search(out).group(0)
    artifacts = folder / "artifacts"
    _wait_for(
        lambda: any((artifacts / "runs").glob("*/checkpoints/epoch-0001/manifest.json")),
        300, "the first checkpoint", logs,
    )  # fmt: skip
    run_dir = _only_run(artifacts)
    info = json.loads((run_dir / "run.json").read_text())
    assert crashed_flow_run in info["flow_run_ids"]
    if kill_worker:
        worker = prefect.procs.pop()  # the running worker: its process group, then its flow run
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    os.kill(info["pid"], signal.SIGKILL)
    crashed = _Crashed(run_dir, crashed_flow_run, artifacts, killed=time.monotonic())
    crashed.watch()
    _wait_for(lambda: not _alive(info["pid"]), 30, "the flow run process to die", logs)
    if kill_worker:
        prefect.start("worker", "worker", "start", "--pool", "imdb-process")
    assert [p.name for p in (run_dir / "checkpoints").glob("epoch-*")] == ["epoch-0001"]
    hold.unlink()
    return crashed


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie whose new parent has not reaped it yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
