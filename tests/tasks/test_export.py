"""Tests of test metrics, the exported model folder, reloading it, and scoring raw text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.config import PipelineConfig
from tasks.data.processed import ProcessedData
from tasks.evaluation import evaluate
from tasks.serving import export
from tasks.serving.predict import Predictor, read_texts
from tasks.training import checkpoint as ckpt
from tasks.training import train as train_mod
from tests.imdb_fixtures import (
    NEGATIVE,
    POSITIVE,
    fail_temp_folder_renames,
    tiny_config,
    tokenize_small,
)

# --- binary_metrics and roc_auc ----------------------------------------------------------


def test_binary_metrics_on_hand_made_arrays() -> None:
    # Given 8 labels and probabilities: 3 true positives, 1 false negative, 1 false positive
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    prob = np.array([0.9, 0.8, 0.5, 0.2, 0.7, 0.1, 0.3, 0.4])

    # When the metrics are computed
    m = evaluate.binary_metrics(y, prob)

    # Then they match the counts worked out by hand (0.5 counts as positive)
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["examples"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    expected_loss = -np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob))
    assert m["loss"] == pytest.approx(expected_loss)
    # 16 positive/negative pairs, misordered: 0.5 < 0.7, 0.2 < 0.7, 0.2 < 0.3, 0.2 < 0.4
    assert m["roc_auc"] == pytest.approx(12 / 16)
    json.dumps(m)  # JSON-able as written to metrics.json


def test_binary_metrics_degenerate_cases() -> None:
    # Given predictions that are all negative for labels that are all negative
    m = evaluate.binary_metrics(np.zeros(4), np.array([0.0, 0.1, 0.2, 0.3]))

    # Then precision/recall/F1 are 0 rather than a division error, ROC-AUC is undefined
    assert m["accuracy"] == 1.0
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert np.isnan(m["roc_auc"])
    assert np.isfinite(m["loss"])  # probabilities of exactly 0 or 1 are clipped

    # And perfect, confident predictions give a tiny loss and perfect scores
    perfect = evaluate.binary_metrics(np.array([0, 1, 1]), np.array([0.0, 1.0, 1.0]))
    assert perfect["accuracy"] == perfect["f1"] == perfect["roc_auc"] == 1.0
    assert 0 <= perfect["loss"] < 1e-6


def _pairwise_auc(y: np.ndarray, score: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos, neg = score[y == 1], score[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_a_brute_force_pairwise_count(seed: int) -> None:
    # Given random labels and scores with many ties (rounded scores)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = rng.integers(0, 2, size=n)
    y[0], y[1] = 0, 1  # both classes present
    score = np.round(rng.random(n), int(rng.integers(1, 3)))

    # When / then the rank-sum AUC equals the pairwise definition
    assert evaluate.roc_auc(y, score) == pytest.approx(_pairwise_auc(y, score), abs=1e-12)


# --- a tiny trained and exported model ------------------------------------------------------


@dataclass
class Exported:
    config: PipelineConfig
    data: ProcessedData
    run_dir: Path
    best: ckpt.Checkpoint
    metrics: dict
    model_dir: Path


@pytest.fixture(scope="module")
def exported(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A tiny model trained 8 epochs on the small archive and exported."""
    import keras

    tmp = tmp_path_factory.mktemp("export")
    data = tokenize_small(small_archive, tmp / "processed")
    config = tiny_config(tmp, source=str(small_archive), epochs=8, early_stopping=False)
    run_dir = tmp / "art" / "runs" / "run-1"
    run_dir.mkdir(parents=True)
    train_mod.train(config, data, run_dir)
    best = ckpt.find_best_checkpoint(run_dir)
    assert best is not None
    model = keras.models.load_model(best.model_path, compile=False)
    metrics = evaluate.evaluate(model, data.split_path("test"), config.sequence_length)
    model_dir = export.export(
        best.model_path, tmp / "art" / "models", "run-1", config, data, metrics, best.epoch
    )
    return Exported(config, data, run_dir, best, metrics, model_dir)


def test_export_writes_the_model_folder(exported: Exported) -> None:
    # Given an exported model
    folder = exported.model_dir

    # Then the folder has both model formats, the tokenizer and a model card, nothing else
    assert folder == exported.config.artifacts_dir / "models" / "run-1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "sentiment-lstm.h5",
            "model.keras",
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
    import keras

    # Given inputs padded at the front, and the in-memory predictions of the best checkpoint
    rng = np.random.default_rng(0)
    x = rng.integers(1, 60, size=(6, 40)).astype(np.int32)
    x[:3, :10] = 0
    np.save(tmp_path / "x.npy", x)
    best = keras.models.load_model(exported.best.model_path, compile=False)
    expected = np.asarray(best(x, training=False))

    # When the exported .keras and .h5 are loaded and run in a new Python process
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import keras

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


