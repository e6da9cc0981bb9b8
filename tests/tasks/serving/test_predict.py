"""Tests of scoring raw text with an exported model (Predictor) and reading input files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.serving.predict import Predictor, read_texts
from tests.imdb_fixtures import NEGATIVE, POSITIVE, Exported, review

# --- Predictor ----------------------------------------------------------------------------


def test_predictor_scores_text_and_ranks_sentiment(exported: Exported) -> None:
    # Given the exported model folder
    predictor = Predictor(exported.model_dir)
    positive = review(["the", "film", *POSITIVE])
    negative = review(["the", "film", *NEGATIVE])

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
    texts = [review(POSITIVE), review(NEGATIVE)]
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


def test_read_texts_keeps_every_line_of_a_txt(tmp_path: Path) -> None:
    # Given reviews as .txt with a blank line, and as .jsonl and .parquet with ids
    (tmp_path / "r.txt").write_text("great film\n\nawful plot\n", encoding="utf-8")
    (tmp_path / "r.jsonl").write_text(
        '{"text": "great film", "id": 1}\n\n{"text": "awful plot"}\n', encoding="utf-8"
    )
    pq.write_table(
        pa.table({"id": [1, 2], "text": ["great film", "awful plot"]}), tmp_path / "r.parquet"
    )

    # When / then each yields its texts in order, the .txt one line per output line
    assert read_texts(tmp_path / "r.txt") == ["great film", "", "awful plot"]
    for name in ("r.jsonl", "r.parquet"):
        assert read_texts(tmp_path / name) == ["great film", "awful plot"], name
