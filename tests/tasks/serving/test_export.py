"""Tests of the exported model folder, reloading it in a fresh process and for training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tasks.serving import export
from tests.imdb_fixtures import Exported, fail_temp_folder_renames

# The tiny trained and exported model is the session fixture `exported` (tests/conftest.py).


def test_export_writes_the_model_folder(exported: Exported) -> None:
    # Given an exported model
    folder = exported.model_dir

    # Then the folder has the three model formats, the tokenizer and a model card, nothing else
    assert folder == exported.config.artifacts_dir / "models" / "run-1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "sentiment-lstm.h5",
            "model.keras",
            "saved_model",
            "vocab.txt",
            "tokenizer.json",
            "model-card.md",
            "model-card.json",
        ]
    )
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    # And the vocabulary is the tokenised data's, the tokenizer settings the config's
    assert (folder / "vocab.txt").read_bytes() == exported.data.vocabulary_path.read_bytes()
    settings = json.loads((folder / "tokenizer.json").read_text())
    assert settings["vocab_size"] == 60
    assert settings["sequence_length"] == 40
    # And the model card records the run, the selected epoch and the test metrics
    card = json.loads((folder / "model-card.json").read_text())
    assert card["run_id"] == "run-1"
    assert card["selected_epoch"] == exported.best.epoch
    assert card["data_fingerprint"] == exported.data.fingerprint
    assert card["test_metrics"]["accuracy"] == exported.metrics["accuracy"]
    md = (folder / "model-card.md").read_text()
    assert "run-1" in md
    assert f"{exported.metrics['accuracy']:.4f}" in md


def test_exported_models_predict_the_same_in_a_fresh_process(
    exported: Exported, tmp_path: Path
) -> None:
    from tasks.training.layers import load_model
    from tasks.training.model import serving_model

    # Given inputs padded at the end (the model masks them), and the in-memory predictions
    # of the best checkpoint as it serves
    rng = np.random.default_rng(0)
    x = rng.integers(1, 60, size=(6, 40)).astype(np.int32)
    x[:3, -10:] = 0
    np.save(tmp_path / "x.npy", x)
    best = serving_model(load_model(exported.best.model_path, compile=False), exported.config)
    expected = np.asarray(best(x, training=False))

    # When the exported .keras and .h5 are loaded and run in a new Python process, the way
    # the model card says: import the project's layers, then keras.models.load_model
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import keras
        import tasks.training.layers  # registers the model's own layers by name

        folder, work = sys.argv[1], sys.argv[2]
        x = np.load(f"{work}/x.npy")
        for name in ("model.keras", "sentiment-lstm.h5"):
            model = keras.models.load_model(f"{folder}/{name}", compile=False)
            np.save(f"{work}/{name}.npy", np.asarray(model(x, training=False)))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(exported.model_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # Then both give the in-memory model's predictions
    for name in ("model.keras", "sentiment-lstm.h5"):
        got = np.load(tmp_path / f"{name}.npy")
        assert got.shape == expected.shape
        assert np.allclose(got, expected, atol=1e-6), name


def test_load_for_training_from_h5_can_fit(exported: Exported) -> None:
    # Given the exported .h5
    model = export.load_for_training(exported.model_dir / "sentiment-lstm.h5", 0.01)
    x = np.random.default_rng(1).integers(1, 60, size=(8, 40)).astype(np.int32)
    y = np.array([0, 1] * 4, dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]

    # When one batch is fitted (a compiled .h5 load fails here with "Unknown variable")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)

    # Then training ran with a fresh optimizer and changed the weights
    assert np.isfinite(history.history["loss"][0])
    assert int(model.optimizer.iterations.numpy()) == 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_load_for_training_from_keras_keeps_the_optimizer_state(exported: Exported) -> None:
    # Given the exported .keras
    model = export.load_for_training(exported.model_dir / "model.keras", 0.01)

    # Then its optimizer continues from the selected checkpoint's step
    step = int(model.optimizer.iterations.numpy())
    assert step > 0
    assert step == exported.best.manifest["global_step"]

    # And it trains further
    x = np.random.default_rng(2).integers(1, 60, size=(8, 40)).astype(np.int32)
    y = np.array([1, 0] * 4, dtype=np.float32)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert int(model.optimizer.iterations.numpy()) == step + 1


def test_reexport_replaces_the_folder_and_a_failed_one_keeps_it(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a model exported once into a scratch models folder
    models = tmp_path / "models"

    def run_export(metrics: dict) -> Path:
        return export.export(
            exported.best.model_path,
            models,
            "run-x",
            exported.config,
            exported.data,
            metrics,
            exported.best.epoch,
        )

    first = run_export(exported.metrics)

    # When it is exported again with other metrics
    run_export({**exported.metrics, "accuracy": 0.125})

    # Then the folder was replaced whole and nothing else is left
    card = json.loads((first / "model-card.json").read_text())
    assert card["test_metrics"]["accuracy"] == 0.125
    assert sorted(p.name for p in models.iterdir()) == ["run-x"]

    # When a third export dies as it renames its finished folder into place
    fail_temp_folder_renames(monkeypatch)
    with pytest.raises(OSError, match="killed"):
        run_export({**exported.metrics, "accuracy": 0.5})

    # Then the previous export is still there, whole, and no temporary folder remains
    assert sorted(p.name for p in models.iterdir()) == ["run-x"]
    card = json.loads((first / "model-card.json").read_text())
    assert card["test_metrics"]["accuracy"] == 0.125
    assert (first / "sentiment-lstm.h5").is_file()