# --- Predictor ----------------------------------------------------------------------------


def _review(words: list[str], n: int = 30) -> str:
    return " ".join(words[i % len(words)] for i in range(n))


def test_predictor_scores_text_and_ranks_sentiment(exported: Exported) -> None:
    # Given the exported model folder
    predictor = Predictor(exported.model_dir)
    positive = _review(["the", "film", *POSITIVE])
    negative = _review(["the", "film", *NEGATIVE])

    # When raw reviews are scored (including an empty one and unknown words)
    prob = predictor.predict([positive, negative, "", "zzz qqq unknownword"])

    # Then each is a probability, and the positive review ranks above the negative one
    assert prob.shape == (4,)
    assert np.all((prob >= 0) & (prob <= 1))
    assert prob[0] > prob[1]
    assert prob[0] > 0.5 > prob[1]
    assert predictor.path == exported.model_dir / "model.keras"


def test_predictor_encodes_like_the_tokenised_data(exported: Exported) -> None:
    # Given test reviews with their tokenised ids
    table = pq.read_table(exported.data.split_path("test"), columns=["text", "token_ids"])
    texts = table.column("text").to_pylist()[:10]
    ids = table.column("token_ids").to_pylist()[:10]

    # When the predictor encodes the raw texts
    encoded = Predictor(exported.model_dir).encode(texts)

    # Then it gets the training ids, truncated to the last sequence_length tokens
    bounds = zip(encoded.offsets[:-1], encoded.offsets[1:], strict=True)
    rows = [encoded.values[a:b].tolist() for a, b in bounds]
    assert rows == [row[-40:] for row in ids]


def test_predictor_accepts_a_model_file_and_falls_back_to_h5(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a copy of the export without its .keras file
    folder = tmp_path / "only-h5"
    folder.mkdir()
    for name in ("sentiment-lstm.h5", "vocab.txt", "tokenizer.json"):
        (folder / name).write_bytes((exported.model_dir / name).read_bytes())
    texts = [_review(POSITIVE), _review(NEGATIVE)]
    expected = Predictor(exported.model_dir).predict(texts)

    # When predictors are made from the folder and from the .h5 file in the original
    from_folder = Predictor(folder)
    from_file = Predictor(exported.model_dir / "sentiment-lstm.h5")

    # Then both use the .h5 and agree with the .keras model
    assert from_folder.path == folder / "sentiment-lstm.h5"
    assert from_file.path == exported.model_dir / "sentiment-lstm.h5"
    assert np.allclose(from_folder.predict(texts), expected, atol=1e-6)
    assert np.allclose(from_file.predict(texts), expected, atol=1e-6)


def test_predictor_rejects_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    # Given a folder without a model / When / Then the error says what --model must be
    with pytest.raises(FileNotFoundError, match="exported model folder"):
        Predictor(tmp_path)


# --- read_texts -----------------------------------------------------------------------------


def test_read_texts_from_txt_jsonl_and_parquet(tmp_path: Path) -> None:
    # Given the same reviews as .txt, .jsonl (with a blank line) and .parquet
    (tmp_path / "r.txt").write_text("great film\nawful plot\n", encoding="utf-8")
    (tmp_path / "r.jsonl").write_text(
        '{"text": "great film", "id": 1}\n\n{"text": "awful plot"}\n', encoding="utf-8"
    )
    pq.write_table(
        pa.table({"id": [1, 2], "text": ["great film", "awful plot"]}), tmp_path / "r.parquet"
    )

    # When / then each yields the texts in order
    for name in ("r.txt", "r.jsonl", "r.parquet"):
        assert list(read_texts(tmp_path / name)) == ["great film", "awful plot"], name


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("r.jsonl", '{"text": "ok"}\n{"body": "no text"}\n', ValueError, r"r\.jsonl:2: .*`text`"),
        ("r.jsonl", '{"text": "ok"}\nnot json\n', ValueError, r"r\.jsonl:2: not valid JSON"),
        ("r.jsonl", '["text"]\n', ValueError, r"r\.jsonl:1: .*`text`"),
        ("r.parquet", None, ValueError, r"no `text` column \(columns: review\)"),
        ("missing.txt", None, FileNotFoundError, "does not exist"),
    ],
)
def test_read_texts_errors_name_the_problem(
    tmp_path: Path, name: str, content: str | None, error: type, message: str
) -> None:
    # Given a bad input file (or none)
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    elif name.endswith(".parquet"):
        pq.write_table(pa.table({"review": ["great film"]}), path)

    # When / then reading it fails with a message naming the file, line or column
    with pytest.raises(error, match=message):
        list(read_texts(path))
