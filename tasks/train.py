"""train_model: fit the LSTM with atomic checkpoints, resumable at any epoch boundary."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
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


_STRATEGIES: dict[str, Any] = {}


def make_strategy(config: PipelineConfig) -> Any:
    """The tf.distribute strategy `config.distribution` names.

    none: the current (default, one-device) strategy. mirrored: MirroredStrategy over all local
    GPUs, or the CPU when there is none. multi_worker: MultiWorkerMirroredStrategy over the
    cluster in TF_CONFIG. One strategy per kind per process: a MultiWorkerMirroredStrategy
    configures the process's collective ops and cannot be created twice (task retries reuse it).
    """
    import tensorflow as tf

    if config.distribution == "none":
        return tf.distribute.get_strategy()
    if config.distribution == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise RuntimeError(
            "distribution 'multi_worker' needs the TF_CONFIG environment variable (the cluster "
            'and this process\'s task, e.g. {"cluster": {"worker": ["host0:port", '
            '"host1:port"]}, "task": {"type": "worker", "index": 0}}) on every worker'
        )
    strategy = _STRATEGIES.get(config.distribution)
    if strategy is None:
        if config.distribution == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _STRATEGIES[config.distribution] = strategy
    return strategy


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run's files: task "chief", else worker 0 (TF_CONFIG).

    Always true outside multi-worker training.
    """
    return bool(strategy.extended.should_checkpoint)


def distribute_options(dataset: Any, strategy: Any) -> Any:
    """`dataset` (global batches) set up to be split by `strategy`.

    The batches are built by a map over precomputed row lists (no `batch` op, no files), so tf.data
    can neither shard by file nor compute a static batch size: tf.distribute splits each global
    batch into one slice per replica along the batch axis, and the DATA policy then gives each
    worker its replicas' slices. Every worker keeps the whole, identical epoch plan, so a global
    step sees the same rows whatever the worker count. Set explicitly: AUTO would first try FILE.
    """
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def adapt_fit_to_strategy(model: Any, strategy: Any, element_spec: Any) -> None:
    """Work around two failures of Keras 3's `fit` under tf.distribute (keras-team/keras#20585).

    1. Before training, `fit` averages its first distributed batch across replicas to learn
       the input shapes. That fails when the replicas' slices differ in size (a 7-row batch
       on 2 replicas: "Inputs to operation AddN ... must have the same size and shape") and,
       across workers, always (`strategy.reduce` takes no (x, y) tuple: "Attempt to convert a
       value (PerReplica ...) to a Tensor"). Only shapes and dtypes are needed, so metrics,
       loss and optimizer are built from the dataset's element spec instead, as `fit` does
       in a single process.
    2. Across workers, each train and test step's logs are averaged along axis 0, which fails
       on scalar metrics ("Invalid reduction dimension 0 for input with 0 dimensions",
       tensorflow/tensorflow#72388). The steps return them with a leading axis of 1 instead.
       Their values are equal on every replica (metric variables are mirrored and summed
       across replicas at each update), so the mean of the copies is exact.
    Call it only for a model built under a strategy's scope; without one, `fit` is untouched.
    """
    import tensorflow as tf

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    model._maybe_symbolic_build = symbolic_build
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return

    def with_leading_axis(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapped(data: Any) -> Any:
            return tf.nest.map_structure(lambda v: tf.expand_dims(v, 0), step(data))

        return wrapped

    model.train_step = with_leading_axis(model.train_step)
    model.test_step = with_leading_axis(model.test_step)


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
    # Only the chief writes. The logs are reduced across all replicas, so every worker's
    # tracker (and early-stopping decision) is the same; saving reads only local variable
    # copies and runs no collective op, so the other workers need not save anywhere.
    chief = getattr(cb, "chief", True)
    best_dir = cb.run_dir / "best"
    best = None
    if improved and chief:
        best = ckpt.save_checkpoint(cb.model, ckpt.checkpoint_dir(best_dir, done), manifest, state)
    final = stop or done == config.epochs
    if (done % config.checkpoint_every == 0 or final) and chief:
        folder = cb.run_dir / "checkpoints"
        dest = ckpt.checkpoint_dir(folder, done)
        if best is not None:  # the same epoch: copying the files beats serialising again
            ckpt.copy_checkpoint(best, dest)
        else:
            ckpt.save_checkpoint(cb.model, dest, manifest, state)
        ckpt.prune_checkpoints(folder, keep=config.keep_checkpoints)
        # Older bests go only now: until a periodic checkpoint refers to the new best, a resume
        # restarts from a state whose best is the previous one, which must still exist.
        ckpt.prune_checkpoints(best_dir, keep=1)
    cb.checkpoint_seconds.append(time.perf_counter() - t0)
    if chief:
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


def load_training_splits(config: PipelineConfig, data: ProcessedData) -> tuple[Any, Any]:
    """The train and validation splits as the config truncates and caps them."""
    from tasks import dataset

    return tuple(
        dataset.load_split(
            data.split_path(name), config.sequence_length, config.max_reviews, config.seed
        )
        for name in ("train", "validation")
    )


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
    # First: a multi-worker strategy configures collective ops before TF is otherwise used.
    strategy = make_strategy(config)
    chief = is_chief(strategy)
    setup_determinism(config)
    train_split, val_split = load_training_splits(config, data)
    steps = dataset.steps_per_epoch(len(train_split), config.batch_size)
    # Variables (weights, optimizer, dropout generators) are created, or loaded, as the
    # strategy's distributed variables; a checkpoint holds plain values, so a run resumes under
    # any strategy or worker count.
    with strategy.scope():
        if resume is None:
            model = build_model(config, steps)
            tracker = new_tracker()
        else:
            model = keras.models.load_model(resume.model_path)
            state = resume.state()
            ckpt.restore_seed_generator_states(model, state.pop("seed_generators"))
            tracker = {**new_tracker(), **state}
    if resume is not None:
        if chief:
            # Whatever a killed attempt wrote past this checkpoint is superseded by this run.
            ckpt.prune_checkpoints(
                run_dir / "checkpoints", config.keep_checkpoints, above=resume.epoch
            )
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
        chief=chief,
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
        train_ds = distribute_options(train_ds, strategy)
        val_ds = distribute_options(val_ds, strategy)
        if config.distribution != "none":
            adapt_fit_to_strategy(model, strategy, train_ds.element_spec)
        callbacks = [callback]
        if chief:  # event files of other workers would duplicate the chief's (equal) metrics
            callbacks.append(
                keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), profile_batch=0)
            )
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
