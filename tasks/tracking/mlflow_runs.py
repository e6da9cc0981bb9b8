"""The MLflow side of a sync: the run of a run folder (found again by its tag), its logged
model (the export as a Keras model, with the SavedModel beside it) and the registered version."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.tracking.run_view import TAG

EXPERIMENT = "imdb-pipeline"  # MLFLOW_EXPERIMENT_NAME overrides it
MODEL_NAME = "model"  # the logged model's name within its run


def ensure_run(
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
    experiment_id = experiment_of(client)
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG}run_id` = '{run_id}'", max_results=1
    )
    if found:
        run = found[0]
        state.update(adopted_state(client, run))
        save()
        return run.info.run_id, False
    run = client.create_run(experiment_id, tags={f"{TAG}run_id": run_id}, run_name=run_id)
    state.update(run_id=run.info.run_id, experiment_id=experiment_id)
    save()
    return run.info.run_id, True


def adopted_state(client: Any, run: Any) -> dict[str, Any]:
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


def experiment_of(client: Any) -> str:
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


def log_model(client: Any, mlflow_run_id: str, experiment_id: str, model_dir: Path) -> dict:
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

    from tasks.serving.exported import SAVED_MODEL_DIR, ExportedModel
    from tasks.serving.saved_model import SIGNATURE
    from tasks.training.layers import load_model

    export = ExportedModel(model_dir)
    card = export.card()
    model = load_model(export.keras)
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
        if export.saved_model.is_dir():
            shutil.copytree(export.saved_model, local / SAVED_MODEL_DIR)
        client.log_model_artifacts(logged.model_id, str(local))
    client.finalize_logged_model(logged.model_id, "READY")
    step = int(card.get("selected_epoch") or 0)
    client.log_outputs(mlflow_run_id, [LoggedModelOutput(logged.model_id, step)])
    return {"model_id": logged.model_id, "uri": f"models:/{logged.model_id}"}


def register(client: Any, name: str, mlflow_run_id: str, run_id: str, model: dict[str, Any]) -> str:
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
