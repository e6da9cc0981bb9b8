"""Tests of `train`: checkpoints, best model, history, early stopping and exact resume.

The callback and the tracker it updates are tested in test_callback.py and test_tracker.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.core.run_folder import RunFolder
from tasks.data.processed import ProcessedData
from tasks.training import checkpoint as ckpt
from tasks.training import dataset
from tasks.training import tracker as tracker_mod
from tasks.training import train as train_mod
from tests.imdb_fixtures import checkpoint_epochs, tiny_config, tokenize_small


@pytest.fixture(scope="module")
def data(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> ProcessedData:
    """The small archive tokenised once for the module (64 train, 16 validation reviews)."""
    return tokenize_small(small_archive, tmp_path_factory.mktemp("processed"))


def _config(tmp_path: Path, **overrides) -> PipelineConfig:
    return tiny_config(tmp_path, **{"epochs": 3, "early_stopping": False, **overrides})


def _weights(checkpoint: ckpt.Checkpoint) -> list[tuple[str, np.ndarray]]:
    """Each weight of the checkpoint's model (the values of get_weights()), with its path."""
    from tasks.training.layers import load_model

    return [(w.path, np.asarray(w)) for w in load_model(checkpoint.model_path).weights]


def _weight_differences(a: ckpt.Checkpoint, b: ckpt.Checkpoint) -> dict[str, str]:
    """The weights of `b` that are not bit-identical to those of `a`: path -> how they differ
    (max |a - b| for numbers). Empty when the two models are the same."""
    weights_a, weights_b = _weights(a), _weights(b)
    assert [p for p, _ in weights_a] == [p for p, _ in weights_b], "different weights"
    differences = {}
    for (path, wa), (_, wb) in zip(weights_a, weights_b, strict=True):
        if wa.shape != wb.shape:
            differences[path] = f"shape {wa.shape} vs {wb.shape}"
        elif not np.array_equal(wa, wb):
            numeric = np.issubdtype(wa.dtype, np.number)
            diff = np.abs(wa.astype(np.float64) - wb.astype(np.float64)) if numeric else None
            differences[path] = (
                f"max |diff| {diff.max():.3g} in {int((diff > 0).sum())} of {wa.size} values"
                if diff is not None
                else "values differ"
            )
    return differences


