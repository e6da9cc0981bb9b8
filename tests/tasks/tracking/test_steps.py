"""The tracking steps: off without a URI, and a tracking failure is a warning, never an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.run_folder import RunFolder
from tasks.tracking import mlflow_sync
from tasks.tracking.steps import epoch_tracker, track_champion, track_run, tracking_uri
from tests.imdb_fixtures import tiny_config
from tests.mlflow_server import dead_uri
from tests.tasks.tracking.run_folders import make_run


def test_the_config_names_the_server_else_the_environment_else_tracking_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tiny_config(tmp_path)
    assert tracking_uri(config) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking_uri(config) == "http://env:5000"
    named = config.model_copy(update={"mlflow_tracking_uri": "http://config:5000"})
    assert tracking_uri(named) == "http://config:5000"
    # And where runs are tracked is not part of what they compute
    assert named.digest() == config.digest()


def test_without_a_uri_the_steps_do_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no tracking URI anywhere, and a run folder
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tiny_config(tmp_path, artifacts_dir=tmp_path / "art")
    run_dir = make_run(tmp_path / "art", "untracked", epochs=1)

    # When the steps are called, then they return at once, with nothing written
    assert track_run(config, run_dir) is None
    assert track_champion(config) is None
    assert epoch_tracker(config, run_dir, pytest.fail) is None
    assert not RunFolder(run_dir).mlflow_state.exists()


def test_the_epoch_tracker_warns_once_when_the_server_is_down_and_stops_trying(
    tmp_path: Path,
) -> None:
    # Given a run whose tracking server is unreachable
    art = tmp_path / "art"
    config = tiny_config(tmp_path, artifacts_dir=art, mlflow_tracking_uri=dead_uri())
    run_dir = make_run(art, "offline", epochs=1)
    warnings: list[str] = []
    track_epoch = epoch_tracker(config, run_dir, warnings.append)
    assert track_epoch is not None

    # When two epochs end
    track_epoch()
    track_epoch()

    # Then training went on (no exception), with one warning saying how the epochs get logged
    (warning,) = warnings
    assert config.mlflow_tracking_uri in warning
    assert "imdb-pipeline mlflow-sync" in warning
    assert mlflow_sync.read_state(run_dir, config.mlflow_tracking_uri)["outstanding"] is True
