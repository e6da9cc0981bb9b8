"""A run folder, artifacts/runs/<run_id>/: its file names and readers, in one place. Every stage
that writes or reads a run's files asks a `RunFolder` for their paths.

| path                      | written by                       | what                           |
|---------------------------|----------------------------------|--------------------------------|
| run.json                  | core.runs (create, resume, end)  | config, data, status, resumes  |
| .writer.lock, writer.json | core.lock                        | the one writer's flock; who    |
| history.csv               | training.callback, every epoch   | one row per finished epoch     |
| checkpoints/epoch-NNNN/   | training.checkpoint              | every epoch's resumable state  |
| best/epoch-NNNN/          | training.checkpoint              | the best epoch so far          |
| tensorboard/              | Keras, when configured           | TensorBoard logs               |
| metrics.json, three .png  | evaluation                       | test metrics and the plots     |
| report.html               | evaluation.report                | the run's one-page report      |
| mlflow.json, .mlflow.lock | tracking.mlflow_sync             | what was logged to MLflow      |

Every file is written whole (temp + fsync + rename), so a reader sees the old version or the
new one. The layout is the one runs have always had: older run folders read the same.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_write_text

RUNS_DIR = "runs"  # under the artifacts folder


class RunError(LookupError):
    """No run matches, or the run cannot be continued; the message says why."""


@dataclass(frozen=True)
class RunFolder:
    """The run folder at `path` (which need not exist yet: ask `is_run`)."""

    path: Path

    @classmethod
    def under(cls, artifacts_dir: Path, run_id: str) -> RunFolder:
        return cls(runs_root(artifacts_dir) / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    # --- the files ---------------------------------------------------------------------------

    @property
    def info_file(self) -> Path:
        return self.path / "run.json"

    @property
    def history_file(self) -> Path:
        return self.path / "history.csv"

    @property
    def writer_lock(self) -> Path:
        return self.path / ".writer.lock"

    @property
    def writer_file(self) -> Path:
        return self.path / "writer.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def training_curves(self) -> Path:
        return self.path / "training-curves.png"

    @property
    def confusion_matrix(self) -> Path:
        return self.path / "confusion-matrix.png"

    @property
    def calibration(self) -> Path:
        return self.path / "calibration.png"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def results(self) -> tuple[Path, ...]:
        """The evaluation's files, in the order MLflow logs them."""
        return (
            self.metrics_file,
            self.training_curves,
            self.confusion_matrix,
            self.calibration,
            self.report,
        )

    @property
    def mlflow_state(self) -> Path:
        return self.path / "mlflow.json"

    @property
    def mlflow_lock(self) -> Path:
        return self.path / ".mlflow.lock"

    # --- the readers and writers -------------------------------------------------------------

    def is_run(self) -> bool:
        return self.info_file.is_file()

    def read_info(self) -> dict[str, Any]:
        """run.json; RunError if this is not a run folder."""
        try:
            return json.loads(self.info_file.read_text())
        except FileNotFoundError as exc:
            raise RunError(f"{self.path} is not a run folder (no {self.info_file.name})") from exc

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.info_file, json.dumps(info, indent=2))

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = {**self.read_info(), **changes}
        self.write_info(info)
        return info

    def read_history(self) -> list[dict[str, str]]:
        """history.csv's rows, in epoch order; none before the first epoch ends (the file is
        replaced whole, never half written)."""
        try:
            with self.history_file.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except FileNotFoundError:
            return []
        return sorted(rows, key=lambda row: int(row["epoch"]))

    def write_history(self, history: list[dict[str, float]]) -> None:
        """history.csv rewritten whole each epoch, so it never holds rows a resume will redo."""
        columns = sorted({k for row in history for k in row} - {"epoch"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch", *columns])
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.history_file, buf.getvalue())

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json (FileNotFoundError before the run is evaluated)."""
        return json.loads(self.metrics_file.read_text(encoding="utf-8"))


def runs_root(artifacts_dir: Path) -> Path:
    """artifacts/runs/, the folder of every run folder."""
    return artifacts_dir / RUNS_DIR
