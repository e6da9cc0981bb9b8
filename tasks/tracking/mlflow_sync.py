"""MLflow tracking as a sync from the run folder, idempotent and resumable.

The run folder already holds everything a run has to show: run.json (config, flow run ids, data
fingerprint, config digest, status), history.csv (rewritten after every epoch), metrics.json and
the plots after evaluation, and artifacts/models/<run_id>/ after export. `sync_run` logs what of
that the tracking server does not have yet, and records what it logged in `<run>/mlflow.json`
(per tracking URI, written atomically after every step): the MLflow run id, whether the params
are logged, the tags, the epochs logged, each artifact's checksum, the logged model and its
registered version. So a sync can stop anywhere (a crash, a server outage) and the next one
continues where it stopped: one MLflow run per run, each epoch logged once and in order, one
model version per exported model. `sync_champion` points the registered model's `champion`
alias at the version of the run `artifacts/models/champion` names.

MLflow is imported inside these functions only: nothing imports it while tracking is off.
Requests get short timeouts and at most one retry (unless the environment sets them), so an
unreachable server costs seconds, not the minutes of MLflow's defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_write_text
from tasks.core.lock import exclusive
from tasks.core.run_folder import RunFolder
from tasks.core.runs import list_runs
from tasks.tracking import mlflow_runs, phases, run_view
from tasks.tracking.run_view import STATUS

REGISTERED_MODEL = "imdb-sentiment"
CHAMPION_ALIAS = "champion"
# Set during a sync where the environment does not set them: an outage costs seconds (connection
# refused fails at once, a silent host after 2 x 5 s), and MLflow prints no run links to stdout
# (where `--json` summaries go; `SyncResult.url` has the link).
SYNC_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


@dataclass
class SyncResult:
    """What one `sync_run` logged (`logged` is empty when the server was up to date)."""

    run_id: str
    mlflow_run_id: str
    created: bool = False
    logged: list[str] = field(default_factory=list)
    model_version: str | None = None
    url: str = ""  # the run's page in the MLflow UI

    def describe(self) -> str:
        what = ", ".join(self.logged) if self.logged else "nothing new"
        return f"run {self.run_id} ({self.url or self.mlflow_run_id}): {what}"


def normalise_uri(uri: str) -> str:
    return uri.strip().rstrip("/")


def read_state(run_dir: Path, tracking_uri: str) -> dict[str, Any]:
    """What `run_dir` records as logged to `tracking_uri` (empty if nothing)."""
    return dict(run_view.read_all(run_dir).get("servers", {}).get(normalise_uri(tracking_uri), {}))


def pending(run_dir: Path, models_dir: Path, tracking_uri: str) -> list[str]:
    """What the run folder holds that `tracking_uri` has not been sent yet, from the folder and
    its mlflow.json alone (no request): for the warning of a failed sync."""
    state = read_state(run_dir, tracking_uri)
    out = [] if state.get("run_id") else ["the run"]
    if not state.get("params"):
        out.append("params")
    epochs = [int(row["epoch"]) for row in RunFolder(run_dir).read_history()]
    new = [e for e in epochs if e > state.get("epochs", 0)]
    if new:
        out.append(run_view.epochs_text(new))
    done = state.get("artifacts", {})
    out += [
        name
        for name, path in run_view.artifacts(run_dir, models_dir)
        if done.get(name) != run_view.sha(path)
    ]
    if run_view.export_of(run_dir, models_dir) is not None and not state.get("versions"):
        out.append("the model and its registered version")
    return out


def sync_run(
    run_dir: Path,
    models_dir: Path,
    tracking_uri: str,
    registered_model: str = REGISTERED_MODEL,
) -> SyncResult:
    """Log to `tracking_uri` what `run_dir` (and its export in `models_dir`) holds that was not
    logged yet. Raises on any tracking failure; what was logged before it stays recorded, and
    the run is marked outstanding for `sync_outstanding`."""
    uri = normalise_uri(tracking_uri)
    # One sync of a run folder at a time: the training's per-epoch sync, the final one and
    # `imdb-pipeline mlflow-sync` may meet.
    run = RunFolder(run_dir)
    with exclusive(run.mlflow_lock), _sync_environment():
        everything = run_view.read_all(run_dir)
        servers = everything.setdefault("servers", {})
        state = servers.setdefault(uri, {})

        def save() -> None:
            atomic_write_text(run.mlflow_state, json.dumps(everything, indent=2))

        try:
            result = _sync(run_dir, models_dir, uri, registered_model, state, save)
        except BaseException:
            state["outstanding"] = True
            save()
            raise
        if state.get("outstanding", True):
            state["outstanding"] = False
            save()
        return result


def sync_champion(
    models_dir: Path, tracking_uri: str, registered_model: str = REGISTERED_MODEL
) -> dict[str, Any] | None:
    """Point `registered_model`'s `champion` alias at the version of the run that
    `models_dir/champion` names (its run is synced first, so the version exists). None when
    there is no champion; else the champion's run id, version and whether the alias moved."""
    from tasks.serving.champion import current_champion

    champion = current_champion(models_dir)
    if champion is None:
        return None
    run = RunFolder.under(models_dir.parent, champion.name)
    if not run.is_run():
        raise LookupError(f"champion {champion.name} has no run folder under {run.path.parent}")
    version = sync_run(run.path, models_dir, tracking_uri, registered_model).model_version
    if version is None:
        raise LookupError(f"champion {champion.name} has no registered model version")
    with _sync_environment():
        from mlflow import MlflowClient

        uri = normalise_uri(tracking_uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        current = client.get_registered_model(registered_model).aliases.get(CHAMPION_ALIAS)
        moved = str(current) != str(version)
        if moved:
            client.set_registered_model_alias(registered_model, CHAMPION_ALIAS, version)
    return {"run_id": champion.name, "version": str(version), "moved": moved}


def sync_outstanding(
    artifacts_dir: Path,
    tracking_uri: str,
    registered_model: str = REGISTERED_MODEL,
    skip: tuple[str, ...] = (),
) -> list[SyncResult]:
    """Sync the runs whose earlier sync to `tracking_uri` failed (marked outstanding in their
    mlflow.json), except those named in `skip`; stops at the first failure (the server is
    still unreachable) and raises it."""
    results = []
    for run_dir, _ in list_runs(artifacts_dir):
        if run_dir.name in skip or not read_state(run_dir, tracking_uri).get("outstanding"):
            continue
        results.append(sync_run(run_dir, artifacts_dir / "models", tracking_uri, registered_model))
    return results


def sync_all(
    artifacts_dir: Path,
    tracking_uri: str | None = None,
    registered_model: str | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every run under `artifacts_dir/runs`, then the champion alias (`imdb-pipeline
    mlflow-sync`). Each run goes to `tracking_uri`, else the URI its config names, else
    MLFLOW_TRACKING_URI; to `registered_model`, else its config's. Failures are collected, not
    raised: the summary's `errors` names them."""
    env_uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    models_dir = artifacts_dir / "models"
    summary: dict[str, Any] = {"runs": [], "champion": None, "errors": []}
    for run_dir, info in list_runs(artifacts_dir):
        config = info.get("config") or {}
        uri = tracking_uri or config.get("mlflow_tracking_uri") or env_uri
        name = registered_model or config.get("mlflow_registered_model") or REGISTERED_MODEL
        if uri is None:
            summary["errors"].append(
                f"run {run_dir.name}: no tracking URI (--tracking-uri or MLFLOW_TRACKING_URI)"
            )
            continue
        try:
            result = sync_run(run_dir, models_dir, uri, name)
        except Exception as exc:  # one run's failure does not stop the others
            summary["errors"].append(f"run {run_dir.name}: {failure_reason(exc)}")
            progress(f"run {run_dir.name}: not logged to {uri}: {failure_reason(exc)}")
            continue
        summary["runs"].append({"tracking_uri": uri, "registered_model": name, **vars(result)})
        progress(result.describe())
    from tasks.serving.champion import current_champion

    champion = current_champion(models_dir)
    if champion is not None:
        config = run_view.run_config(RunFolder.under(artifacts_dir, champion.name).path)
        uri = tracking_uri or config.get("mlflow_tracking_uri") or env_uri
        name = registered_model or config.get("mlflow_registered_model") or REGISTERED_MODEL
        try:
            if uri is None:
                raise LookupError("no tracking URI")
            summary["champion"] = sync_champion(models_dir, uri, name)
        except Exception as exc:
            summary["errors"].append(f"champion alias: {failure_reason(exc)}")
            progress(f"champion alias not set: {failure_reason(exc)}")
        else:
            c = summary["champion"]
            verb = "now names" if c["moved"] else "already names"
            progress(f"alias {name}@{CHAMPION_ALIAS} {verb} version {c['version']} ({c['run_id']})")
    return summary


# --- the sync itself --------------------------------------------------------------------------


def _sync(
    run_dir: Path,
    models_dir: Path,
    uri: str,
    registered_model: str,
    state: dict[str, Any],
    save: Callable[[], None],
) -> SyncResult:
    """Each phase logs what the server lacks and records it in `state` (saved) at once."""
    from mlflow import MlflowClient

    info = RunFolder(run_dir).read_info()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow_run_id, created = mlflow_runs.ensure_run(client, run_dir.name, state, save)
    result = SyncResult(run_dir.name, mlflow_run_id, created)
    if uri.startswith(("http://", "https://")):
        result.url = f"{uri}/#/experiments/{state['experiment_id']}/runs/{mlflow_run_id}"
    if created:
        result.logged.append("the run")
    step = phases.Step(client, mlflow_run_id, state, save, result.logged)
    phases.params_and_tags(step, info)
    phases.epochs(step, RunFolder(run_dir).read_history())
    phases.artifacts(step, run_view.artifacts(run_dir, models_dir))
    model_dir = run_view.export_of(run_dir, models_dir)
    if model_dir is not None:
        result.model_version = phases.model(step, model_dir, registered_model)
    phases.status(step, STATUS.get(info.get("status", "")))
    return result


def failure_reason(exc: BaseException) -> str:
    """One line saying why a request failed (MLflow's messages carry whole tracebacks)."""
    if isinstance(exc, ImportError) and (exc.name or "").startswith("mlflow"):
        return "MLflow is not installed: pip install 'imdb-pipeline[mlflow]'"
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 300 else first[:300] + "..."


@contextlib.contextmanager
def _sync_environment() -> Iterator[None]:
    """SYNC_ENVIRONMENT for the sync (where the environment does not set a variable already),
    removed after."""
    added = [k for k in SYNC_ENVIRONMENT if k not in os.environ]
    for key in added:
        os.environ[key] = SYNC_ENVIRONMENT[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
