"""Tests of the evaluation stage's Prefect task, run inside a tiny flow on the test server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from tasks.evaluation.steps import evaluate_model
from tests.imdb_fixtures import Exported, run_in_flow

pytestmark = pytest.mark.usefixtures("prefect_server")

PNG = b"\x89PNG\r\n\x1a\n"


def test_evaluate_model_writes_metrics_plots_and_artifacts(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a copy of the tiny model's finished training run
    result = exported.copy_run(tmp_path / "run-1")

    # When the task evaluates its best checkpoint
    metrics = run_in_flow(evaluate_model, exported.config, exported.data, result)

    # Then the metrics are the best model's on the whole test split, tagged with its epoch
    assert metrics["selected_epoch"] == exported.best.epoch
    assert metrics["split"] == "test"
    assert metrics["examples"] == 80
    assert metrics["accuracy"] == pytest.approx(exported.metrics["accuracy"], abs=1e-9)
    assert metrics["confusion_matrix"] == exported.metrics["confusion_matrix"]
    # And they are written to the run's metrics.json, beside the two plots
    assert json.loads((result.run_dir / "metrics.json").read_text()) == metrics
    for plot in ("training-curves.png", "confusion-matrix.png"):
        assert (result.run_dir / plot).read_bytes()[:8] == PNG, plot
    # And the metrics table and confusion matrix are published as artifacts
    table = Artifact.get("test-metrics")
    assert table is not None and "accuracy" in str(table.data)
    matrix = Artifact.get("confusion-matrix")
    assert matrix is not None and f"{metrics['accuracy']:.4f}" in str(matrix.data)


def test_evaluate_model_without_a_best_checkpoint_fails(exported: Exported, tmp_path: Path) -> None:
    # Given a training result without a valid best checkpoint
    result = dataclasses.replace(exported.copy_run(tmp_path / "run-2"), best=None)

    # When / then the task fails, naming the run, and writes no metrics
    with pytest.raises(RuntimeError, match="run-2 has no valid best checkpoint"):
        run_in_flow(evaluate_model, exported.config, exported.data, result)
    assert not (result.run_dir / "metrics.json").exists()
