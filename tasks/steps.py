"""Prefect tasks: thin wrappers adding retries, caching, logging and artifacts to the pure logic."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger

from tasks import champion, checkpoint, evaluate, export, fetch, runs, tokenize, train
from tasks.config import PipelineConfig


@task(name="fetch_archive", retries=1, retry_delay_seconds=10)
def fetch_archive(source: str, raw_dir: Path, sha256: str | None) -> fetch.FetchedArchive:
    """Download (or locate) and verify the IMDB archive."""
    logger = get_run_logger()
    archive = fetch.fetch(source, raw_dir, sha256, log=logger.info)
    how = "downloaded" if archive.downloaded else "verified"
    logger.info(
        "%s %s (%s bytes, sha256 %s)", how, archive.path, f"{archive.size:,}", archive.sha256
    )
    return archive


# Keyed on the archive's checksum, not its path: the same bytes anywhere give the same data.
@task(
    name="tokenize_reviews",
    cache_policy=(INPUTS - "archive_path") + TASK_SOURCE,
    persist_result=True,
)
def tokenize_reviews(
    archive_path: Path, archive_sha256: str, processed_root: Path, params: tokenize.TokenizeParams
) -> tokenize.ProcessedData:
    """Tokenise the archive into parquet splits (cached across runs)."""
    logger = get_run_logger()
    data = tokenize.tokenize_archive(
        archive_path, archive_sha256, processed_root, params, progress=logger.info
    )
    publish_data_summary(data)
    return data


# One shard of reviews, as mapped on a Dask runner by `tokenize_archive(submit=submit_shard)`.
# Shards are not cached: the whole dataset is, as a folder keyed by its fingerprint.
@task(name="tokenize_shard", cache_policy=NO_CACHE, persist_result=False)
def tokenize_shard(bodies: pa.LargeBinaryArray) -> tokenize.TokenChunk:
    """Decode and tokenise one shard of review bodies."""
    return tokenize.decode_chunk(bodies.to_pylist())


def submit_shard(bodies: list[bytes]) -> PrefectFuture[tokenize.TokenChunk]:
    """`tokenize_shard.submit` on the flow's task runner, the bodies packed in one Arrow array:
    Prefect and Dask walk and hash a list argument item by item (seconds for 50,000 reviews)."""
    return tokenize_shard.submit(pa.array(bodies, pa.large_binary()))


def publish_data_summary(data: tokenize.ProcessedData) -> None:
    """Markdown artifact with the rows per split of the tokenised data."""
    rows = "\n".join(
        f"| {split} | {c['rows']:,} | {c['pos']:,} | {c['neg']:,} | {c['movies']:,} |"
        for split, c in data.counts.items()
    )
    create_markdown_artifact(
        key="tokenized-data",
        markdown=(
            f"## Tokenised data `{data.fingerprint}`\n\n`{data.path}`\n\n"
            "| split | rows | pos | neg | movies |\n|---|---|---|---|---|\n" + rows
        ),
        description="Rows per split of the tokenised IMDB data",
    )


# A retry finds the run's newest checkpoint and continues from it, never from scratch.
@task(name="train_model", retries=2, retry_delay_seconds=5)
def train_model(
    config: PipelineConfig, data: tokenize.ProcessedData, run_dir: Path
) -> train.TrainResult:
    """Fit the model, resuming from the run's newest valid checkpoint if it has one."""
    logger = get_run_logger()
    latest = checkpoint.find_latest_checkpoint(run_dir)
    if latest is not None:
        logger.info("continuing %s from checkpoint epoch %d", run_dir.name, latest.epoch)
    progress = create_progress_artifact(0.0, key="training-progress", description="epochs done")

    def on_epoch(done: int, total: int, metrics: dict[str, float]) -> None:
        update_progress_artifact(progress, 100.0 * done / total)
        logger.info(
            "epoch %d/%d: %s", done, total, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        )

    result = train.train(config, data, run_dir, resume=latest, on_epoch=on_epoch)
    update_progress_artifact(progress, 100.0)
    return result


@task(name="evaluate_model")
def evaluate_model(
    config: PipelineConfig, data: tokenize.ProcessedData, result: train.TrainResult
) -> dict:
    """Test metrics of the model selected on validation; metrics.json, plots and artifacts."""
    import keras

    best = checkpoint.find_best_checkpoint(result.run_dir)
    if best is None:
        raise RuntimeError(f"run {result.run_dir.name} has no valid best checkpoint to evaluate")
    model = keras.models.load_model(best.model_path, compile=False)
    metrics = evaluate.evaluate(
        model, data.split_path("test"), config.sequence_length, config.max_reviews, config.seed
    )
    metrics = {"selected_epoch": best.epoch, "split": "test", **metrics}
    evaluate.write_metrics(result.run_dir / "metrics.json", metrics)
    evaluate.plot_report(result.run_dir, result.history, metrics)
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


@task(name="export_model")
def export_model(
    config: PipelineConfig,
    data: tokenize.ProcessedData,
    result: train.TrainResult,
    metrics: dict,
) -> Path:
    """Export the selected model to artifacts/models/<run_id>/."""
    best = checkpoint.find_best_checkpoint(result.run_dir)
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
def promote_model(models_dir, model_dir, validation_parquet) -> champion.Decision:
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
def prune_runs(artifacts_dir, keep_runs: int) -> list[str]:
    """Delete old finished runs; the champion's run and the newest `keep_runs` are kept."""
    current = champion.current_champion(artifacts_dir / "models")
    removed = runs.prune_runs(artifacts_dir, keep_runs, {current.name} if current else set())
    if removed:
        get_run_logger().info("pruned %d old runs: %s", len(removed), ", ".join(removed))
    return removed
