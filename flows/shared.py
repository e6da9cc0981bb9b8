"""The pieces the flows share: preparing a data version, finishing a run (word vectors ->
train -> evaluate -> export -> report), concluding a night (decide -> score -> prune). Plain
functions called inside a flow: their steps are the stages' Prefect tasks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_client
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.config import PipelineConfig
from tasks.core.lock import release_run
from tasks.core.run_folder import RunFolder
from tasks.data.accepted import AcceptedFile
from tasks.data.processed import ProcessedData, TokenizeParams
from tasks.data.steps import fetch_archive, publish_data_summary, submit_shard, tokenize_reviews
from tasks.data.tokenize import tokenize_archive
from tasks.evaluation.steps import evaluate_model, report_run
from tasks.layout import DataLayout
from tasks.pretraining.steps import pretrain_word_vectors
from tasks.serving.champion import current_champion
from tasks.serving.exported import ExportedModel
from tasks.serving.steps import export_model, promote_model, prune_runs, score_waiting_reviews
from tasks.tracking.steps import epoch_tracker, track_champion, track_run
from tasks.training.checkpoint import Checkpoint
from tasks.training.steps import train_model
from tasks.training.train import TrainResult
from tasks.training.warm import WarmStart

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

HELDOUT = "validation"  # the split champion and challenger are compared on


def prepare_data(config: PipelineConfig, incoming: Sequence[AcceptedFile] = ()) -> ProcessedData:
    """Fetch, then tokenise the archive plus the `incoming` accepted review files. The data
    folder, named by its fingerprint, is the one cache: an intact one is reused, a missing or
    damaged one is (re)built."""
    runner = dask_task_runner(config) if config.task_runner == "dask" else None  # fails fast
    data_dir = config.data_dir.resolve()
    layout = DataLayout(data_dir)
    archive = fetch_archive(config.source, layout.raw, config.expected_sha256())
    params = TokenizeParams.from_config(config)
    if runner is not None:
        tokenize_sharded = tokenize_on_dask.with_options(task_runner=runner)
        return tokenize_sharded(archive.path, archive.sha256, layout.processed, params, incoming)
    return tokenize_reviews(archive.path, archive.sha256, layout.processed, params, incoming)


def dask_task_runner(config: PipelineConfig) -> DaskTaskRunner:
    """A DaskTaskRunner on `config.dask_address`, or on a local cluster of worker processes."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise RuntimeError(
            "task_runner 'dask' needs prefect-dask and dask.distributed: "
            "pip install 'imdb-pipeline[dask]'"
        ) from exc
    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    local = {"n_workers": config.dask_workers, "processes": True, "threads_per_worker": 1}
    return DaskTaskRunner(cluster_kwargs=local)


@flow(name="tokenize-on-dask")
def tokenize_on_dask(
    archive_path: Path,
    archive_sha256: str,
    processed_root: Path,
    params: TokenizeParams,
    incoming: Sequence[AcceptedFile] = (),
) -> ProcessedData:
    """Tokenise with the reviews' shards mapped as `tokenize_shard` tasks on the task runner."""
    with _workers_report_here():
        data = tokenize_archive(
            archive_path,
            archive_sha256,
            processed_root,
            params,
            progress=get_run_logger().info,
            submit=submit_shard,
            warn=get_run_logger().warning,
            incoming=incoming,
        )
    publish_data_summary(data)
    return data


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Send the Prefect API this process uses along with the tasks submitted to Dask.

    Without PREFECT_API_URL this process runs a temporary local Prefect server; each Dask
    worker would otherwise start one of its own (seconds each, and its records lost).
    """
    if PREFECT_API_URL.value():
        yield
        return
    url = str(get_client(sync_client=True).api_url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


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
        # MLflow, when configured, logs each epoch as training goes (None: tracking off).
        track = epoch_tracker(config, run_dir, get_run_logger().warning)
        result: TrainResult = train_model(config, data, run_dir, latest, vectors, warm, track)
        metrics = evaluate_model(config, data, result)
        model_dir = export_model(config, data, result, metrics)
        report_run(run_dir, ExportedModel(model_dir).report)
    except BaseException:
        RunFolder(run_dir).update_info(status="failed")
        release_run(run_dir)
        raise
    RunFolder(run_dir).update_info(status="completed", model_dir=str(model_dir))
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


def conclude_night(
    config: PipelineConfig,
    data: ProcessedData,
    model_dir: Path | None,
    keep_runs: int | None,
    incoming: list[dict] | None = None,
) -> dict:
    """The night's end, also run by a resume of a nightly's run: decide about the new model
    (once: a decision already recorded is reused) and add it to the run's report (with the
    night's `incoming` files, when known), score the waiting reviews with the champion this
    leaves, prune old runs."""
    artifacts_dir = config.artifacts_dir.resolve()
    models_dir = artifacts_dir / "models"
    out: dict = {}
    if model_dir is not None:
        decision = promote_model(
            models_dir,
            model_dir,
            data.split_path(HELDOUT),
            config.promotion_alpha,
            config.promotion_margin,
            config.notify_url,
        )
        out["champion"] = asdict(decision)
        run_dir = RunFolder.under(artifacts_dir, model_dir.name).path
        report_run(
            run_dir, ExportedModel(model_dir).report, decision=out["champion"], incoming=incoming
        )
    track_champion(config)  # MLflow's champion alias follows the link (when tracking is on)
    champion = current_champion(models_dir)
    out["champion_model"] = str(champion) if champion else None
    out["scored"] = (
        score_waiting_reviews(config.to_score_path, DataLayout(config.data_dir).scored, champion)
        if champion is not None
        else []
    )
    if keep_runs is not None:
        out["pruned"] = prune_runs(artifacts_dir, keep_runs)
    return out
