"""What of a run folder the MLflow sync logs: its params, tags, artifacts and export, read from
the folder; and the sync's own record of what it logged (`mlflow.json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.core.atomic import file_sha256
from tasks.core.runs import read_run_info

STATE_FILE = "mlflow.json"
TAG = "imdb."  # prefix of this project's run tags
RUN_ARTIFACTS = (
    "metrics.json",
    "training-curves.png",
    "confusion-matrix.png",
    "calibration.png",
    "report.html",
)
CARD_ARTIFACTS = ("model-card.md", "model-card.json")  # logged under model-card/
# run.json's status -> the MLflow run's status
STATUS = {"running": "RUNNING", "completed": "FINISHED", "failed": "FAILED", "abandoned": "KILLED"}


def read_all(run_dir: Path) -> dict[str, Any]:
    """mlflow.json; empty if missing or unreadable (the runs are then found by their tag)."""
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return read_run_info(run_dir).get("config") or {}
    except (LookupError, ValueError):
        return {}


def params(info: dict[str, Any]) -> dict[str, str]:
    """The config as params (values as text; where tracking goes is not a param of the run)."""
    config = info.get("config") or {}
    return {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in sorted(config.items())
        if not k.startswith("mlflow_")
    }


def tags(info: dict[str, Any]) -> dict[str, str]:
    return {
        f"{TAG}run_id": str(info.get("run_id", "")),
        f"{TAG}flow_run_ids": ",".join(str(f) for f in info.get("flow_run_ids", []) if f),
        f"{TAG}data_fingerprint": str(info.get("data_fingerprint", "")),
        f"{TAG}config_digest": str(info.get("config_digest", "")),
    }


def export_of(run_dir: Path, models_dir: Path) -> Path | None:
    """The run's export, if it exists (export writes the folder whole, in one rename)."""
    from tasks.serving.exported import ExportedModel

    export = ExportedModel(models_dir / run_dir.name)
    return export.path if export.is_published() else None


def artifacts(run_dir: Path, models_dir: Path) -> list[tuple[str, Path]]:
    """(artifact name, file) of each artifact the run holds now: the evaluation's files, then
    the model card of its export."""
    out = [(name, run_dir / name) for name in RUN_ARTIFACTS if (run_dir / name).is_file()]
    model_dir = export_of(run_dir, models_dir)
    if model_dir is not None:
        out += [(f"model-card/{name}", model_dir / name) for name in CARD_ARTIFACTS]
    return out


def sha(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return None


def epochs_text(epochs: list[int]) -> str:
    if len(epochs) == 1:
        return f"epoch {epochs[0]}"
    return f"epochs {epochs[0]}-{epochs[-1]}"


def now_ms() -> int:
    import time

    return int(time.time() * 1000)
