"""MLflow tracking end to end, against a real `mlflow server` (SQLite, local artifacts): what a
run logs, a killed run resumed into the same MLflow run, an outage that loses nothing, the
champion alias following the nightly's promotions, and no MLflow at all when it is not set."""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import numpy as np
import pytest

from flows.cli import main
from flows.nightly import nightly
from flows.resume import resume
from tasks.core.atomic import file_sha256
from tasks.core.run_folder import RunFolder
from tasks.serving import promotion, registry
from tasks.tracking import mlflow_runs, mlflow_sync
from tests.imdb_fixtures import review_text, tiny_config, train_argv
from tests.mlflow_server import (
    LocalMlflow,
    Relay,
    boot_shared_mlflow,
    server_env,
    shared_mlflow,
)

pytestmark = pytest.mark.usefixtures("prefect_server")
ROOT = Path(__file__).resolve().parents[2]
MODEL = mlflow_sync.REGISTERED_MODEL


@pytest.fixture(scope="session", autouse=True)
def mlflow_booting(request: pytest.FixtureRequest, tmp_path_factory) -> None:
    """The server starts first and boots while the Prefect test server starts."""
    boot_shared_mlflow(request, tmp_path_factory)


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest, tmp_path_factory) -> LocalMlflow:
    return shared_mlflow(request, tmp_path_factory)


def tagged_runs(client, run_id: str) -> list:
    experiment = client.get_experiment_by_name(mlflow_runs.EXPERIMENT)
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`imdb.run_id` = '{run_id}'"
    )


def the_run(client, run_id: str):
    (run,) = tagged_runs(client, run_id)
    return run


def epochs_logged(client, mlflow_run_id: str, key: str = "val_accuracy") -> list[int]:
    """The steps of a metric in the order they were logged."""
    history = client.get_metric_history(mlflow_run_id, key)
    return [m.step for m in sorted(history, key=lambda m: (m.timestamp, m.step))]


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child's environment: no MLflow setting, this session's Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    return {
        **server_env(),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }


