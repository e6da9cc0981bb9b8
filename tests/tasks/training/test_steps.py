"""Tests of the training stage's Prefect task (run inside a tiny flow) and its hold file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tasks.core.run_folder import RunFolder
from tasks.training import checkpoint as ckpt
from tasks.training.steps import HOLD_FILE_ENV, hold_if_requested, train_model
from tests.imdb_fixtures import (
    checkpoint_epochs,
    run_in_flow,
    tiny_config,
    tokenize_small,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_train_model_trains_then_continues_from_the_newest_checkpoint(
    small_archive: Path, tmp_path: Path
) -> None:
    # Given tokenised data, a tiny 1-epoch config and an empty run folder
    data = tokenize_small(small_archive, tmp_path / "processed")
    settings = {"early_stopping": False, "lr_schedule": "constant"}
    run_dir = tmp_path / "art" / "runs" / "run-1"
    run_dir.mkdir(parents=True)

    # When the task trains it
    first = run_in_flow(train_model, tiny_config(tmp_path, epochs=1, **settings), data, run_dir)

    # Then the run has one epoch, its checkpoint and its best model
    assert (first.run_dir, first.epochs_completed, first.stopped_early) == (run_dir, 1, False)
    assert first.best is not None and first.best.epoch == 1
    assert checkpoint_epochs(run_dir / "checkpoints") == [1]

    # When the task runs again for 3 epochs, given the epoch-1 checkpoint by the caller
    latest = ckpt.find_latest_checkpoint(run_dir)
    three = tiny_config(tmp_path, epochs=3, **settings)
    second = run_in_flow(train_model, three, data, run_dir, latest)

    # Then it continued from it: only epochs 2 and 3 were trained in this call
    assert second.epochs_completed == 3
    assert len(second.epoch_seconds) == 2
    assert [int(r["epoch"]) for r in RunFolder(run_dir).read_history()] == [1, 2, 3]

    # When it runs once more without a checkpoint given (as a retry does)
    third = run_in_flow(train_model, three, data, run_dir)

    # Then it finds the newest one itself, and has nothing left to train
    assert third.epochs_completed == 3
    assert third.epoch_seconds == []
    assert third.history == second.history
    assert checkpoint_epochs(run_dir / "checkpoints") == [1, 2, 3]


# --- hold_if_requested -----------------------------------------------------------------------


def test_hold_without_the_variable_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given IMDB_PIPELINE_HOLD_FILE unset
    monkeypatch.delenv(HOLD_FILE_ENV, raising=False)
    said: list[str] = []

    # When / then it returns without holding or saying anything
    hold_if_requested(said.append)
    assert said == []


def test_hold_with_no_file_returns_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the variable set to a file that does not exist
    monkeypatch.setenv(HOLD_FILE_ENV, str(tmp_path / "hold"))
    said: list[str] = []

    # When / then it returns without holding or saying anything
    hold_if_requested(said.append)
    assert said == []


def test_hold_waits_until_the_file_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a hold file that exists, and a thread that deletes it once the hold has begun
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(HOLD_FILE_ENV, str(hold))
    holding = threading.Event()
    said: list[str] = []

    def log(message: str) -> None:
        said.append(message)
        holding.set()

    def release() -> None:
        holding.wait(timeout=30)  # never forever: a hold that never logs fails below
        hold.unlink()

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()

    # When training reaches the hold
    hold_if_requested(log)

    # Then it said it holds, and returned only after the other thread deleted the file
    assert holding.is_set()
    assert said == [f"holding after this epoch's checkpoint while {hold} exists"]
    assert not hold.exists()
    releaser.join(timeout=30)
    assert not releaser.is_alive()
