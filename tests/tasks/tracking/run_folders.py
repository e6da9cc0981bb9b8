"""Run folders as training leaves them, written by hand (no training), for the sync tests."""

from __future__ import annotations

from pathlib import Path

from tasks.core.run_folder import RunFolder
from tests.imdb_fixtures import tiny_config


def make_run(artifacts: Path, run_id: str, epochs: int) -> Path:
    """A run folder as training leaves it after `epochs` epochs (run.json + history.csv)."""
    config = tiny_config(artifacts.parent, artifacts_dir=artifacts)
    run_dir = artifacts / "runs" / run_id
    run_dir.mkdir(parents=True)
    RunFolder(run_dir).write_info(
        {
            "run_id": run_id,
            "status": "running",
            "config": config.model_dump(mode="json"),
            "config_digest": config.digest(),
            "data_fingerprint": "f" * 16,
            "flow_run_ids": ["flow-1"],
            "created_at": "2026-11-26T00:00:00+00:00",
        },
    )
    write_history(run_dir, epochs)
    return run_dir


def history_row(epoch: int) -> dict[str, float]:
    return {"epoch": epoch, "loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 100}


def write_history(run_dir: Path, epochs: int) -> None:
    RunFolder(run_dir).write_history([history_row(e) for e in range(1, epochs + 1)])
