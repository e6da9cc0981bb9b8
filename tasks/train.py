"""train_model: fit the LSTM with atomic checkpoints, resumable at any epoch boundary."""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks import checkpoint as ckpt
from tasks.atomic import atomic_write_text
from tasks.config import PipelineConfig
from tasks.tokenize import ProcessedData

log = logging.getLogger(__name__)
EVAL_BATCH = 256

EpochHook = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainResult:
    """Where a training run stands after `train` returns."""

    run_dir: Path
    epochs_completed: int
    stopped_early: bool
    best_epoch: int | None
    best_value: float | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    # Measured in this process only (a resumed run reports its own epochs).
    epoch_seconds: list[float] = field(default_factory=list)  # incl. validation + checkpoints
    checkpoint_seconds: list[float] = field(default_factory=list)  # checkpoint writes per epoch
    first_step_at: float | None = None  # unix time of the first training step


def setup_determinism(config: PipelineConfig) -> None:
    """Seed Python, NumPy and TF; with `deterministic`, also force deterministic TF ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


class CheckpointCallback:  # built lazily as a keras.callbacks.Callback subclass, see make()
    """Saves full checkpoints, the best model and history; runs early stopping; resumable."""

    @staticmethod
    def make(**kwargs: Any):
        import keras

        class _Callback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.__dict__.update(kwargs)

            def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
                if self.first_step_at is None:  # how long start-up (and resume) took
                    self.first_step_at = time.time()

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.epoch_started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                _on_epoch_end(self, epoch, dict(logs or {}))

        return _Callback()


def _better(value: float, best: float | None, monitor: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if monitor.endswith("accuracy") else value < best


def _on_epoch_end(cb: Any, epoch: int, logs: dict[str, float]) -> None:
    config: PipelineConfig = cb.config
    done = epoch + 1
    tracker = cb.tracker
    metrics = {k: float(v) for k, v in logs.items()}
    tracker["history"].append({"epoch": done, **metrics})
    value = metrics.get(config.monitor, float("nan"))
    improved = _better(value, tracker["best_value"], config.monitor)
    if improved:
        tracker.update(best_value=value, best_epoch=done, wait=0)
    else:
        tracker["wait"] += 1
    stop = config.early_stopping and tracker["wait"] > config.patience
    tracker["stopped_early"] = bool(stop)
    tracker["epoch"] = done
    step = int(cb.model.optimizer.iterations.numpy())
    state = {**tracker, "seed_generators": ckpt.seed_generator_states(cb.model)}
    manifest = {
        "epoch": done,
        "global_step": step,
        "metrics": metrics,
        "config_digest": config.digest(),
        "data_fingerprint": cb.data_fingerprint,
        "run_id": cb.run_dir.name,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    t0 = time.perf_counter()
    best_dir = cb.run_dir / "best"
    if improved:
        ckpt.save_checkpoint(cb.model, ckpt.checkpoint_dir(best_dir, done), manifest, state)
    final = stop or done == config.epochs
    if done % config.checkpoint_every == 0 or final:
        folder = cb.run_dir / "checkpoints"
        ckpt.save_checkpoint(cb.model, ckpt.checkpoint_dir(folder, done), manifest, state)
        ckpt.prune_checkpoints(folder, keep=config.keep_checkpoints)
        # Older bests go only now: until a periodic checkpoint refers to the new best, a resume
        # restarts from a state whose best is the previous one, which must still exist.
        ckpt.prune_checkpoints(best_dir, keep=1)
    cb.checkpoint_seconds.append(time.perf_counter() - t0)
    write_history(cb.run_dir / "history.csv", tracker["history"])
    if stop:
        cb.model.stop_training = True
        log.info(
            "early stopping after epoch %d: no %s improvement for %d epochs",
            done,
            config.monitor,
            tracker["wait"],
        )
    cb.epoch_seconds.append(time.perf_counter() - cb.epoch_started)
    if cb.on_epoch is not None:
        cb.on_epoch(done, config.epochs, metrics)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """history.csv rewritten whole each epoch, so it never holds rows a resume will redo."""
    columns = sorted({k for row in history for k in row} - {"epoch"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["epoch", *columns])
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def new_tracker() -> dict[str, Any]:
    return {
        "epoch": 0,
        "best_value": None,
        "best_epoch": None,
        "wait": 0,
        "stopped_early": False,
        "history": [],
    }


def train(
    config: PipelineConfig,
    data: ProcessedData,
    run_dir: Path,
    resume: ckpt.Checkpoint | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train from scratch, or continue from `resume` exactly where it stopped."""
    import keras

    from tasks import dataset
    from tasks.model import build_model

    t0 = time.perf_counter()
    setup_determinism(config)
    train_split = dataset.load_split(
        data.split_path("train"), config.sequence_length, config.max_reviews, config.seed
    )
    val_split = dataset.load_split(
        data.split_path("validation"), config.sequence_length, config.max_reviews, config.seed
    )
    steps = dataset.steps_per_epoch(len(train_split), config.batch_size)
    if resume is None:
        model = build_model(config, steps)
        tracker = new_tracker()
    else:
        model = keras.models.load_model(resume.model_path)
        state = resume.state()
        ckpt.restore_seed_generator_states(model, state.pop("seed_generators"))
        tracker = {**new_tracker(), **state}
        # Whatever a killed attempt wrote past this checkpoint is superseded by this run.
        ckpt.prune_checkpoints(run_dir / "checkpoints", config.keep_checkpoints, above=resume.epoch)
        ckpt.prune_checkpoints(run_dir / "best", 1, above=resume.epoch)
        log.info(
            "resuming %s from epoch %d (step %d)",
            run_dir.name,
            resume.epoch,
            resume.manifest.get("global_step", -1),
        )
    initial_epoch = int(tracker["epoch"])
    callback = CheckpointCallback.make(
        config=config,
        run_dir=run_dir,
        data_fingerprint=data.fingerprint,
        tracker=tracker,
        on_epoch=on_epoch,
        checkpoint_seconds=[],
        epoch_seconds=[],
        first_step_at=None,
        epoch_started=0.0,
    )
    if initial_epoch < config.epochs and not tracker["stopped_early"]:
        train_ds = dataset.make_dataset(
            train_split, config.batch_size, config.seed, initial_epoch, config.epochs
        )
        val_ds = dataset.make_eval_dataset(val_split, EVAL_BATCH)
        callbacks = [
            callback,
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), profile_batch=0),
        ]
        model.fit(
            train_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    else:
        log.info("run %s already finished training at epoch %d", run_dir.name, initial_epoch)
    return TrainResult(
        run_dir=run_dir,
        epochs_completed=int(tracker["epoch"]),
        stopped_early=bool(tracker["stopped_early"]),
        best_epoch=tracker["best_epoch"],
        best_value=tracker["best_value"],
        seconds=time.perf_counter() - t0,
        history=list(tracker["history"]),
        epoch_seconds=callback.epoch_seconds,
        checkpoint_seconds=callback.checkpoint_seconds,
        first_step_at=callback.first_step_at,
    )
