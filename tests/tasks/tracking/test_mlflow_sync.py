"""The sync from a run folder to a real MLflow server: what is new is logged, once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest

from tasks.core.run_folder import RunFolder
from tasks.tracking import mlflow_runs, mlflow_sync
from tests.mlflow_server import LocalMlflow, dead_uri, shared_mlflow
from tests.tasks.tracking.run_folders import make_run, write_history


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest, tmp_path_factory) -> LocalMlflow:
    return shared_mlflow(request, tmp_path_factory)


def steps(client, mlflow_run_id: str, key: str) -> list[tuple[int, float]]:
    history = client.get_metric_history(mlflow_run_id, key)
    return sorted((m.step, m.value) for m in history)


def runs_tagged(client, run_id: str) -> list:
    experiment = client.get_experiment_by_name(mlflow_runs.EXPERIMENT)
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`imdb.run_id` = '{run_id}'"
    )


def test_a_run_is_logged_once_and_later_syncs_add_only_what_is_new(
    mlflow_server: LocalMlflow, tmp_path: Path
) -> None:
    client = mlflow.MlflowClient(mlflow_server.uri)
    art = tmp_path / "art"
    run_dir = make_run(art, "grow", epochs=1)

    # When the run folder is synced after its first epoch
    first = mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri)

    # Then one MLflow run holds its config as params, its tags, epoch 1 and its status
    assert first.created and first.logged[:4] == ["the run", "params", "tags", "epoch 1"]
    run = client.get_run(first.mlflow_run_id)
    info = RunFolder(run_dir).read_info()
    assert run.data.params["lstm_units"] == str(info["config"]["lstm_units"])
    assert run.data.params["data_dir"] == info["config"]["data_dir"]
    assert "mlflow_tracking_uri" not in run.data.params
    assert run.data.tags["imdb.run_id"] == "grow"
    assert run.data.tags["imdb.flow_run_ids"] == "flow-1"
    assert run.data.tags["imdb.config_digest"] == info["config_digest"]
    assert run.data.tags["imdb.data_fingerprint"] == "f" * 16
    assert run.info.status == "RUNNING"
    assert steps(client, first.mlflow_run_id, "loss") == [(1, 1.0)]
    assert first.url.endswith(f"/runs/{first.mlflow_run_id}")

    # When two more epochs, the evaluation's files and a resume's flow run are added
    write_history(run_dir, 3)
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    (run_dir / "training-curves.png").write_bytes(b"\x89PNG curves")
    RunFolder(run_dir).update_info(flow_run_ids=["flow-1", "flow-2"], status="failed")
    second = mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri)

    # Then the same run gets just those: epochs 2-3 in order, the files, the tag, the status
    assert second.mlflow_run_id == first.mlflow_run_id and not second.created
    assert second.logged == [
        "tags",
        "epochs 2-3",
        "metrics.json",
        "training-curves.png",
        "status FAILED",
    ]
    assert steps(client, first.mlflow_run_id, "loss") == [(e, 1.0 / e) for e in (1, 2, 3)]
    assert [v for _, v in steps(client, first.mlflow_run_id, "val_accuracy")] == [
        0.51,
        0.52,
        0.53,
    ]
    run = client.get_run(first.mlflow_run_id)
    assert run.data.tags["imdb.flow_run_ids"] == "flow-1,flow-2"
    assert run.info.status == "FAILED"
    names = {a.path for a in client.list_artifacts(first.mlflow_run_id)}
    assert {"metrics.json", "training-curves.png"} <= names

    # When nothing changed, a sync logs nothing; a changed file is logged again
    assert mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri).logged == []
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.91}))
    assert mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri).logged == [
        "metrics.json"
    ]
    assert len(runs_tagged(client, "grow")) == 1
    assert len(client.get_metric_history(first.mlflow_run_id, "loss")) == 3


def test_a_lost_state_file_finds_the_run_again_instead_of_starting_another(
    mlflow_server: LocalMlflow, tmp_path: Path
) -> None:
    client = mlflow.MlflowClient(mlflow_server.uri)
    art = tmp_path / "art"
    run_dir = make_run(art, "lost", epochs=2)
    first = mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri)

    # Given mlflow.json is gone (a sync killed before recording, a folder restored elsewhere)
    RunFolder(run_dir).mlflow_state.unlink()
    write_history(run_dir, 3)

    # When the run is synced again
    again = mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri)

    # Then it continues the run tagged with its id: no second run, no epoch twice
    assert again.mlflow_run_id == first.mlflow_run_id and not again.created
    assert "params" not in again.logged and "epoch 3" in again.logged
    assert len(runs_tagged(client, "lost")) == 1
    assert [s for s, _ in steps(client, first.mlflow_run_id, "loss")] == [1, 2, 3]
    state = mlflow_sync.read_state(run_dir, mlflow_server.uri)
    assert (state["run_id"], state["epochs"]) == (first.mlflow_run_id, 3)


def test_an_unreachable_server_fails_fast_and_names_what_is_outstanding(tmp_path: Path) -> None:
    art = tmp_path / "art"
    run_dir = make_run(art, "offline", epochs=2)
    (run_dir / "metrics.json").write_text("{}")
    uri = dead_uri()

    # When the server is unreachable, the sync raises (within seconds: one retry, no backoff
    # to speak of) and the run is marked outstanding for that server
    with pytest.raises(Exception, match="127.0.0.1"):
        mlflow_sync.sync_run(run_dir, art / "models", uri)
    assert mlflow_sync.read_state(run_dir, uri)["outstanding"] is True
    assert mlflow_sync.pending(run_dir, art / "models", uri) == [
        "the run",
        "params",
        "epochs 1-2",
        "metrics.json",
    ]
    # And the environment is as it was
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_a_sync_cut_short_keeps_what_it_logged_and_the_outstanding_run_is_finished_later(
    mlflow_server: LocalMlflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow.MlflowClient(mlflow_server.uri)
    art = tmp_path / "art"
    run_dir = make_run(art, "cut", epochs=2)
    make_run(art, "other", epochs=1)  # never synced: not outstanding, left alone

    # Given the connection drops after the params were logged, at the metrics
    real_log_batch = mlflow.MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if metrics:
            raise ConnectionError("connection reset")
        return real_log_batch(self, run_id, metrics=metrics, params=params, tags=tags)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", log_batch)
    with pytest.raises(ConnectionError):
        mlflow_sync.sync_run(run_dir, art / "models", mlflow_server.uri)
    state = mlflow_sync.read_state(run_dir, mlflow_server.uri)
    assert state["params"] is True and state["outstanding"] is True and "epochs" not in state
    assert mlflow_sync.pending(run_dir, art / "models", mlflow_server.uri) == ["epochs 1-2"]

    # When the connection is back and the outstanding runs are synced
    monkeypatch.undo()
    (done,) = mlflow_sync.sync_outstanding(art, mlflow_server.uri)

    # Then the cut run got the rest, in the same MLflow run, and the other run was not touched
    assert (done.run_id, done.mlflow_run_id) == ("cut", state["run_id"])
    assert done.logged == ["epochs 1-2", "status RUNNING"]
    assert [s for s, _ in steps(client, state["run_id"], "loss")] == [1, 2]
    assert mlflow_sync.read_state(run_dir, mlflow_server.uri)["outstanding"] is False
    assert not RunFolder(art / "runs" / "other").mlflow_state.exists()


def test_without_a_champion_there_is_no_alias_to_move(tmp_path: Path) -> None:
    # No champion link: nothing to do, and no request (the URI is unreachable)
    assert mlflow_sync.sync_champion(tmp_path / "models", dead_uri()) is None
