"""Prefect tasks of the serving stage: export, champion promotion and run retention."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig
from tasks.core import runs
from tasks.data.processed import ProcessedData
from tasks.serving import champion, export
from tasks.training.train import TrainResult


@task(name="export_model")
def export_model(
    config: PipelineConfig, data: ProcessedData, result: TrainResult, metrics: dict
) -> Path:
    """Export the selected model to artifacts/models/<run_id>/."""
    best = result.best
    if best is None:
        raise RuntimeError(f"run {result.run_dir.name} has no valid best checkpoint to export")
    dest = export.export(
        best.model_path,
        config.artifacts_dir.resolve() / "models",
        result.run_dir.name,
        config,
        data,
        metrics,
        best.epoch,
    )
    get_run_logger().info("exported %s", dest)
    return dest


@task(name="promote_model")
def promote_model(models_dir: Path, model_dir: Path, validation_parquet: Path) -> champion.Decision:
    """Switch the champion to the new model if it is at least as good on validation."""
    decision = champion.promote_if_better(models_dir, model_dir, validation_parquet)
    old = (
        f"`{decision.champion}`: {decision.champion_accuracy:.4f}"
        if decision.champion
        else "none yet"
    )
    create_markdown_artifact(
        key="champion-decision",
        markdown=(
            f"## {'Promoted' if decision.promoted else 'Kept the champion'}\n\n"
            f"Validation accuracy on {decision.examples:,} reviews:\n\n"
            f"- challenger `{decision.challenger}`: {decision.challenger_accuracy:.4f}\n"
            f"- champion {old}\n"
        ),
        description="Nightly champion/challenger decision",
    )
    get_run_logger().info("champion decision: %s", asdict(decision))
    return decision


@task(name="prune_runs")
def prune_runs(artifacts_dir: Path, keep_runs: int) -> list[str]:
    """Delete old finished runs; the champion's run and the newest `keep_runs` are kept."""
    current = champion.current_champion(artifacts_dir / "models")
    removed = runs.prune_runs(artifacts_dir, keep_runs, {current.name} if current else set())
    if removed:
        get_run_logger().info("pruned %d old runs: %s", len(removed), ", ".join(removed))
    return removed
