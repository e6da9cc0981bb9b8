"""What of a run folder the MLflow sync logs: its params, tags, artifacts and export, read from
the folder; and the sync's own record of what it logged (`mlflow.json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.core.atomic import file_sha256
from tasks.core.run_folder import RunFolder

TAG = "imdb."  # prefix of this project's run tags
# run.json's status -> the MLflow run's status
STATUS = {"running": "RUNNING", "completed": "FINISHED", "failed": "FAILED", "abandoned": "KILLED"}


def read_all(run_dir: Path) -> dict[str, Any]:
    """mlflow.json; empty if missing or unreadable (the runs are then found by their tag)."""
    try:
        return json.loads(RunFolder(run_dir).mlflow_state.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return RunFolder(run_dir).read_info().get("config") or {}
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
    from tasks.serving.exported import ExportedModel

    out = [(path.name, path) for path in RunFolder(run_dir).results if path.is_file()]
    model_dir = export_of(run_dir, models_dir)
    if model_dir is not None:
        export = ExportedModel(model_dir)
        out += [(f"model-card/{path.name}", path) for path in (export.card_md, export.card_path)]
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
