"""pipeline: fetch -> tokenize -> train -> evaluate -> export."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.prepare import prepare_data
from tasks.config import PipelineConfig
from tasks.steps import evaluate_model, export_model, train_model
from tasks.train import TrainResult, create_run, update_run_info


@flow(name="imdb-pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), run_id: str | None = None) -> dict:
    """The whole job; `run_id` names the run folder (default: a new timestamped one)."""
    data = prepare_data(config)
    run_dir = create_run(config.artifacts_dir.resolve(), config, data, run_id, flow_run.get_id())
    return finish_run(config, data, run_dir)


def finish_run(config: PipelineConfig, data, run_dir: Path) -> dict:
    """Train (resuming from the run's newest checkpoint), evaluate and export."""
    try:
        result: TrainResult = train_model(config, data, run_dir)
        metrics = evaluate_model(config, data, result)
        model_dir = export_model(config, data, result, metrics)
    except BaseException:
        update_run_info(run_dir, status="failed")
        raise
    update_run_info(run_dir, status="completed", model_dir=str(model_dir))
    return {
        "flow": "pipeline",
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "model_dir": str(model_dir),
        "epochs_completed": result.epochs_completed,
        "stopped_early": result.stopped_early,
        "selected_epoch": metrics["selected_epoch"],
        "train_seconds": round(result.seconds, 1),
        "test_accuracy": metrics["accuracy"],
        "test_metrics": metrics,
    }
