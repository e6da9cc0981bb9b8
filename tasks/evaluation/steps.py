"""Prefect task of the evaluation stage: test metrics, plots and artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig
from tasks.core.run_folder import RunFolder
from tasks.data.processed import ProcessedData
from tasks.evaluation import evaluate, report
from tasks.training.train import TrainResult


@task(name="evaluate_model")
def evaluate_model(config: PipelineConfig, data: ProcessedData, result: TrainResult) -> dict:
    """Test metrics of the model selected on validation; metrics.json, plots and artifacts."""
    from tasks.training.layers import load_model
    from tasks.training.model import serving_model

    best = result.best
    if best is None:
        raise RuntimeError(f"run {result.run_dir.name} has no valid best checkpoint to evaluate")
    model = serving_model(load_model(best.model_path, compile=False), config)
    metrics = evaluate.evaluate(model, data.split_path("test"), config)
    metrics = {"selected_epoch": best.epoch, "split": "test", **metrics}
    run = RunFolder(result.run_dir)
    evaluate.write_metrics(run.metrics_file, metrics)
    evaluate.plot_report(run, result.history, metrics)
    _publish_metrics(result.run_dir.name, metrics)
    return metrics


def _publish_metrics(run_id: str, metrics: dict) -> None:
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc", "loss")
    create_table_artifact(
        key="test-metrics",
        table=[{"metric": k, "value": round(float(metrics[k]), 4)} for k in keys],
        description=f"Test metrics of run {run_id}",
    )
    cm = metrics["confusion_matrix"]
    create_markdown_artifact(
        key="confusion-matrix",
        markdown=(
            f"## Run `{run_id}`: test accuracy {metrics['accuracy']:.4f} "
            f"(epoch {metrics['selected_epoch']})\n\n"
            "| actual \\ predicted | neg | pos |\n|---|---|---|\n"
            f"| neg | {cm['tn']:,} | {cm['fp']:,} |\n| pos | {cm['fn']:,} | {cm['tp']:,} |\n"
        ),
    )


@task(name="report_run")
def report_run(
    run_dir: Path,
    copy: Path | None = None,
    decision: dict[str, Any] | None = None,
    incoming: list[dict[str, Any]] | None = None,
) -> Path | None:
    """The run folder's report (and its `copy`, the export's), published as an artifact. A
    report that cannot be drawn is a warning: the run still completes."""
    logger = get_run_logger()
    copies = (copy,) if copy is not None else ()
    try:
        path = report.write_report(run_dir, copies, decision=decision, incoming=incoming)
    except Exception as exc:  # a report is for reading: it never fails the run
        logger.warning("report not written: %s", exc)
        return None
    create_markdown_artifact(
        key="run-report",
        markdown=f"## Report of run `{run_dir.name}`\n\nOpen `{path}` in a browser"
        + (f" (a copy: `{copy}`)." if copy else "."),
        description="The run's one-page HTML report",
    )
    logger.info("report: %s", path)
    return path
