"""imdb-pipeline: fetch -> tokenize -> pretrain -> train -> evaluate -> export (-> promote)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.prepare import prepare_data
from tasks.config import PipelineConfig
from tasks.core.runs import create_run, update_run_info
from tasks.data.processed import ProcessedData
from tasks.evaluation.steps import evaluate_model
from tasks.pretraining.steps import pretrain_word_vectors
from tasks.serving.steps import export_model, promote_model, prune_runs
from tasks.training.checkpoint import Checkpoint
from tasks.training.steps import train_model
from tasks.training.train import TrainResult


@flow(name="imdb-pipeline", log_prints=True)
def pipeline(
    config: PipelineConfig = PipelineConfig(),
    run_id: str | None = None,
    promote: bool = False,
    keep_runs: int | None = None,
) -> dict:
    """The whole job. `run_id` names the run folder (default: a new timestamped one);
    `promote` makes the model the champion if it is at least as good on validation (nightly);
    `keep_runs` prunes older finished runs, never the champion's."""
    data = prepare_data(config)
    artifacts_dir = config.artifacts_dir.resolve()
    run_dir = create_run(artifacts_dir, config, data, run_id, flow_run.get_id())
    summary = finish_run(config, data, run_dir)
    if promote:
        model_dir = Path(summary["model_dir"])
        decision = promote_model(model_dir.parent, model_dir, data.split_path("validation"))
        summary["champion"] = asdict(decision)
    if keep_runs is not None:
        summary["pruned"] = prune_runs(artifacts_dir, keep_runs)
    return summary


def finish_run(
    config: PipelineConfig, data: ProcessedData, run_dir: Path, latest: Checkpoint | None = None
) -> dict:
    """Pretrain (unless a checkpoint holds the model already), train (continuing from `latest`,
    the run's newest valid checkpoint), evaluate, export."""
    try:
        vectors = pretrain_word_vectors(config, data) if latest is None else None
        result: TrainResult = train_model(config, data, run_dir, latest, vectors)
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
