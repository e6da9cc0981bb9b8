"""train_model: fit the LSTM with atomic checkpoints, resumable at any epoch boundary."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.config import PipelineConfig
from tasks.core.run_folder import RunFolder
from tasks.data.processed import ProcessedData
from tasks.training import checkpoint as ckpt
from tasks.training.distribute import (
    adapt_fit_to_strategy,
    distribute_options,
    is_chief,
    make_strategy,
)
from tasks.training.tracker import Tracker
from tasks.training.warm import WarmStart

log = logging.getLogger(__name__)

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
    best: ckpt.Checkpoint | None = None  # the verified best-on-validation checkpoint (chief)
    warm_started_from: str | None = None  # the export training started from (a warm start)


def setup_determinism(config: PipelineConfig) -> None:
    """Seed Python, NumPy and TF; with `deterministic`, also force deterministic TF ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def load_training_splits(config: PipelineConfig, data: ProcessedData) -> tuple[Any, Any]:
    """The train and validation splits as the config truncates and caps them."""
    from tasks.training import dataset

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
    word_vectors: np.ndarray | None = None,
    warm: WarmStart | None = None,
    progress: Callable[[str], None] = log.info,
) -> TrainResult:
    """Train from scratch (the embedding initialised with `word_vectors` if given), or from
    the weights of `warm`'s model for `warm.epochs` epochs, or continue from `resume` exactly
    where it stopped (a warm-started run keeps its epoch count). `progress` is told what a warm
    start carried over."""
    import keras

    from tasks.training import dataset
    from tasks.training.callback import CheckpointCallback
    from tasks.training.layers import load_model
    from tasks.training.model import build_model, count_ngrams, set_ngram_ratios
    from tasks.training.warm import transfer_weights

    t0 = time.perf_counter()
    # First: a multi-worker strategy configures collective ops before TF is otherwise used.
    strategy = make_strategy(config)
    chief = is_chief(strategy)
    setup_determinism(config)
    train_split, val_split = load_training_splits(config, data)
    steps = dataset.steps_per_epoch(len(train_split), config.batch_size)
    epochs = warm.epochs if warm is not None else config.epochs
    # Variables (weights, optimizer, dropout generators) are created, or loaded, as the
    # strategy's distributed variables; a checkpoint holds plain values, so a run resumes under
    # any strategy or worker count.
    with strategy.scope():
        if resume is None:
            counts = None
            if config.ngram_order and config.ngram_min_count:
                counts = count_ngrams(config, dataset.make_eval_dataset(train_split))
            model = build_model(config, steps, word_vectors, counts, epochs)
            if config.ngram_order and counts is None:  # hashed ids: counted by the model's layer
                set_ngram_ratios(model, dataset.make_eval_dataset(train_split))
            if warm is not None:
                warm.check()
                moved = transfer_weights(
                    model,
                    load_model(warm.model, compile=False),
                    warm.vocabulary.read_text(encoding="utf-8").splitlines(),
                    data.vocabulary(),
                    config.vocab_size,
                    config.ngram_order,
                )
                progress(
                    f"warm start from {warm.model.parent.name} for {epochs} epoch(s): "
                    f"{moved['words']:,} words and {moved['ngrams']:,} n-grams carried over; "
                    f"{moved['words_new']:,} words and {moved['ngrams_new']:,} n-grams new, "
                    "starting as in a fresh model"
                )
            tracker = Tracker()
        else:
            model = load_model(resume.model_path)
            state = resume.state()
            ckpt.restore_seed_generator_states(model, state["seed_generators"])
            tracker = Tracker.from_state(state)
    if resume is not None:
        if chief:
            # Whatever a killed attempt wrote past this checkpoint is superseded by this run.
            run = RunFolder(run_dir)
            ckpt.prune_checkpoints(run.checkpoints, config.keep_checkpoints, above=resume.epoch)
            ckpt.prune_checkpoints(run.best, 1, above=resume.epoch)
        log.info(
            "resuming %s from epoch %d (step %d)",
            run_dir.name,
            resume.epoch,
            resume.manifest.get("global_step", -1),
        )
    initial_epoch = tracker.epoch
    callback = CheckpointCallback(
        config, run_dir, data.fingerprint, tracker, chief=chief, on_epoch=on_epoch, epochs=epochs
    )
    if initial_epoch < epochs and not tracker.stopped_early:
        train_ds = dataset.make_dataset(
            train_split,
            config.batch_size,
            config.seed,
            initial_epoch,
            epochs,
            pad_end=config.mask_padding,
        )
        val_ds = dataset.make_eval_dataset(val_split, pad_end=config.mask_padding)
        train_ds = distribute_options(train_ds, strategy)
        val_ds = distribute_options(val_ds, strategy)
        if config.distribution != "none":
            adapt_fit_to_strategy(model, strategy, train_ds.element_spec)
        callbacks = [callback]
        if chief:  # event files of other workers would duplicate the chief's (equal) metrics
            callbacks.append(
                keras.callbacks.TensorBoard(str(RunFolder(run_dir).tensorboard), profile_batch=0)
            )
        model.fit(
            train_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_data=val_ds,
            shuffle=False,  # the dataset's epoch plans are shuffled already (seeded per epoch)
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    else:
        log.info("run %s already finished training at epoch %d", run_dir.name, initial_epoch)
    tracker = callback.tracker
    return TrainResult(
        run_dir=run_dir,
        epochs_completed=tracker.epoch,
        stopped_early=tracker.stopped_early,
        best_epoch=tracker.best_epoch,
        best_value=tracker.best_value,
        seconds=time.perf_counter() - t0,
        history=list(tracker.history),
        epoch_seconds=callback.epoch_seconds,
        checkpoint_seconds=callback.checkpoint_seconds,
        first_step_at=callback.first_step_at,
        best=ckpt.find_best_checkpoint(run_dir) if chief else None,
        warm_started_from=warm.model.parent.name if warm is not None else None,
    )
