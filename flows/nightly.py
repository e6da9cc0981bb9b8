"""nightly: take in new labelled reviews, retrain only if something changed, promote only a
real improvement, then score the reviews waiting in the to-score folder with the champion.

    ingest (row checks, then batch checks: hold) -> data version
           -> unchanged? skip : (warm start?) train -> evaluate -> export
           -> decide -> score waiting reviews -> prune old runs
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.pipeline import finish_run
from flows.prepare import prepare_data
from tasks.config import PipelineConfig
from tasks.core.notify import on_flow_failure
from tasks.core.runs import create_run
from tasks.data.processed import ProcessedData
from tasks.evaluation.steps import report_run
from tasks.ingest.steps import batch_judge, ingest_incoming
from tasks.ingest.validate import reference_keys
from tasks.serving.champion import champion_scorer, current_champion
from tasks.serving.steps import (
    check_unchanged,
    plan_warm_start,
    promote_model,
    prune_runs,
    score_waiting_reviews,
)
from tasks.tracking.steps import track_champion
from tasks.training.warm import WARM_RECORD

HELDOUT = "validation"  # the split champion and challenger are compared on


# Named like the pipeline flow: `prefect deployment run 'imdb-pipeline/nightly'`, and the resume
# triggers that watch `imdb-pipeline` runs cover the nightly too.
@flow(name="imdb-pipeline", log_prints=True, on_failure=[on_flow_failure])
def nightly(
    config: PipelineConfig = PipelineConfig(),
    run_id: str | None = None,
    keep_runs: int | None = 5,
) -> dict:
    """One night: new data in, a challenger trained only when the data version or the settings
    differ from the champion's, the champion replaced only by a real improvement."""
    base = prepare_data(config)  # the archive alone: its test reviews are what must not leak
    artifacts_dir = config.artifacts_dir.resolve()
    judge = batch_judge(config, base, champion_scorer(artifacts_dir / "models"))
    report = ingest_incoming(config, partial(reference_keys, base), judge)
    data = prepare_data(config, report.accepted) if report.accepted else base
    summary: dict = {
        "flow": "nightly",
        "data_version": data.fingerprint,
        "incoming": [asdict(f) for f in report.files],
    }
    reason = check_unchanged(artifacts_dir / "models", data, config)
    if reason is not None:
        summary.update(trained=False, reason=reason)
        model_dir = None
    else:
        warm = plan_warm_start(artifacts_dir / "models", data, base, config)
        run_dir = create_run(
            artifacts_dir,
            config,
            data,
            run_id,
            flow_run.get_id(),
            nightly={"keep_runs": keep_runs},
            **({WARM_RECORD: warm.record()} if warm else {}),
        )
        trained = finish_run(config, data, run_dir, base=base, warm=warm)
        summary.update(trained, flow="nightly", trained=True, warm_start=warm is not None)
        model_dir = Path(summary["model_dir"])
    summary.update(conclude_night(config, data, model_dir, keep_runs, summary["incoming"]))
    return summary


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
        run_dir = artifacts_dir / "runs" / model_dir.name
        report_run(run_dir, model_dir, decision=out["champion"], incoming=incoming)
    track_champion(config)  # MLflow's champion alias follows the link (when tracking is on)
    champion = current_champion(models_dir)
    out["champion_model"] = str(champion) if champion else None
    out["scored"] = (
        score_waiting_reviews(config.to_score_path, config.data_dir / "scored", champion)
        if champion is not None
        else []
    )
    if keep_runs is not None:
        out["pruned"] = prune_runs(artifacts_dir, keep_runs)
    return out
