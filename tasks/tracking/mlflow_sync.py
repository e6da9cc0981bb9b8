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
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_write_text, file_sha256
from tasks.core.lock import exclusive
from tasks.core.runs import list_runs, read_history, read_run_info

STATE_FILE = "mlflow.json"
LOCK_FILE = ".mlflow.lock"
EXPERIMENT = "imdb-pipeline"  # MLFLOW_EXPERIMENT_NAME overrides it
REGISTERED_MODEL = "imdb-sentiment"
CHAMPION_ALIAS = "champion"
MODEL_NAME = "model"  # the logged model's name within its run
TAG = "imdb."  # prefix of this project's run tags
RUN_ARTIFACTS = (
    "metrics.json",
    "training-curves.png",
    "confusion-matrix.png",
    "calibration.png",
    "report.html",
)
CARD_ARTIFACTS = ("model-card.md", "model-card.json")  # logged under model-card/
# run.json's status -> the MLflow run's status
STATUS = {"running": "RUNNING", "completed": "FINISHED", "failed": "FAILED", "abandoned": "KILLED"}
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
    return dict(_read_all(run_dir).get("servers", {}).get(normalise_uri(tracking_uri), {}))


def pending(run_dir: Path, models_dir: Path, tracking_uri: str) -> list[str]:
    """What the run folder holds that `tracking_uri` has not been sent yet, from the folder and
    its mlflow.json alone (no request): for the warning of a failed sync."""
    state = read_state(run_dir, tracking_uri)
    out = [] if state.get("run_id") else ["the run"]
    if not state.get("params"):
        out.append("params")
    epochs = [int(row["epoch"]) for row in read_history(run_dir)]
    new = [e for e in epochs if e > state.get("epochs", 0)]
    if new:
        out.append(_epochs_text(new))
    done = state.get("artifacts", {})
    out += [name for name, path in _artifacts(run_dir, models_dir) if done.get(name) != _sha(path)]
    if _model_dir(run_dir, models_dir) is not None and not state.get("versions"):
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
    with exclusive(run_dir / LOCK_FILE), _sync_environment():
        everything = _read_all(run_dir)
        servers = everything.setdefault("servers", {})
        state = servers.setdefault(uri, {})

        def save() -> None:
            atomic_write_text(run_dir / STATE_FILE, json.dumps(everything, indent=2))

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
    run_dir = models_dir.parent / "runs" / champion.name
    if not (run_dir / "run.json").is_file():
        raise LookupError(f"champion {champion.name} has no run folder under {run_dir.parent}")
    version = sync_run(run_dir, models_dir, tracking_uri, registered_model).model_version
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
        config = _run_config(artifacts_dir / "runs" / champion.name)
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
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    info = read_run_info(run_dir)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow_run_id, created = _ensure_run(client, run_dir.name, state, save)
    result = SyncResult(run_dir.name, mlflow_run_id, created)
    if uri.startswith(("http://", "https://")):
        result.url = f"{uri}/#/experiments/{state['experiment_id']}/runs/{mlflow_run_id}"
    if created:
        result.logged.append("the run")
    if not state.get("params"):
        params = [Param(k, v) for k, v in _params(info).items()]
        for start in range(0, len(params), 100):
            client.log_batch(mlflow_run_id, params=params[start : start + 100])
        state["params"] = True
        save()
        result.logged.append("params")
    tags = _tags(info)
    if state.get("tags") != tags:
        client.log_batch(mlflow_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        state["tags"] = tags
        save()
        result.logged.append("tags")
    rows = [row for row in read_history(run_dir) if int(row["epoch"]) > state.get("epochs", 0)]
    batch: list[Metric] = []
    now = _now_ms()
    for i, row in enumerate(rows):
        epoch = int(row["epoch"])
        batch += [
            Metric(key, float(value), now, epoch)
            for key, value in row.items()
            if key != "epoch" and value not in ("", None)
        ]
        # Whole epochs per request (at most 1000 metrics), recorded after each: an epoch is
        # logged once even if the connection drops between two requests.
        following = len(rows[i + 1]) if i + 1 < len(rows) else 0
        if i + 1 == len(rows) or len(batch) + following > 1000:
            client.log_batch(mlflow_run_id, metrics=batch)
            state["epochs"] = epoch
            save()
            batch = []
    if rows:
        result.logged.append(_epochs_text([int(row["epoch"]) for row in rows]))
    done = state.setdefault("artifacts", {})
    for name, path in _artifacts(run_dir, models_dir):
        sha = _sha(path)
        if done.get(name) != sha:
            folder = str(Path(name).parent) if "/" in name else None
            client.log_artifact(mlflow_run_id, str(path), folder)
            done[name] = sha
            save()
            result.logged.append(name)
    model_dir = _model_dir(run_dir, models_dir)
    if model_dir is not None:
        if not state.get("model"):
            state["model"] = _log_model(client, mlflow_run_id, state["experiment_id"], model_dir)
            save()
            result.logged.append("model")
        versions = state.setdefault("versions", {})
        if registered_model not in versions:
            versions[registered_model] = _register(
                client, registered_model, mlflow_run_id, run_dir.name, state["model"]
            )
            save()
            result.logged.append(f"{registered_model} version {versions[registered_model]}")
        result.model_version = versions[registered_model]
    status = STATUS.get(info.get("status", ""))
    if status and state.get("status") != status:
        if status == "RUNNING":
            client.update_run(mlflow_run_id, status=status)
        else:
            client.set_terminated(mlflow_run_id, status=status)
        state["status"] = status
        save()
        result.logged.append(f"status {status}")
    return result


def _ensure_run(
    client: Any, run_id: str, state: dict[str, Any], save: Callable[[], None]
) -> tuple[str, bool]:
    """The MLflow run of `run_id`: the one recorded, else one tagged with it (a sync that died
    before recording it, or a lost mlflow.json), else a new one. (id, whether created)."""
    from mlflow.exceptions import MlflowException

    recorded = state.get("run_id")
    if recorded:
        try:
            if client.get_run(recorded).info.lifecycle_stage == "active":
                return recorded, False
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        state.clear()  # deleted on the server: log everything again, to a new run
    experiment_id = _experiment_id(client)
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG}run_id` = '{run_id}'", max_results=1
    )
    if found:
        run = found[0]
        state.update(_adopted_state(client, run))
        save()
        return run.info.run_id, False
    run = client.create_run(experiment_id, tags={f"{TAG}run_id": run_id}, run_name=run_id)
    state.update(run_id=run.info.run_id, experiment_id=experiment_id)
    save()
    return run.info.run_id, True


def _adopted_state(client: Any, run: Any) -> dict[str, Any]:
    """What an MLflow run found by its tag already holds, as mlflow.json would record it (the
    artifacts and status are logged again: the same paths are overwritten, nothing doubles)."""
    run_id = run.info.run_id
    epochs = 0
    for key in sorted(run.data.metrics)[:1]:
        epochs = max((m.step for m in client.get_metric_history(run_id, key)), default=0)
    state: dict[str, Any] = {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "params": bool(run.data.params),
        "epochs": epochs,
    }
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    if versions:
        newest = max(versions, key=lambda v: int(v.version))
        state["model"] = {"model_id": newest.model_id, "uri": newest.source}
        state["versions"] = {v.name: str(v.version) for v in versions}
    return state


def _experiment_id(client: Any) -> str:
    from mlflow.exceptions import MlflowException

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by another sync
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _log_model(client: Any, mlflow_run_id: str, experiment_id: str, model_dir: Path) -> dict:
    """The exported model as an MLflow Keras model (a logged model of the run), from the export's
    model.keras. Loading it needs this project's layers: `import tasks.training.layers` first.
    The export's SavedModel (raw text in, TensorFlow alone to load) goes beside it, as the
    logged model's `saved_model/` folder, for TF Serving and any other TensorFlow stack."""
    import keras
    import numpy as np
    import tensorflow as tf
    from mlflow.entities import LoggedModelOutput
    from mlflow.keras import save_model
    from mlflow.models import Model, ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from tasks.serving.export import CARD_JSON, KERAS_FILE
    from tasks.serving.saved_model import SAVED_MODEL_DIR, SIGNATURE
    from tasks.training.layers import load_model

    card = json.loads((model_dir / CARD_JSON).read_text())
    model = load_model(model_dir / KERAS_FILE)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("int32"), (-1, -1), "token_ids")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1), "probability")]),
    )
    logged = client.create_logged_model(
        experiment_id,
        name=MODEL_NAME,
        source_run_id=mlflow_run_id,
        tags={f"{TAG}run_id": model_dir.name},
        model_type="keras",
    )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / MODEL_NAME
        save_model(
            model,
            str(local),
            mlflow_model=Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=mlflow_run_id,
                model_id=logged.model_id,
            ),
            signature=signature,
            pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
            metadata={
                "imdb_run_id": model_dir.name,
                "load": "import tasks.training.layers (this project's layers) before loading",
                "input": "token ids of tokenizer.json (model-card/), padded as it says",
                "saved_model": f"{SAVED_MODEL_DIR}/: TensorFlow SavedModel, signature "
                f"{SIGNATURE}: raw review strings in, probability out; TensorFlow alone loads it",
            },
        )
        if (model_dir / SAVED_MODEL_DIR).is_dir():
            shutil.copytree(model_dir / SAVED_MODEL_DIR, local / SAVED_MODEL_DIR)
        client.log_model_artifacts(logged.model_id, str(local))
    client.finalize_logged_model(logged.model_id, "READY")
    step = int(card.get("selected_epoch") or 0)
    client.log_outputs(mlflow_run_id, [LoggedModelOutput(logged.model_id, step)])
    return {"model_id": logged.model_id, "uri": f"models:/{logged.model_id}"}


def _register(
    client: Any, name: str, mlflow_run_id: str, run_id: str, model: dict[str, Any]
) -> str:
    """The version of `name` holding `model`: the one registered from this MLflow run if a
    sync that died before recording it made one, else a new one."""
    from mlflow.exceptions import MlflowException

    existing = client.search_model_versions(f"name = '{name}' and run_id = '{mlflow_run_id}'")
    if existing:
        return str(max(int(v.version) for v in existing))
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name,
        source=model["uri"],
        run_id=mlflow_run_id,
        tags={f"{TAG}run_id": run_id},
        model_id=model["model_id"],
    )
    return str(version.version)


# --- the run folder ---------------------------------------------------------------------------


def _read_all(run_dir: Path) -> dict[str, Any]:
    """mlflow.json; empty if missing or unreadable (the runs are then found by their tag)."""
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return read_run_info(run_dir).get("config") or {}
    except (LookupError, ValueError):
        return {}


def _params(info: dict[str, Any]) -> dict[str, str]:
    """The config as params (values as text; where tracking goes is not a param of the run)."""
    config = info.get("config") or {}
    return {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in sorted(config.items())
        if not k.startswith("mlflow_")
    }


def _tags(info: dict[str, Any]) -> dict[str, str]:
    return {
        f"{TAG}run_id": str(info.get("run_id", "")),
        f"{TAG}flow_run_ids": ",".join(str(f) for f in info.get("flow_run_ids", []) if f),
        f"{TAG}data_fingerprint": str(info.get("data_fingerprint", "")),
        f"{TAG}config_digest": str(info.get("config_digest", "")),
    }


def _model_dir(run_dir: Path, models_dir: Path) -> Path | None:
    """The run's export, if it exists (export writes the folder whole, in one rename)."""
    from tasks.serving.export import CARD_JSON, KERAS_FILE

    model_dir = models_dir / run_dir.name
    complete = (model_dir / KERAS_FILE).is_file() and (model_dir / CARD_JSON).is_file()
    return model_dir if complete else None


def _artifacts(run_dir: Path, models_dir: Path) -> list[tuple[str, Path]]:
    """(artifact name, file) of each artifact the run holds now: the evaluation's files, then
    the model card of its export."""
    out = [(name, run_dir / name) for name in RUN_ARTIFACTS if (run_dir / name).is_file()]
    model_dir = _model_dir(run_dir, models_dir)
    if model_dir is not None:
        out += [(f"model-card/{name}", model_dir / name) for name in CARD_ARTIFACTS]
    return out


def _sha(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return None


def _epochs_text(epochs: list[int]) -> str:
    if len(epochs) == 1:
        return f"epoch {epochs[0]}"
    return f"epochs {epochs[0]}-{epochs[-1]}"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


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
