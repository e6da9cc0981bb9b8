"""The nightly pipeline: promote the new model if at least as good, prune old runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.pipeline import pipeline
from tasks.core.atomic import file_sha256
from tasks.core.runs import read_run_info
from tasks.serving import champion
from tests.imdb_fixtures import tiny_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nightly_runs_promote_the_champion_and_prune_all_but_it_and_the_newest(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(
        tmp_path, source=str(small_archive), sha256=file_sha256(small_archive), epochs=1
    )
    runs = config.artifacts_dir / "runs"
    models = config.artifacts_dir / "models"

    # When the first nightly run finishes, with no champion yet
    first = pipeline(config, run_id="night-1", promote=True, keep_runs=1)

    # Then its model becomes the champion and nothing is pruned
    decision = first["champion"]
    assert decision["promoted"] is True
    assert (decision["challenger"], decision["champion"]) == ("night-1", None)
    assert decision["champion_accuracy"] is None
    assert 0.0 <= decision["challenger_accuracy"] <= 1.0
    assert decision["examples"] == 16
    assert first["pruned"] == []
    assert os.readlink(models / "champion") == "night-1"
    assert champion.current_champion(models) == Path(first["model_dir"])

    # When a second nightly run finishes (same settings: the same model, as good)
    second = pipeline(config, run_id="night-2", promote=True, keep_runs=1)

    # Then it was scored against the champion; being at least as good it was promoted
    decision = second["champion"]
    assert (decision["challenger"], decision["champion"]) == ("night-2", "night-1")
    assert decision["challenger_accuracy"] == decision["champion_accuracy"]
    assert decision["promoted"] is True
    # And the first run, no longer the champion nor among the newest 1, was pruned with
    # its exported model
    assert second["pruned"] == ["night-1"]
    assert names(runs) == ["night-2"]
    assert names(models) == ["champion", "night-2"]
    assert champion.current_champion(models) == Path(second["model_dir"])
    assert (champion.current_champion(models) / "model.keras").is_file()

    # When a third run scores worse than the champion
    def accuracy(model_dir: Path, validation_parquet: Path) -> tuple[float, int]:
        return (0.5 if model_dir.name == "night-3" else 0.9), 16

    monkeypatch.setattr(champion, "validation_accuracy", accuracy)
    third = pipeline(config, run_id="night-3", promote=True, keep_runs=1)

    # Then the champion stays, and its run is kept although it is not the newest
    assert third["champion"]["promoted"] is False
    assert third["champion"]["champion"] == "night-2"
    assert third["pruned"] == []
    assert names(runs) == ["night-2", "night-3"]
    assert names(models) == ["champion", "night-2", "night-3"]
    assert champion.current_champion(models) == Path(second["model_dir"])
    assert read_run_info(runs / "night-3")["status"] == "completed"
