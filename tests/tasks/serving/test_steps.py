"""Tests of the serving stage's Prefect tasks, each run inside a tiny flow on the test server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from tasks.config import PipelineConfig
from tasks.core import runs
from tasks.core.run_folder import RunFolder
from tasks.data.processed import ProcessedData
from tasks.serving import champion, registry
from tasks.serving.steps import export_model, promote_model, prune_runs
from tests.imdb_fixtures import Exported, run_in_flow

pytestmark = pytest.mark.usefixtures("prefect_server")


def _finished_run(art: Path, config: PipelineConfig, data: ProcessedData, run_id: str) -> Path:
    run_dir = runs.create_run(art, config, data, run_id=run_id)
    RunFolder(run_dir).update_info(status="completed")
    return run_dir


def test_export_promote_and_prune_keep_the_champion(exported: Exported, tmp_path: Path) -> None:
    # Given a finished run "run-1": a copy of the tiny model's training run in a fresh artifacts/
    art = tmp_path / "art"
    config = exported.config.model_copy(update={"artifacts_dir": art})
    result = exported.copy_run(_finished_run(art, config, exported.data, "run-1"))

    # When its best model is exported
    model_dir = run_in_flow(export_model, config, exported.data, result, exported.metrics)

    # Then the model folder is artifacts/models/run-1, with the model, tokenizer and card
    models = art.resolve() / "models"
    assert model_dir == models / "run-1"
    assert {"sentiment-lstm.h5", "model.keras", "vocab.txt", "model-card.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    card = json.loads((model_dir / "model-card.json").read_text())
    assert (card["run_id"], card["selected_epoch"]) == ("run-1", exported.best.epoch)
    assert card["test_metrics"] == exported.metrics
    # And the card names its data version and settings, which the nightly compares
    assert card["data_fingerprint"] == exported.data.fingerprint
    assert (card["data_incoming"], card["config_digest"]) == ([], config.digest())

    # When it is offered as the champion, with none yet
    validation = exported.data.split_path("validation")
    decision = run_in_flow(promote_model, models, model_dir, validation, 0.05, 0.002)

    # Then it is promoted (no champion yet), and the decision is recorded and published
    assert (decision.promoted, decision.challenger, decision.champion) == (True, "run-1", None)
    assert decision.champion_accuracy is None
    assert 0.0 <= decision.challenger_accuracy <= 1.0
    assert decision.examples == 16
    assert champion.current_champion(models) == model_dir
    published = Artifact.get("champion-decision")
    assert published is not None and "Promoted" in str(published.data)
    assert "no champion yet" in str(published.data)
    assert [e["event"] for e in registry.read_events(models)] == [
        "candidate",
        "decision",
        "promotion",
    ]

    # When two newer runs finish, one is still running, and runs are pruned to the newest one
    for run_id in ("run-2", "run-3"):
        _finished_run(art, config, exported.data, run_id)
    runs.create_run(art, config, exported.data, run_id="run-4")
    removed = run_in_flow(prune_runs, art, 1)

    # Then only run-2 is deleted: run-1 is the champion, run-3 the newest, run-4 unfinished
    assert removed == ["run-2"]
    assert sorted(p.name for p in (art / "runs").iterdir()) == ["run-1", "run-3", "run-4"]
    assert champion.current_champion(models) == model_dir


def test_prune_runs_without_a_champion_keeps_only_the_newest(
    exported: Exported, tmp_path: Path
) -> None:
    # Given three finished runs and no models
    art = tmp_path / "art"
    for run_id in ("run-1", "run-2", "run-3"):
        _finished_run(art, exported.config, exported.data, run_id)

    # When they are pruned to the newest two
    removed = run_in_flow(prune_runs, art, 2)

    # Then the oldest one is gone
    assert removed == ["run-1"]
    assert sorted(p.name for p in (art / "runs").iterdir()) == ["run-2", "run-3"]


def test_export_model_without_a_best_checkpoint_fails(exported: Exported, tmp_path: Path) -> None:
    # Given a training result without a valid best checkpoint
    config = exported.config.model_copy(update={"artifacts_dir": tmp_path / "art"})
    result = dataclasses.replace(exported.result, run_dir=tmp_path / "run-9", best=None)

    # When / then the task fails, naming the run, and exports nothing
    with pytest.raises(RuntimeError, match="run-9 has no valid best checkpoint"):
        run_in_flow(export_model, config, exported.data, result, exported.metrics)
    assert not (tmp_path / "art").exists()
