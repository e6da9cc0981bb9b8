"""Prefect steps of MLflow tracking, on only where a tracking URI is configured (the config's
`mlflow_tracking_uri`, else MLFLOW_TRACKING_URI). Without one they do nothing and import nothing
of MLflow. A tracking failure never fails a run: it is a warning naming what was not logged and
the command that logs it later (`imdb-pipeline mlflow-sync`; the run's next sync does too)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig

SYNC_COMMAND = "imdb-pipeline mlflow-sync"


def tracking_uri(config: PipelineConfig) -> str | None:
    """Where runs are tracked: the config's URI, else MLFLOW_TRACKING_URI, else None (off)."""
    return config.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def track_run(config: PipelineConfig, run_dir: Path) -> dict[str, Any] | None:
    """Log the run folder's news to MLflow (see `mlflow_sync.sync_run`), then any earlier run
    whose sync an outage left outstanding. None when tracking is off or the server failed."""
    uri = tracking_uri(config)
    if uri is None:
        return None
    return _track_run(config, run_dir, uri)


def track_champion(config: PipelineConfig) -> dict[str, Any] | None:
    """Point the registered model's `champion` alias at the champion's version, so MLflow
    agrees with artifacts/models/champion. None when tracking is off or the server failed."""
    uri = tracking_uri(config)
    if uri is None:
        return None
    return _track_champion(config, uri)


def epoch_tracker(
    config: PipelineConfig, run_dir: Path, warn: Callable[[str], None]
) -> Callable[[], None] | None:
    """For the training's epoch hook: a call that logs the epochs history.csv holds so far, so
    a run that dies mid-training still shows them. None when tracking is off. After a failure
    it stops trying for this training attempt (an outage costs its timeout once); the run's
    final sync tries again."""
    uri = tracking_uri(config)
    if uri is None:
        return None
    failed = False

    def after_epoch() -> None:
        nonlocal failed
        if failed:
            return
        from tasks.tracking import mlflow_sync

        models_dir = config.artifacts_dir.resolve() / "models"
        try:
            mlflow_sync.sync_run(run_dir, models_dir, uri, config.mlflow_registered_model)
        except Exception as exc:  # tracking never stops training
            failed = True
            reason = mlflow_sync.failure_reason(exc)
            warn(
                f"MLflow at {uri} failed ({reason}): epochs are not logged while this training "
                f"runs; the run's final sync or `{SYNC_COMMAND}` logs them"
            )

    return after_epoch


@task(name="track_run")
def _track_run(config: PipelineConfig, run_dir: Path, uri: str) -> dict[str, Any] | None:
    from tasks.tracking import mlflow_sync

    logger = get_run_logger()
    artifacts_dir = config.artifacts_dir.resolve()
    models_dir = artifacts_dir / "models"
    name = config.mlflow_registered_model
    try:
        result = mlflow_sync.sync_run(run_dir, models_dir, uri, name)
    except Exception as exc:
        missing = mlflow_sync.pending(run_dir, models_dir, uri)
        logger.warning(
            "MLflow at %s failed (%s): not logged for run %s: %s. Nothing is lost: `%s` "
            "(or this run's next sync) logs it once the server is reachable",
            uri,
            mlflow_sync.failure_reason(exc),
            run_dir.name,
            ", ".join(missing) or "nothing",
            SYNC_COMMAND,
        )
        return None
    logger.info("MLflow at %s: %s", uri, result.describe())
    try:
        for earlier in mlflow_sync.sync_outstanding(artifacts_dir, uri, name, (run_dir.name,)):
            logger.info("MLflow at %s, left from an earlier outage: %s", uri, earlier.describe())
    except Exception as exc:
        logger.warning(
            "MLflow at %s: earlier runs still not logged (%s); `%s` logs them",
            uri,
            mlflow_sync.failure_reason(exc),
            SYNC_COMMAND,
        )
    return {"tracking_uri": uri, **vars(result)}


@task(name="track_champion")
def _track_champion(config: PipelineConfig, uri: str) -> dict[str, Any] | None:
    from tasks.tracking import mlflow_sync

    logger = get_run_logger()
    models_dir = config.artifacts_dir.resolve() / "models"
    name = config.mlflow_registered_model
    try:
        champion = mlflow_sync.sync_champion(models_dir, uri, name)
    except Exception as exc:
        logger.warning(
            "MLflow at %s failed (%s): the alias %s@%s was not moved to the champion; `%s` "
            "moves it once the server is reachable",
            uri,
            mlflow_sync.failure_reason(exc),
            name,
            mlflow_sync.CHAMPION_ALIAS,
            SYNC_COMMAND,
        )
        return None
    if champion is not None:
        logger.info(
            "MLflow at %s: %s@%s %s version %s (run %s)",
            uri,
            name,
            mlflow_sync.CHAMPION_ALIAS,
            "now names" if champion["moved"] else "already names",
            champion["version"],
            champion["run_id"],
        )
    return champion
