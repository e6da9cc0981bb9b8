"""The rules of continuing a run: the same data and settings as it started with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.core.run_folder import RunError
from tasks.training.checkpoint import Checkpoint


def check_compatible(
    run_dir: Path,
    info: dict[str, Any],
    config: PipelineConfig,
    fingerprint: str,
    latest: Checkpoint | None,
) -> None:
    """RunError unless the run (`info`, its run.json) and its newest checkpoint `latest` were
    made from data of `fingerprint` and with the settings of `config`."""
    if info.get("data_fingerprint") != fingerprint:
        raise RunError(
            f"run {run_dir.name} was trained on data {info.get('data_fingerprint')}, but the "
            f"archive and settings now give {fingerprint}: start a new run instead"
        )
    if latest is None:
        return
    written_with = latest.manifest.get("config_digest")
    if written_with != config.digest():
        raise RunError(
            f"checkpoint {latest.path} was written with config {written_with}, "
            f"run.json now gives {config.digest()}: the run's settings were changed"
        )
    trained_on = latest.manifest.get("data_fingerprint")
    if trained_on != fingerprint:
        raise RunError(
            f"checkpoint {latest.path} was trained on data {trained_on}, not {fingerprint}"
        )
