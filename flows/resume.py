"""resume: continue a run from its newest valid checkpoint, then evaluate and export."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows.pipeline import finish_run
from flows.prepare import prepare_data
from tasks.checkpoint import Checkpoint, find_latest_checkpoint
from tasks.config import PipelineConfig
from tasks.runs import RunError, find_run, read_run_info, update_run_info

DEFAULT_ARTIFACTS = Path("artifacts")


@flow(name="resume", log_prints=True)
def resume(
    run_id: str | None = None,
    flow_run_id: str | None = None,
    artifacts_dir: Path | None = None,
    data_dir: Path | None = None,
    automatic: bool = False,
    max_automatic_resumes: int = 3,
) -> dict:
    """Continue run `run_id`, or the run that flow run `flow_run_id` worked on, or the newest
    unfinished run; `automatic` marks a resume started by a trigger (bounded by the limit)."""
    logger = get_run_logger()
    if artifacts_dir is None:
        artifacts_dir = artifacts_dir_of(flow_run_id) if flow_run_id else DEFAULT_ARTIFACTS
    run_dir = find_run(artifacts_dir.resolve(), run_id, flow_run_id)
    info = read_run_info(run_dir)
    if info.get("status") == "completed":
        logger.info("run %s already completed; nothing to resume", run_dir.name)
        return {
            "flow": "resume",
            "run_id": run_dir.name,
            "status": "completed",
            "model_dir": info.get("model_dir"),
        }
    if automatic:
        attempts = int(info.get("automatic_resumes", 0)) + 1
        if attempts > max_automatic_resumes:
            update_run_info(run_dir, status="abandoned")
            raise RunError(
                f"run {run_dir.name} was resumed automatically {attempts - 1} times "
                f"(limit {max_automatic_resumes}); leaving it failed. Resume it by hand with "
                f"`imdb-pipeline resume --run-id {run_dir.name}` once the cause is fixed"
            )
        info = update_run_info(run_dir, automatic_resumes=attempts)
    # Recorded first, so a crash of this very run still maps back to the run folder.
    info = update_run_info(
        run_dir,
        status="running",
        pid=os.getpid(),
        flow_run_ids=[*info.get("flow_run_ids", []), flow_run.get_id()],
    )
    overrides = {"artifacts_dir": artifacts_dir}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        config = PipelineConfig(**{**info["config"], **overrides})
        data = prepare_data(config)
        latest = find_latest_checkpoint(run_dir)
        check_compatible(run_dir, info, config, data.fingerprint, latest)
    except BaseException:
        update_run_info(run_dir, status="failed")  # refused or crashed: nothing runs it now
        raise
    if latest is None:
        logger.warning(
            "run %s has no valid checkpoint yet: training starts at epoch 0", run_dir.name
        )
    elif latest.epoch >= config.epochs or latest.state().get("stopped_early"):
        logger.info(
            "run %s finished training at epoch %d: evaluating and exporting only",
            run_dir.name,
            latest.epoch,
        )
    else:
        logger.info("resuming run %s from epoch %d", run_dir.name, latest.epoch)
    start = latest.epoch if latest else 0
    info = update_run_info(
        run_dir,
        resumes=[*info.get("resumes", []), {"flow_run_id": flow_run.get_id(), "from_epoch": start}],
    )
    summary = finish_run(config, data, run_dir)
    return {**summary, "flow": "resume", "resumed_from_epoch": start}


def artifacts_dir_of(flow_run_id: str) -> Path:
    """The artifacts folder a pipeline, nightly or resume flow run was started with."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        params = client.read_flow_run(flow_run_id).parameters
    if params.get("artifacts_dir"):
        return Path(params["artifacts_dir"])
    config = params.get("config") or {}
    return Path(config.get("artifacts_dir") or DEFAULT_ARTIFACTS)


def check_compatible(
    run_dir: Path, info: dict, config: PipelineConfig, fingerprint: str, latest: Checkpoint | None
) -> None:
    """Refuse to continue a run with other settings or data than it started with."""
    if info.get("data_fingerprint") != fingerprint:
        raise RunError(
            f"run {run_dir.name} was trained on data {info.get('data_fingerprint')}, but the "
            f"archive and settings now give {fingerprint}: start a new run instead"
        )
    if latest is None:
        return
    written_with = latest.manifest.get("config_digest")
    if written_with != config.digest():
        raise RunError(
            f"checkpoint {latest.path} was written with config {written_with}, "
            f"run.json now gives {config.digest()}: the run's settings were changed"
        )
    trained_on = latest.manifest.get("data_fingerprint")
    if trained_on != fingerprint:
        raise RunError(
            f"checkpoint {latest.path} was trained on data {trained_on}, not {fingerprint}"
        )
