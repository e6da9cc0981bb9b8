"""Runs: creating a run folder (`run_folder.RunFolder`), finding one, recording resumes, taking
over as its one writer, and retention."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tasks.config import PipelineConfig
from tasks.core import environment
from tasks.core.lock import Holder, RunLocked, acquire_run
from tasks.core.notify import notify, run_notify_url
from tasks.core.run_folder import RunError, RunFolder, runs_root

_FINISHED = ("completed", "abandoned")


class DataVersion(Protocol):
    """What a run records of its data (`tasks.data.processed.ProcessedData` is one)."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def incoming(self) -> tuple[str, ...]: ...


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def create_run(
    artifacts_dir: Path,
    config: PipelineConfig,
    data: DataVersion,
    run_id: str | None = None,
    flow_run_id: str | None = None,
    **extra: Any,
) -> Path:
    """A fresh run folder with run.json (plus the `extra` keys), its writer lock held by this
    process; refuses to reuse an existing run's folder."""
    run_id = run_id or new_run_id()
    if not run_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise RunError(f"run id {run_id!r} may hold only letters, digits, '-', '_' and '.'")
    run = RunFolder.under(artifacts_dir, run_id)
    run_dir = run.path
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError as exc:
        raise RunError(f"run folder {run_dir} already exists; runs never share one") from exc
    acquire_run(run_dir, flow_run_id)  # free: the folder is new; held until the run is done
    run.write_info(
        {
            "run_id": run_id,
            "status": "running",
            "config": config.model_dump(mode="json"),
            "config_digest": config.digest(),
            "data_fingerprint": data.fingerprint,
            "data_path": str(data.path),
            "data_incoming": list(data.incoming),
            "flow_run_ids": [flow_run_id] if flow_run_id else [],
            "automatic_resumes": 0,
            "resumes": [],
            "pid": os.getpid(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "environment": environment.describe(),
            **extra,
        },
    )
    return run_dir


def begin_resume(
    run_dir: Path,
    flow_run_id: str | None,
    from_epoch: int,
    *,
    automatic: bool = False,
    max_automatic_resumes: int = 3,
) -> dict[str, Any]:
    """Record in one write that flow run `flow_run_id` (this process) now continues the run from
    `from_epoch`: status running, its pid, the flow run id and a resume record; an `automatic`
    resume is also counted, and past `max_automatic_resumes` the run is marked abandoned and
    RunError says how to resume it by hand. Call it before any other work, so that a crash of
    the resume itself still maps back to this run folder."""
    run = RunFolder(run_dir)
    info = run.read_info()
    changes: dict[str, Any] = {}
    if automatic:
        attempts = int(info.get("automatic_resumes", 0)) + 1
        if attempts > max_automatic_resumes:
            run.update_info(status="abandoned")
            why = (
                f"run {run_dir.name} was resumed automatically {attempts - 1} times "
                f"(limit {max_automatic_resumes}); leaving it failed. Resume it by hand with "
                f"`imdb-pipeline resume --run-id {run_dir.name}` once the cause is fixed"
            )
            notify(
                run_notify_url(info),
                "abandoned",
                why,
                flow="resume",
                run_id=run_dir.name,
                flow_run_id=flow_run_id,
            )
            raise RunError(why)
        changes["automatic_resumes"] = attempts
    return run.update_info(
        **changes,
        status="running",
        pid=os.getpid(),
        flow_run_ids=[*info.get("flow_run_ids", []), flow_run_id],
        resumes=[*info.get("resumes", []), {"flow_run_id": flow_run_id, "from_epoch": from_epoch}],
    )


def list_runs(artifacts_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, run.json) of every run, oldest first (by creation time, then id)."""
    runs = []
    root = runs_root(artifacts_dir)
    for path in root.iterdir() if root.is_dir() else []:
        try:
            runs.append((path, RunFolder(path).read_info()))
        except (RunError, ValueError):
            continue
    return sorted(runs, key=lambda r: (r[1].get("created_at", ""), r[0].name))


def find_run(
    artifacts_dir: Path, run_id: str | None = None, flow_run_id: str | None = None
) -> Path:
    """The run named by id, or the one a flow run worked on, or the newest unfinished run."""
    runs = list_runs(artifacts_dir)
    if run_id:
        run = RunFolder.under(artifacts_dir, run_id)
        if not run.is_run():
            raise RunError(f"no run {run_id!r} under {run.path.parent}")
        return run.path
    if flow_run_id:
        for path, info in reversed(runs):
            if flow_run_id in info.get("flow_run_ids", []):
                return path
        raise RunError(f"no run folder records flow run {flow_run_id}")
    # Abandoned runs gave up after their automatic resumes: only an explicit run_id revives one.
    unfinished = [p for p, info in runs if info.get("status") not in _FINISHED]
    if not unfinished:
        raise RunError(f"no unfinished run under {runs_root(artifacts_dir)}")
    return unfinished[-1]


def prune_runs(artifacts_dir: Path, keep: int, protect: set[str]) -> list[str]:
    """Delete all but the newest `keep` finished runs (and their models); never `protect`."""
    # Unfinished runs may still be resumed: never pruned, and they take no `keep` place.
    finished = [p for p, info in list_runs(artifacts_dir) if info.get("status") in _FINISHED]
    newest = {p.name for p in finished[-keep:]} if keep > 0 else set()
    removed = []
    for path in finished:
        if path.name in newest or path.name in protect:
            continue
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(artifacts_dir / "models" / path.name, ignore_errors=True)
        removed.append(path.name)
    return removed


def take_over(
    run_dir: Path,
    flow_run_id: str | None,
    automatic: bool,
    wait_s: float,
    log: Callable[[str], None],
    warn: Callable[[str], None],
) -> bool:
    """Become the run's one writer: True once this process holds its lock. An automatic resume
    waits up to `wait_s` for a live writer and returns False if it still lives (the
    orchestrator was wrong about a crash); a manual one raises RunLocked's message as RunError
    at once, so a person sees who holds the run."""

    def waiting(holder: Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        log(f"run {run_dir.name} is still written by {who}: waiting up to {wait_s:.0f} s")

    try:
        previous = acquire_run(
            run_dir, flow_run_id, wait_s=wait_s if automatic else 0.0, on_wait=waiting
        )
    except RunLocked as exc:
        if not automatic:
            raise RunError(f"{exc}: not resuming it (stop that process first)") from exc
        warn(f"{exc} and did not finish within {wait_s:.0f} s: leaving it to that writer")
        return False
    if previous is not None and previous.pid != os.getpid():
        log(f"run {run_dir.name}: its last writer, {previous.describe()}, no longer holds it")
    return True
