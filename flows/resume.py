"""resume: become the run's one writer, continue it from its newest valid checkpoint, then
evaluate and export (and, for a nightly's run, conclude the night: decision, scoring, pruning)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows.shared import conclude_night, finish_run, prepare_data
from tasks.config import PipelineConfig
from tasks.core import environment
from tasks.core.lock import release_run
from tasks.core.notify import notify, run_notify_url
from tasks.core.run_folder import RunFolder
from tasks.core.runs import begin_resume, find_run, take_over
from tasks.data.accepted import accepted_files
from tasks.training.checkpoint import Checkpoint, find_latest_checkpoint
from tasks.training.resuming import check_compatible
from tasks.training.warm import WARM_RECORD, WarmStart

DEFAULT_ARTIFACTS = Path("artifacts")


@flow(name="resume", log_prints=True)
def resume(
    run_id: str | None = None,
    flow_run_id: str | None = None,
    artifacts_dir: Path | None = None,
    data_dir: Path | None = None,
    automatic: bool = False,
    max_automatic_resumes: int = 3,
    wait_for_writer_s: float = 600.0,
) -> dict:
    """Continue run `run_id`, or the run that flow run `flow_run_id` worked on, or the newest
    unfinished run; `automatic` marks a resume started by a trigger (bounded by the limit).

    One writer per run: if the run's own process still lives (a "crash" the orchestrator
    reported wrongly), an automatic resume waits up to `wait_for_writer_s` for it, then does
    nothing if it finished or still runs, and continues if it died; a manual resume refuses at
    once, naming the process that holds the run."""
    if artifacts_dir is None:
        artifacts_dir = artifacts_dir_of(flow_run_id) if flow_run_id else DEFAULT_ARTIFACTS
    run_dir = find_run(artifacts_dir.resolve(), run_id, flow_run_id)
    if automatic and flow_run_id:
        report_crash(run_dir, flow_run_id)
    logger = get_run_logger()
    taken = take_over(
        run_dir, flow_run.get_id(), automatic, wait_for_writer_s, logger.info, logger.warning
    )
    if not taken:
        return {"flow": "resume", "run_id": run_dir.name, "status": "running elsewhere"}
    try:
        return _resume(
            run_dir, artifacts_dir, data_dir, automatic=automatic, limit=max_automatic_resumes
        )
    finally:
        release_run(run_dir)


def report_crash(run_dir: Path, flow_run_id: str) -> None:
    """A SIGKILLed flow run reports nothing itself: the automatic resume that its Crashed event
    starts sends the run's `failed` alert (a Failed run's own hook has sent it already)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except Exception as exc:  # the alert must not stop the resume
        get_run_logger().warning("state of flow run %s not read (%s): no alert", flow_run_id, exc)
        return
    if state is None or state.type != StateType.CRASHED:
        return
    notify(
        run_notify_url(RunFolder(run_dir).read_info()),
        "failed",
        f"flow run {flow_run_id} crashed ({state.message}); resuming it automatically",
        flow="imdb-pipeline",
        run_id=run_dir.name,
        flow_run_id=flow_run_id,
        state=state.name,
    )


def _resume(
    run_dir: Path, artifacts_dir: Path, data_dir: Path | None, *, automatic: bool, limit: int
) -> dict:
    """The resume itself, by the run's writer (see `resume`)."""
    # Read under the lock: a writer we waited for may have finished.
    info = RunFolder(run_dir).read_info()
    completed = info.get("status") == "completed"
    if completed and "nightly" not in info:
        get_run_logger().info("run %s already completed; nothing to resume", run_dir.name)
        return {
            "flow": "resume",
            "run_id": run_dir.name,
            "status": "completed",
            "model_dir": info.get("model_dir"),
        }
    if completed:  # a nightly's run trained and exported: only the night's end may be missing
        info = RunFolder(run_dir).update_info(
            flow_run_ids=[*info["flow_run_ids"], flow_run.get_id()]
        )
        latest, start = None, None
    else:
        latest = find_latest_checkpoint(run_dir)  # verified once; training continues from it
        start = latest.epoch if latest else 0
        info = begin_resume(
            run_dir,
            flow_run.get_id(),
            start,
            automatic=automatic,
            max_automatic_resumes=limit,
        )
    try:
        overrides = {
            "artifacts_dir": artifacts_dir,
            "data_dir": data_dir or info["config"]["data_dir"],
        }
        config = PipelineConfig(**{**info["config"], **overrides})
        incoming = accepted_files(config.data_dir.resolve(), info.get("data_incoming", ()))
        data = prepare_data(config, incoming)
        check_compatible(run_dir, info, config, data.fingerprint, latest)
    except BaseException:
        if not completed:
            # Refused or crashed: nothing runs it now.
            RunFolder(run_dir).update_info(status="failed")
        raise
    if completed:
        summary = {"run_id": run_dir.name, "run_dir": str(run_dir), "model_dir": info["model_dir"]}
    else:
        warn_if_environment_changed(run_dir.name, info)
        warm = WarmStart.from_record(info.get(WARM_RECORD))  # a warm start keeps its start
        log_resume_point(run_dir, warm.epochs if warm else config.epochs, latest)
        # A night's run restarted before its first checkpoint carries the archive's word
        # vectors over as the night itself would have: the same model as if never stopped.
        base = prepare_data(config) if incoming and latest is None else None
        summary = finish_run(config, data, run_dir, latest, base, warm)
    if "nightly" in info:
        model_dir = Path(summary["model_dir"])
        summary.update(conclude_night(config, data, model_dir, info["nightly"].get("keep_runs")))
    return {**summary, "flow": "resume", "resumed_from_epoch": start}


def warn_if_environment_changed(run_id: str, info: dict) -> None:
    """A resume under other package versions, lock, code or platform continues the run, but the
    result may differ from an uninterrupted run's: say what differs."""
    changed = environment.differences(info.get("environment"), environment.describe())
    if changed:
        get_run_logger().warning(
            "run %s continues in another environment than it started in (%s): the resumed "
            "run is no longer bit-identical to an uninterrupted one",
            run_id,
            "; ".join(changed),
        )


def log_resume_point(run_dir: Path, epochs: int, latest: Checkpoint | None) -> None:
    """Say where training continues (of `epochs`): from scratch, from `latest`, or not at all."""
    logger = get_run_logger()
    if latest is None:
        logger.warning(
            "run %s has no valid checkpoint yet: training starts at epoch 0", run_dir.name
        )
    elif latest.epoch >= epochs or latest.state().get("stopped_early"):
        logger.info(
            "run %s finished training at epoch %d: evaluating and exporting only",
            run_dir.name,
            latest.epoch,
        )
    else:
        logger.info("resuming run %s from epoch %d", run_dir.name, latest.epoch)


def artifacts_dir_of(flow_run_id: str) -> Path:
    """The artifacts folder a pipeline, nightly or resume flow run was started with."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        params = client.read_flow_run(flow_run_id).parameters
    if params.get("artifacts_dir"):
        return Path(params["artifacts_dir"])
    config = params.get("config") or {}
    return Path(config.get("artifacts_dir") or DEFAULT_ARTIFACTS)
