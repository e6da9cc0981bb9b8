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
