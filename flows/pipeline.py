"""imdb-pipeline: fetch -> tokenize -> pretrain -> train -> evaluate -> export."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.prepare import prepare_data
from tasks.config import PipelineConfig
from tasks.core.lock import release_run
from tasks.core.notify import on_flow_failure
from tasks.core.runs import create_run, update_run_info
from tasks.data.processed import ProcessedData
from tasks.evaluation.steps import evaluate_model, report_run
from tasks.pretraining.steps import pretrain_word_vectors
from tasks.serving.steps import export_model
from tasks.tracking.steps import track_run
from tasks.training.checkpoint import Checkpoint
from tasks.training.steps import train_model
from tasks.training.train import TrainResult
from tasks.training.warm import WarmStart


@flow(name="imdb-pipeline", log_prints=True, on_failure=[on_flow_failure])
def pipeline(config: PipelineConfig = PipelineConfig(), run_id: str | None = None) -> dict:
    """The whole job on the archive. `run_id` names the run folder (default: a new timestamped
    one). The nightly (flows/nightly.py) adds new data, the champion decision and scoring."""
    data = prepare_data(config)
    run_dir = create_run(config.artifacts_dir.resolve(), config, data, run_id, flow_run.get_id())
    return finish_run(config, data, run_dir)


def finish_run(
    config: PipelineConfig,
    data: ProcessedData,
    run_dir: Path,
    latest: Checkpoint | None = None,
    base: ProcessedData | None = None,
    warm: WarmStart | None = None,
) -> dict:
    """Pretrain (unless a checkpoint holds the model already; `base`, the archive's own data
    version, may lend its word vectors), train (continuing from `latest`, the run's newest
    valid checkpoint, else from `warm`'s weights if given), evaluate, export."""
    try:
        vectors = pretrain_word_vectors(config, data, base) if latest is None else None
        result: TrainResult = train_model(config, data, run_dir, latest, vectors, warm)
        metrics = evaluate_model(config, data, result)
        model_dir = export_model(config, data, result, metrics)
        report_run(run_dir, model_dir)
    except BaseException:
        update_run_info(run_dir, status="failed")
        release_run(run_dir)
        raise
    update_run_info(run_dir, status="completed", model_dir=str(model_dir))
    track_run(config, run_dir)  # MLflow, when configured: never fails the run
    release_run(run_dir)  # this process writes nothing more into the run folder
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
