"""Prefect task of the training stage: retries that continue from the newest checkpoint."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import task_run

from tasks.config import PipelineConfig
from tasks.data.processed import ProcessedData
from tasks.pretraining.word2vec import WordVectors
from tasks.training import checkpoint, train
from tasks.training.warm import WarmStart

# Training holds at an epoch boundary while the file this names exists: after the epoch's
# checkpoint is written, before the next epoch starts. Operators can pause a run safely with it,
# and the end-to-end test kills a run at a known epoch, however fast or loaded the machine is.
HOLD_FILE_ENV = "IMDB_PIPELINE_HOLD_FILE"


def hold_if_requested(log: Callable[[str], None]) -> None:
    """Wait while the file named by IMDB_PIPELINE_HOLD_FILE exists (no-op when unset)."""
    hold = os.environ.get(HOLD_FILE_ENV)
    if not hold or not Path(hold).exists():
        return
    log(f"holding after this epoch's checkpoint while {hold} exists")
    while Path(hold).exists():
        time.sleep(0.2)


# A retry finds the run's newest checkpoint and continues from it, never from scratch. No
# Prefect result cache: the checkpoints are the cache.
@task(name="train_model", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def train_model(
    config: PipelineConfig,
    data: ProcessedData,
    run_dir: Path,
    latest: checkpoint.Checkpoint | None = None,
    word_vectors: WordVectors | None = None,
    warm: WarmStart | None = None,
    after_epoch: Callable[[], None] | None = None,
) -> train.TrainResult:
    """Fit the model, continuing from `latest` (the run's newest valid checkpoint, verified by
    the caller) or, on a retry or when not given, from the newest one found now; a model
    trained afresh starts from `word_vectors`, and from `warm`'s weights if given.
    `after_epoch` is called once each epoch's checkpoint and history row are written (the
    flow's MLflow sync, when tracking is on)."""
    logger = get_run_logger()
    if latest is None or task_run.run_count > 1:  # a failed attempt may have saved newer ones
        latest = checkpoint.find_latest_checkpoint(run_dir)
    if latest is not None:
        logger.info("continuing %s from checkpoint epoch %d", run_dir.name, latest.epoch)
    progress = create_progress_artifact(0.0, key="training-progress", description="epochs done")

    def on_epoch(done: int, total: int, metrics: dict[str, float]) -> None:
        update_progress_artifact(progress, 100.0 * done / total)
        logger.info(
            "epoch %d/%d: %s", done, total, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        )
        if after_epoch is not None:  # history.csv holds this epoch now
            after_epoch()
        hold_if_requested(logger.info)

    vectors = word_vectors.load() if word_vectors is not None and latest is None else None
    result = train.train(
        config,
        data,
        run_dir,
        resume=latest,
        on_epoch=on_epoch,
        word_vectors=vectors,
        warm=warm,
        progress=logger.info,
    )
    update_progress_artifact(progress, 100.0)
    return result
