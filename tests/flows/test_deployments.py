"""End to end through a real Prefect server: the conventional `prefect deploy --all`, a nightly
that trains and one that skips, a run crashed and resumed automatically, and the same with its
worker dead too; prints both crash -> resume-start latencies."""

from __future__ import annotations

import json
import os
import signal
import time
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


def deploy_run_crash_and_automatic_resume(tmp_path: Path, database_url: str | None = None) -> None:
    """The whole scenario on a server whose database is its own SQLite file, or `database_url`
    (tests/flows/test_deployments_postgres.py runs it on PostgreSQL)."""
    small = build_archive(tmp_path / "small.tar.gz", per_folder=40)
    # While this file exists, training holds after each epoch's checkpoint (HOLD_FILE_ENV): the
    # run is killed at a known epoch, on an event, however fast or loaded the machine is.
    hold = tmp_path / "hold-training"
    with local_prefect(tmp_path / "prefect", {HOLD_FILE_ENV: str(hold)}, database_url) as prefect:
        # Given: the pool, the deployments and automations of prefect.yaml, and a worker
        prefect.cli("work-pool", "create", "imdb-process", "--type", "process")
        # deployed the conventional way: `prefect deploy --all` from the project root, no
        # variables set; each deployment's pull step is then this checkout
        assert "IMDB_PIPELINE_ROOT" not in prefect.env
        out = prefect.cli("deploy", "--all")
        assert "imdb-pipeline/nightly" in out and "resume/resume" in out and "score/score" in out
        inspected = prefect.cli("deployment", "inspect", "imdb-pipeline/nightly")
        assert "set_working_directory" in inspected and str(ROOT) in inspected, inspected
        prefect.cli("automation", "create", "--from-file", "automations/crashed-runs.yaml")
        automations = prefect.cli("automation", "ls")
        assert "imdb-mark-silent-runs-crashed" in automations
        prefect.start("worker", "worker", "start", "--pool", "imdb-process")

        def logs() -> str:
            return prefect.log("worker")[-6000:]

        # When: the nightly deployment runs, as its schedule would, on fresh folders
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

        # When / then: a pipeline run SIGKILLed while it holds after its first checkpoint is
        # resumed automatically from that checkpoint to completion
        flow_killed = _crash_and_resume(prefect, small, tmp_path / "second", hold, logs)
        # When / then: the same with its worker SIGKILLed too (nothing reports the crash until
        # the heartbeat automation does) and a worker started again
        worker_died = _crash_and_resume(prefect, small, tmp_path / "third", hold, logs, True)
        print(
            f"crash -> resume start: flow killed {flow_killed:.1f} s; "
            f"flow and worker killed {worker_died:.1f} s"
        )
        states = prefect.cli("flow-run", "ls", "--limit", "20").upper()
        assert "CRASHED" in states and "RESUME" in states, states


def _crash_and_resume(
    prefect, small: Path, folder: Path, hold: Path, logs, kill_worker: bool = False
) -> float:
    """Run the pipeline deployment, SIGKILL its flow run (and the worker, restarted at once)
    once it holds after epoch 1, wait for the automatic resume to complete it; the seconds
    from the kill to the resume's start (its record in run.json)."""
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
    killed = time.monotonic()
    _wait_for(lambda: not _alive(info["pid"]), 30, "the flow run process to die", logs)
    if kill_worker:
        prefect.start("worker", "worker", "start", "--pool", "imdb-process")
    assert [p.name for p in (run_dir / "checkpoints").glob("epoch-*")] == ["epoch-0001"]
    hold.unlink()

    def resumed() -> bool:
        return bool(json.loads((run_dir / "run.json").read_text()).get("resumes"))

    _wait_for(resumed, 400, "the automatic resume to start", logs)
    latency = time.monotonic() - killed

    def done() -> bool:
        return json.loads((run_dir / "run.json").read_text()).get("status") == "completed"

    _wait_for(done, 400, "the automatic resume to complete", logs)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resumes"][0]["from_epoch"] == 1
    assert info["automatic_resumes"] == 1
    assert len(info["flow_run_ids"]) == 2  # the crashed run and the resume run
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 1 + EPOCHS  # header + every epoch once
    assert (artifacts / "models" / run_dir.name / "sentiment-lstm.h5").exists()
    return latency


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie whose new parent has not reaped it yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