def test_train_keeps_checkpoints_best_model_history_and_tensorboard(
    data: ProcessedData, tmp_path: Path
) -> None:
    # Given a config checkpointing every epoch, keeping 2, selecting on val_loss
    config = _config(tmp_path, epochs=4, checkpoint_every=1, keep_checkpoints=2, monitor="val_loss")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    calls: list[tuple[int, int, dict]] = []

    # When it trains
    result = train_mod.train(
        config, data, run_dir, on_epoch=lambda d, t, m: calls.append((d, t, m))
    )

    # Then all epochs ran and exactly the two newest periodic checkpoints remain
    assert result.epochs_completed == 4
    assert not result.stopped_early
    assert checkpoint_epochs(run_dir / "checkpoints") == [3, 4]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch-0003",
        "epoch-0004",
    ]
    # And history.csv has one row per epoch with train and validation metrics
    history = RunFolder(run_dir).read_history()
    assert [int(r["epoch"]) for r in history] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    assert len(result.history) == 4
    # And best/ holds exactly one checkpoint: the epoch with the lowest val_loss
    val_losses = [float(r["val_loss"]) for r in history]
    best_epoch = int(np.argmin(val_losses)) + 1
    assert checkpoint_epochs(run_dir / "best") == [best_epoch]
    assert len(list((run_dir / "best").iterdir())) == 1
    assert result.best_epoch == best_epoch
    assert result.best_value == pytest.approx(min(val_losses))
    best = ckpt.find_best_checkpoint(run_dir)
    assert best is not None
    assert best.manifest["metrics"]["val_loss"] == pytest.approx(min(val_losses))
    # And the manifest records epoch, step, metrics, config, data and file checksums
    latest = ckpt.find_latest_checkpoint(run_dir)
    assert latest is not None
    m = latest.manifest
    assert m["epoch"] == 4
    assert m["global_step"] == 4 * dataset.steps_per_epoch(64, 16)
    assert m["metrics"]["val_loss"] == pytest.approx(val_losses[-1])
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(m["metrics"])
    assert m["config_digest"] == config.digest()
    assert m["data_fingerprint"] == data.fingerprint
    assert m["run_id"] == "run"
    for name in ("model.keras", "state.json"):
        assert m["files"][name]["sha256"] == file_sha256(latest.path / name)
    state = latest.state()
    assert state["epoch"] == 4 and len(state["history"]) == 4
    # And TensorBoard logs were written
    assert (run_dir / "tensorboard").is_dir()
    assert any(p.is_file() for p in (run_dir / "tensorboard").rglob("*"))
    # And the hook was told about every epoch
    assert [(d, t) for d, t, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[-1][2]["val_loss"] == pytest.approx(val_losses[-1])


def test_checkpoint_every_n_epochs_also_saves_the_final_epoch(
    data: ProcessedData, tmp_path: Path
) -> None:
    # Given a config checkpointing every 2nd of 5 epochs
    config = _config(tmp_path, epochs=5, checkpoint_every=2, keep_checkpoints=5)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    # When it trains
    result = train_mod.train(config, data, run_dir)

    # Then checkpoints exist for epochs 2 and 4 and the final epoch 5
    assert result.epochs_completed == 5
    assert checkpoint_epochs(run_dir / "checkpoints") == [2, 4, 5]
    assert len(RunFolder(run_dir).read_history()) == 5


def test_early_stopping_stops_and_a_resume_does_not_train_further(
    data: ProcessedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given patience 0 and a monitor that never improves after the first epoch
    config = _config(tmp_path, epochs=6, early_stopping=True, patience=0, checkpoint_every=3)
    monkeypatch.setattr(tracker_mod, "better", lambda value, best, monitor: best is None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    # When it trains
    result = train_mod.train(config, data, run_dir)

    # Then it stopped after epoch 2, saving that epoch as the final checkpoint
    assert result.stopped_early
    assert result.epochs_completed == 2
    assert result.best_epoch == 1
    assert checkpoint_epochs(run_dir / "checkpoints") == [2]
    assert checkpoint_epochs(run_dir / "best") == [1]
    assert len(RunFolder(run_dir).read_history()) == 2
    latest = ckpt.find_latest_checkpoint(run_dir)
    assert latest is not None and latest.state()["stopped_early"] is True

    # When the stopped run is resumed
    again = train_mod.train(config, data, run_dir, resume=latest)

    # Then nothing more is trained
    assert again.stopped_early
    assert again.epochs_completed == 2
    assert checkpoint_epochs(run_dir / "checkpoints") == [2]
    assert len(again.history) == 2


def test_resume_is_exact(data: ProcessedData, tmp_path: Path) -> None:
    # Given a config with dropout on the embeddings and before the output; a constant learning
    # rate, because run B first trains with epochs=2 and a cosine schedule spans all epochs
    settings = dict(dropout=0.3, embedding_dropout=0.2, keep_checkpoints=10, lr_schedule="constant")

    # When run A trains 4 epochs without interruption
    run_a = tmp_path / "a"
    run_a.mkdir()
    result_a = train_mod.train(_config(tmp_path, epochs=4, **settings), data, run_a)

    # And run B trains 2 epochs, then is resumed from its latest checkpoint up to 4
    run_b = tmp_path / "b"
    run_b.mkdir()
    first = train_mod.train(_config(tmp_path, epochs=2, **settings), data, run_b)
    latest = ckpt.find_latest_checkpoint(run_b)
    assert first.epochs_completed == 2
    assert latest is not None and latest.epoch == 2
    result_b = train_mod.train(_config(tmp_path, epochs=4, **settings), data, run_b, resume=latest)

    # Then run B has a complete 4-epoch history and checkpoints up to 4
    assert result_b.epochs_completed == 4
    history_b = RunFolder(run_b).read_history()
    assert [int(r["epoch"]) for r in history_b] == [1, 2, 3, 4]
    assert checkpoint_epochs(run_b / "checkpoints") == [1, 2, 3, 4]
    final_b = ckpt.find_latest_checkpoint(run_b)
    assert final_b is not None and final_b.epoch == 4
    assert final_b.manifest["global_step"] == 4 * dataset.steps_per_epoch(64, 16)

    # And every checkpoint's weights are exactly those of the uninterrupted run: epochs 1-2
    # (before the resume: two fresh runs of one config start and train alike), then 3-4 (the
    # resumed epochs)
    final_a = ckpt.find_latest_checkpoint(run_a)
    assert final_a is not None and final_a.epoch == 4
    checkpoints_a = ckpt.list_checkpoints(run_a / "checkpoints")
    checkpoints_b = ckpt.list_checkpoints(run_b / "checkpoints")
    assert [c.epoch for c in checkpoints_a] == [c.epoch for c in checkpoints_b] == [1, 2, 3, 4]
    for a, b in zip(checkpoints_a, checkpoints_b, strict=True):
        stage = "before the resume" if a.epoch <= 2 else "after resuming from epoch 2"
        differences = _weight_differences(a, b)
        assert differences == {}, f"epoch {a.epoch} ({stage}): run B's weights differ from A's"
    # And so are the metrics of every epoch and the dropout generators' states
    assert history_b == RunFolder(run_a).read_history()
    assert result_b.history == result_a.history
    assert final_b.state()["seed_generators"] == final_a.state()["seed_generators"]
