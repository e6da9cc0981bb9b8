"""Prefect tasks of the serving stage: export, champion promotion, run retention and batch
scoring."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from tasks.config import PipelineConfig
from tasks.core import runs
from tasks.core.notify import notify
from tasks.data.processed import ProcessedData
from tasks.pretraining.word2vec import reusable_base
from tasks.serving import champion, export, promotion, registry, score
from tasks.training.train import TrainResult
from tasks.training.warm import WarmStart


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
        result.warm_started_from,
    )
    get_run_logger().info("exported %s", dest)
    return dest


@task(name="promote_model")
def promote_model(
    models_dir: Path,
    model_dir: Path,
    heldout_parquet: Path,
    alpha: float,
    margin: float,
    notify_url: str | None = None,
) -> promotion.Decision:
    """Promote the new model only if it is really better (see `promotion.promote`); the decision
    is recorded once in the registry and published as an artifact, and a promotion is an alert
    to `notify_url` once, when it is carried out (not again when a resumed night reads it)."""
    done_before = registry.find_event(models_dir, registry.PROMOTION, model_dir.name) is not None
    decision = promotion.promote(models_dir, model_dir, heldout_parquet, alpha, margin)
    if decision.promoted and not done_before:
        notify(
            notify_url,
            "promoted",
            f"{decision.challenger} is the champion (was {decision.champion}): {decision.reason}",
            flow="nightly",
            run_id=decision.challenger,
            flow_run_id=flow_run.get_id(),
            new_model=decision.challenger,
            old_model=decision.champion,
        )
    old = (
        f"`{decision.champion}`: {decision.champion_accuracy:.4f} (data `{decision.champion_data}`)"
        if decision.champion
        else "none yet"
    )
    p = "—" if decision.p_value is None else f"{decision.p_value:.3g}"
    create_markdown_artifact(
        key="champion-decision",
        markdown=(
            f"## {'Promoted' if decision.promoted else 'Kept the champion'}\n\n"
            f"{decision.reason}\n\n"
            f"Accuracy on the same {decision.examples:,} held-out reviews:\n\n"
            f"- challenger `{decision.challenger}`: {decision.challenger_accuracy:.4f} "
            f"(data `{decision.challenger_data}`)\n"
            f"- champion {old}\n"
            f"- McNemar: {decision.challenger_only} reviews only the challenger got right, "
            f"{decision.champion_only} only the champion; p = {p} (alpha {decision.alpha})\n"
        ),
        description="Nightly champion/challenger decision",
    )
    get_run_logger().info("champion decision: %s", asdict(decision))
    return decision


@task(name="check_unchanged")
def plan_warm_start(
    models_dir: Path, data: ProcessedData, base: ProcessedData, config: PipelineConfig
) -> WarmStart | None:
    """The champion's weights to start tonight's challenger from, or None (`champion.warm_start`
    says when); the log says which, and why."""
    reuse = reusable_base(data, base, config)  # the rule that keeps the archive's word vectors
    warm, reason = champion.warm_start(models_dir, config, reuse[1] if reuse else None)
    get_run_logger().info(reason)
    return warm


def check_unchanged(models_dir: Path, data: ProcessedData, config: PipelineConfig) -> str | None:
    """Why the nightly need not train (see `champion.unchanged_reason`), logged and published
    as an artifact; None when there is something new to learn."""
    reason = champion.unchanged_reason(models_dir, data.fingerprint, config.digest())
    logger = get_run_logger()
    if reason is None:
        logger.info(
            "data version %s / config %s is new: training a challenger",
            data.fingerprint,
            config.digest(),
        )
        return None
    logger.info("skipping training: %s", reason)
    create_markdown_artifact(
        key="nightly-skipped",
        markdown=f"## Training skipped\n\n{reason}\n",
        description="Why the nightly trained nothing",
    )
    return reason


@task(name="prune_runs")
def prune_runs(artifacts_dir: Path, keep_runs: int) -> list[str]:
    """Delete old finished runs; the champion's run and the newest `keep_runs` are kept."""
    current = champion.current_champion(artifacts_dir / "models")
    removed = runs.prune_runs(artifacts_dir, keep_runs, {current.name} if current else set())
    if removed:
        get_run_logger().info("pruned %d old runs: %s", len(removed), ", ".join(removed))
    return removed


@task(name="score_reviews")
def score_reviews(input: Path, model: str | Path, output: Path | None, artifacts_dir: Path) -> dict:
    """Score a review file (or every review file in a folder) to parquet with one model load.

    Default output: `<input without suffix>.scored.parquet` beside a file, `<folder>-scored/`
    beside a folder.
    """
    summary = score.score_input(input, model, output, artifacts_dir)
    _publish_scores(summary["files"], summary["model_id"], f"Reviews scored from {input}")
    get_run_logger().info(score.describe(summary))  # the line the CLI prints too
    return summary


@task(name="score_waiting")
def score_waiting_reviews(to_score: Path, scored: Path, model_dir: Path) -> list[dict]:
    """Score the review files waiting in `to_score` into `scored/` and move them to done/."""
    logger = get_run_logger()
    if not (to_score.is_dir() and score.input_files(to_score)):
        logger.info("no reviews waiting in %s", to_score)
        return []
    scoring = score.resolve_model(Path(model_dir), model_dir.parent)  # a path: used as given
    results = score.score_waiting(to_score, scored, scoring, log=logger.info)
    _publish_scores(results, scoring.run_id, f"Reviews waiting in {to_score}")
    return results


def _publish_scores(files: list[dict], model_id: str, description: str) -> None:
    """The `scored-reviews` table: one row per file (an `error` column if any failed)."""
    failed = any("error" in f for f in files)
    create_table_artifact(
        key="scored-reviews",
        table=[
            {
                "file": Path(f["input"]).name,
                "rows": f["rows"],
                "positive": f.get("positive", 0),
                "model": model_id,
                "seconds": f.get("seconds", 0.0),
                **({"error": f.get("error", "")} if failed else {}),
            }
            for f in files
        ],
        description=description,
    )
