"""The phases of one MLflow sync of a run folder, in order: params and tags, epochs, artifacts,
the model and its registered version, the status. Each logs only what `state` (the run's
mlflow.json record) says is missing, and records each step as soon as the server has it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.tracking import mlflow_runs, run_view


@dataclass
class Step:
    """What every phase works with: the client, the MLflow run, the record and what was done."""

    client: Any
    run_id: str  # the MLflow run's
    state: dict[str, Any]
    save: Callable[[], None]
    logged: list[str]

    def done(self, what: str) -> None:
        self.save()
        self.logged.append(what)


def params_and_tags(step: Step, info: dict[str, Any]) -> None:
    from mlflow.entities import Param, RunTag

    if not step.state.get("params"):
        params = [Param(k, v) for k, v in run_view.params(info).items()]
        for start in range(0, len(params), 100):
            step.client.log_batch(step.run_id, params=params[start : start + 100])
        step.state["params"] = True
        step.done("params")
    tags = run_view.tags(info)
    if step.state.get("tags") != tags:
        step.client.log_batch(step.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        step.state["tags"] = tags
        step.done("tags")


def epochs(step: Step, history: Sequence[dict[str, Any]]) -> None:
    """The epochs of history.csv not logged yet, whole epochs per request (at most 1000
    metrics), recorded after each: an epoch is logged once even if the connection drops."""
    from mlflow.entities import Metric

    rows = [row for row in history if int(row["epoch"]) > step.state.get("epochs", 0)]
    batch: list[Metric] = []
    now = run_view.now_ms()
    for i, row in enumerate(rows):
        epoch = int(row["epoch"])
        batch += [
            Metric(key, float(value), now, epoch)
            for key, value in row.items()
            if key != "epoch" and value not in ("", None)
        ]
        following = len(rows[i + 1]) if i + 1 < len(rows) else 0
        if i + 1 == len(rows) or len(batch) + following > 1000:
            step.client.log_batch(step.run_id, metrics=batch)
            step.state["epochs"] = epoch
            step.save()
            batch = []
    if rows:
        step.logged.append(run_view.epochs_text([int(row["epoch"]) for row in rows]))


def artifacts(step: Step, files: Sequence[tuple[str, Path]]) -> None:
    """Each artifact whose checksum differs from the one logged last."""
    done = step.state.setdefault("artifacts", {})
    for name, path in files:
        sha = run_view.sha(path)
        if done.get(name) != sha:
            folder = str(Path(name).parent) if "/" in name else None
            step.client.log_artifact(step.run_id, str(path), folder)
            done[name] = sha
            step.done(name)


def model(step: Step, model_dir: Path, registered_model: str) -> str:
    """The export as a logged model, once, and its version of `registered_model`."""
    if not step.state.get("model"):
        step.state["model"] = mlflow_runs.log_model(
            step.client, step.run_id, step.state["experiment_id"], model_dir
        )
        step.done("model")
    versions = step.state.setdefault("versions", {})
    if registered_model not in versions:
        versions[registered_model] = mlflow_runs.register(
            step.client, registered_model, step.run_id, model_dir.name, step.state["model"]
        )
        step.done(f"{registered_model} version {versions[registered_model]}")
    return versions[registered_model]


def status(step: Step, status: str | None) -> None:
    """The MLflow run's status, from run.json's."""
    if not status or step.state.get("status") == status:
        return
    if status == "RUNNING":
        step.client.update_run(step.run_id, status=status)
    else:
        step.client.set_terminated(step.run_id, status=status)
    step.state["status"] = status
    step.done(f"status {status}")
