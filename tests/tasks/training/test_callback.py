"""Tests of the Keras callback that checkpoints each epoch, tracks the best one and stops early."""

from __future__ import annotations

from pathlib import Path

from tasks.core.run_folder import RunFolder
from tasks.training.tracker import Tracker
from tests.imdb_fixtures import checkpoint_epochs, tiny_config


def test_epoch_end_tracks_patience_and_best_with_fake_logs(tmp_path: Path) -> None:
    from tasks.training.callback import CheckpointCallback
    from tasks.training.model import build_model

    # Given the callback state of a fresh run with patience 1 on val_accuracy
    config = tiny_config(tmp_path, epochs=10, early_stopping=True, patience=1, checkpoint_every=5)
    model = build_model(config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cb = CheckpointCallback(config, run_dir, "f" * 16, Tracker())
    cb.set_model(model)
    model.stop_training = False

    def epoch_end(epoch: int, val_accuracy: float) -> dict:
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"loss": 0.5, "val_accuracy": val_accuracy})
        return cb.tracker.to_state()

    # When validation accuracy improves, stalls once, improves, then stalls twice
    t1 = epoch_end(0, 0.6)
    t2 = epoch_end(1, 0.6)
    t3 = epoch_end(2, 0.7)
    t4 = epoch_end(3, 0.65)
    assert not model.stop_training
    t5 = epoch_end(4, 0.7)

    # Then the tracker counts epochs without improvement and stops after patience is used up
    assert (t1["best_epoch"], t1["wait"], t1["stopped_early"]) == (1, 0, False)
    assert (t2["best_epoch"], t2["wait"], t2["stopped_early"]) == (1, 1, False)
    assert (t3["best_epoch"], t3["wait"], t3["best_value"]) == (3, 0, 0.7)
    assert (t4["wait"], t4["stopped_early"]) == (1, False)
    assert (t5["best_epoch"], t5["wait"], t5["stopped_early"]) == (3, 2, True)
    assert model.stop_training
    # And the best model and the final (stopping) epoch were checkpointed
    assert checkpoint_epochs(run_dir / "best") == [3]
    assert checkpoint_epochs(run_dir / "checkpoints") == [5]
    assert [int(r["epoch"]) for r in RunFolder(run_dir).read_history()] == [1, 2, 3, 4, 5]
