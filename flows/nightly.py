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

from flows.shared import conclude_night, finish_run, prepare_data
from tasks.config import PipelineConfig
from tasks.core.notify import on_flow_failure
from tasks.core.runs import create_run
from tasks.ingest.steps import batch_judge, ingest_incoming
from tasks.ingest.validate import reference_keys
from tasks.serving.champion import champion_scorer
from tasks.serving.steps import (
    check_unchanged,
    plan_warm_start,
)
from tasks.training.warm import WARM_RECORD


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