def incoming_rows(n: int) -> str:
    rng = random.Random(11)
    rows = [
        {
            "id": f"mlflow-{i}",
            "text": review_text(rng, i % 2 == 1, words=50),
            "label": "pos" if i % 2 else "neg",
            "movie": f"tt880{i // 3:04d}",
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_an_outage_loses_nothing_and_the_champion_alias_follows_promotions(
    mlflow_server: LocalMlflow,
    small_archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    client = mlflow.MlflowClient(mlflow_server.uri)
    config = tiny_config(
        tmp_path,
        source=str(small_archive),
        sha256=file_sha256(small_archive),
        epochs=2,
        word_vectors="none",
        max_review_chars=2000,
    )
    art = config.artifacts_dir
    # Given tracking is on, through the environment, but its server is down
    relay = Relay(mlflow_server)
    request.addfinalizer(relay.stop)
    uri = relay.uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    # When the first night trains and promotes its model
    with caplog.at_level(logging.INFO):
        first = nightly(config, run_id="night-1")

    # Then the night completed as without tracking
    assert first["trained"] is True and first["champion"]["promoted"] is True
    # And warnings said what was not logged and how it will be: the epochs' once, the end's once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("epochs are not logged while this training runs" in w for w in warnings) == 1
    (not_logged,) = [w for w in warnings if "not logged for run night-1" in w]
    for item in (
        "params",
        "epochs 1-2",
        "metrics.json",
        "training-curves.png",
        "confusion-matrix.png",
        "model-card/model-card.md",
        "the model and its registered version",
        "imdb-pipeline mlflow-sync",
        uri,
    ):
        assert item in not_logged
    assert any("champion" in w and "imdb-pipeline mlflow-sync" in w for w in warnings)
    assert mlflow_sync.read_state(art / "runs" / "night-1", uri)["outstanding"] is True

    # When the server is back at that URI and `imdb-pipeline mlflow-sync` runs
    relay.start()
    assert main(["mlflow-sync", "--artifacts-dir", str(art), "--json"]) == 0

    # Then it logged the whole run and registered its model as the champion
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (synced,) = out["runs"]
    assert synced["run_id"] == "night-1" and synced["created"] is True
    assert "epochs 1-2" in synced["logged"] and "status FINISHED" in synced["logged"]
    assert out["champion"] == {
        "run_id": "night-1",
        "version": synced["model_version"],
        "moved": True,
    }
    run = the_run(client, "night-1")
    info = json.loads((art / "runs" / "night-1" / "run.json").read_text())
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["word_vectors"] == "none"
    assert run.data.tags["imdb.flow_run_ids"] == ",".join(info["flow_run_ids"])
    assert run.data.tags["imdb.data_fingerprint"] == info["data_fingerprint"]
    assert run.data.tags["imdb.config_digest"] == info["config_digest"]
    assert epochs_logged(client, run.info.run_id) == [1, 2]
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "training-curves.png", "confusion-matrix.png", "model-card"} <= files
    cards = {a.path for a in client.list_artifacts(run.info.run_id, "model-card")}
    assert cards == {"model-card/model-card.md", "model-card/model-card.json"}
    v1 = client.get_model_version(MODEL, synced["model_version"])
    assert v1.run_id == run.info.run_id and v1.tags["imdb.run_id"] == "night-1"
    assert client.get_registered_model(MODEL).aliases["champion"] == v1.version

    # When it runs again, then there is nothing new to log
    assert main(["mlflow-sync", "--artifacts-dir", str(art), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["logged"] for r in again["runs"]] == [[]]
    assert again["champion"]["moved"] is False
    assert mlflow_sync.read_state(art / "runs" / "night-1", uri)["outstanding"] is False

    # Given new labelled reviews, and a challenger as good as the champion on held-out reviews
    incoming = config.incoming_path / "new.jsonl"
    incoming.parent.mkdir(parents=True, exist_ok=True)
    incoming.write_text(incoming_rows(30))
    monkeypatch.setattr(promotion, "correct_on", lambda model_dir, parquet: np.ones(10, dtype=bool))

    # When the next night trains on the newer data, with the server up
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = nightly(config, run_id="night-2")

    # Then it was promoted, logged and registered without a warning, and the alias moved to it
    assert second["champion"]["promoted"] is True and second["champion"]["newer_data"] is True
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and "MLflow" in r.getMessage()
    ]
    run2 = the_run(client, "night-2")
    assert epochs_logged(client, run2.info.run_id) == [1, 2]
    (v2,) = client.search_model_versions(f"name = '{MODEL}' and run_id = '{run2.info.run_id}'")
    assert int(v2.version) == int(v1.version) + 1
    assert client.get_registered_model(MODEL).aliases["champion"] == v2.version
    assert os.readlink(art / "models" / "champion") == "night-2"

    # And the champion loads from MLflow once this project's layers are imported, and scores
    # exactly as the exported model does
    import tasks.training.layers as layers

    served = mlflow.keras.load_model(f"models:/{MODEL}@champion")
    exported = layers.load_model(art / "models" / "night-2" / "model.keras", compile=False)
    tokens = np.array([[2, 5, 9, 13, 4, 0, 0, 0], [7, 3, 3, 8, 11, 12, 6, 2]], dtype=np.int32)
    np.testing.assert_allclose(
        served.predict(tokens, verbose=0), exported.predict(tokens, verbose=0)
    )
    # And the SavedModel beside it downloads from the registry and scores raw text as the
    # export's own does, with TensorFlow alone
    import tensorflow as tf

    local = mlflow.artifacts.download_artifacts(
        f"models:/{MODEL}@champion/saved_model", dst_path=str(tmp_path / "from-registry")
    )
    texts = tf.constant(["a wonderful film", "dull and awful"])
    mine = tf.saved_model.load(str(art / "models" / "night-2" / "saved_model"))
    theirs = tf.saved_model.load(local)
    np.testing.assert_allclose(
        theirs.signatures["serving_default"](text=texts)["probability"].numpy(),
        mine.signatures["serving_default"](text=texts)["probability"].numpy(),
    )

    # When the operator rolls back by hand, then the link, the registry and the alias agree
    by_hand = ["--artifacts-dir", str(art), "--json"]
    assert main(["champion", "rollback", "--reason", "complaints", *by_hand]) == 0
    back = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (back["run_id"], back["previous"], back["mlflow"]["version"]) == (
        "night-1",
        "night-2",
        v1.version,
    )
    assert os.readlink(art / "models" / "champion") == "night-1"
    assert registry.read_events(art / "models")[-1]["event"] == "rollback"
    assert client.get_registered_model(MODEL).aliases["champion"] == v1.version
    # And a promotion by hand moves all three again
    assert main(["champion", "promote", "night-2", *by_hand]) == 0
    assert os.readlink(art / "models" / "champion") == "night-2"
    assert client.get_registered_model(MODEL).aliases["champion"] == v2.version


def test_a_killed_run_resumed_continues_its_mlflow_run_with_each_epoch_once(
    mlflow_server: LocalMlflow, small_archive: Path, tmp_path: Path
) -> None:
    client = mlflow.MlflowClient(mlflow_server.uri)
    hold = tmp_path / "hold"
    hold.touch()
    argv = [*train_argv(small_archive, tmp_path), "--epochs", "3", "--run-id", "killed"]
    argv += ["--word-vectors", "none", "--no-early-stopping"]
    argv += ["--mlflow-tracking-uri", mlflow_server.uri]
    # Given a training process that holds after its first epoch while the hold file exists
    child = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *argv],
        cwd=ROOT,
        env=subprocess_env(tmp_path, IMDB_PIPELINE_HOLD_FILE=str(hold)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    output = []
    try:
        while (line := lines.get(timeout=300)) is not None:
            output.append(line)
            if "holding after this epoch's checkpoint" in line:
                break
        else:
            raise AssertionError("the run ended before holding:\n" + "".join(output))
        # Then epoch 1 is in MLflow already, logged by the training itself
        run = the_run(client, "killed")
        assert epochs_logged(client, run.info.run_id) == [1]
        assert run.info.status == "RUNNING"
    finally:
        # When it is killed there (no chance to log anything more)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)  # it reads to the end of the killed child's output
        child.stdout.close()  # type: ignore[union-attr]
    run_dir = tmp_path / "art" / "runs" / "killed"
    recorded = mlflow_sync.read_state(run_dir, mlflow_server.uri)["run_id"]
    hold.unlink()

    # And the run is resumed to the end
    summary = resume(run_id="killed", artifacts_dir=tmp_path / "art")
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_completed"] == 3

    # Then the one MLflow run recorded in the run folder holds every epoch once, in order
    (run,) = tagged_runs(client, "killed")
    assert run.info.run_id == recorded
    for key in ("val_accuracy", "loss", "val_loss"):
        assert epochs_logged(client, recorded, key) == [1, 2, 3]
    assert run.info.status == "FINISHED"
    assert len(run.data.tags["imdb.flow_run_ids"].split(",")) == 2  # the train and the resume
    (version,) = client.search_model_versions(f"name = '{MODEL}' and run_id = '{recorded}'")
    assert version.tags["imdb.run_id"] == "killed"


def test_without_a_tracking_uri_a_run_imports_nothing_of_mlflow(
    small_archive: Path, tmp_path: Path
) -> None:
    # Given no MLFLOW_TRACKING_URI and no mlflow_tracking_uri in the config
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from flows.pipeline import pipeline\n"
        "from tests.imdb_fixtures import pipeline_config\n"
        "config = pipeline_config(Path(sys.argv[1]), Path(sys.argv[2]), epochs=1, "
        "word_vectors='none')\n"
        "summary = pipeline(config, run_id='plain')\n"
        "loaded = [m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')]\n"
        "print(json.dumps({'mlflow_modules': loaded, 'model_dir': summary['model_dir']}))\n"
    )

    # When a tiny pipeline runs in its own process
    out = subprocess.run(
        [sys.executable, "-c", code, str(small_archive), str(tmp_path)],
        cwd=ROOT,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )

    # Then it trained and exported as always, and not one MLflow module was imported
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mlflow_modules"] == []
    assert (Path(result["model_dir"]) / "model.keras").is_file()
    assert not RunFolder(tmp_path / "artifacts" / "runs" / "plain").mlflow_state.exists()
