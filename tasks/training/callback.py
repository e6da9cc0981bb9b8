"""The Keras callback that checkpoints every epoch, tracks the best one and stops early."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import keras

from tasks.config import PipelineConfig
from tasks.core.run_folder import RunFolder
from tasks.training import checkpoint as ckpt
from tasks.training.tracker import Tracker

log = logging.getLogger(__name__)

EpochHook = Callable[[int, int, dict[str, float]], None]


class CheckpointCallback(keras.callbacks.Callback):
    """After each epoch: update the tracker, write the checkpoints and history, maybe stop."""

    def __init__(
        self,
        config: PipelineConfig,
        run_dir: Path,
        data_fingerprint: str,
        tracker: Tracker,
        *,
        chief: bool = True,
        on_epoch: EpochHook | None = None,
        epochs: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.run_dir = run_dir
        self.data_fingerprint = data_fingerprint
        self.tracker = tracker
        # Only the chief writes. The logs are reduced across all replicas, so every worker's
        # tracker (and early-stopping decision) is the same; saving reads only local variable
        # copies and runs no collective op, so the other workers need not save anywhere.
        self.chief = chief
        self.on_epoch = on_epoch
        self.epochs = epochs or config.epochs  # the last epoch: a warm start trains fewer
        # Measured in this process only (a resumed run reports its own epochs).
        self.epoch_seconds: list[float] = []  # incl. validation + checkpoints
        self.checkpoint_seconds: list[float] = []  # checkpoint writes per epoch
        self.first_step_at: float | None = None  # unix time of the first training step
        self._epoch_started = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.first_step_at is None:  # how long start-up (and resume) took
            self.first_step_at = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        config = self.config
        done = epoch + 1
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        patience = config.patience if config.early_stopping else None
        self.tracker = tracker = self.tracker.after_epoch(done, metrics, config.monitor, patience)
        t0 = time.perf_counter()
        if self.chief:
            ckpt.save_epoch(
                self.model,
                self.run_dir,
                self._manifest(done, metrics),
                {**tracker.to_state(), "seed_generators": ckpt.seed_generator_states(self.model)},
                improved=tracker.improved,
                periodic=done % config.checkpoint_every == 0
                or tracker.stopped_early
                or done == self.epochs,
                keep=config.keep_checkpoints,
            )
        self.checkpoint_seconds.append(time.perf_counter() - t0)
        if self.chief:
            RunFolder(self.run_dir).write_history(list(tracker.history))
        if tracker.stopped_early:
            self.model.stop_training = True
            log.info(
                "early stopping after epoch %d: no %s improvement for %d epochs",
                done,
                config.monitor,
                tracker.wait,
            )
        self.epoch_seconds.append(time.perf_counter() - self._epoch_started)
        if self.on_epoch is not None:
            self.on_epoch(done, self.epochs, metrics)

    def _manifest(self, done: int, metrics: dict[str, float]) -> dict:
        return {
            "epoch": done,
            "global_step": int(self.model.optimizer.iterations.numpy()),
            "metrics": metrics,
            "config_digest": self.config.digest(),
            "data_fingerprint": self.data_fingerprint,
            "run_id": self.run_dir.name,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
