"""Tests of `predict_command`: scoring review texts and files with an exported model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flows.predict
from flows.cli import main
from flows.predict import predict_command
from tasks.serving.predict import Predictor
from tests.imdb_fixtures import NEGATIVE, POSITIVE, Exported, review


def test_predict_prints_a_json_line_per_text_in_order(
    exported: Exported,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two reviews as arguments and three in a .txt file, scored 2 at a time
    monkeypatch.setattr(flows.predict, "BATCH", 2)
    texts = [review(POSITIVE), review(NEGATIVE)]
    more = [review(["the", "film", *POSITIVE]), "zzz qqq", review(["the", "plot", *NEGATIVE])]
    (tmp_path / "more.txt").write_text("\n".join(more) + "\n", encoding="utf-8")

    # When they are scored as JSON
    summary = predict_command(exported.model_dir, tmp_path / "more.txt", texts, as_json=True)

    # Then there is one JSON line per review: the arguments first, then the file, in order
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == [*texts, *more]
    # And each has the model's probability (rounded) and the label at 0.5
    expected = Predictor(exported.model_dir).predict([*texts, *more])
    for row, prob in zip(rows, expected, strict=True):
        assert row["probability"] == pytest.approx(prob, abs=1e-6)
        assert row["label"] == ("positive" if prob >= 0.5 else "negative")
    assert (rows[0]["label"], rows[1]["label"]) == ("positive", "negative")
    # And the summary counts them
    assert summary == {
        "flow": "predict",
        "model": str(exported.model_dir / "model.keras"),
        "count": 5,
        "positive": sum(r["label"] == "positive" for r in rows),
    }


def test_predict_prints_a_tab_separated_line_without_json(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a review longer than 80 characters
    text = review(POSITIVE, n=40)
    assert len(text) > 80

    # When it is scored as text
    summary = predict_command(exported.model_dir, None, [text], as_json=False)

    # Then the line is the probability to 4 places, the label and the text's first 80 characters
    prob = Predictor(exported.model_dir).predict([text])[0]
    line = capsys.readouterr().out
    assert line == f"{prob:.4f}\tpositive\t{text[:80]}\n"
    assert (summary["count"], summary["positive"]) == (1, 1)


def test_predict_without_texts_or_input_fails(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given neither texts nor --input / When / then it fails with a usage hint, printing nothing
    with pytest.raises(ValueError, match="--input FILE"):
        predict_command(exported.model_dir, None, [], as_json=True)
    assert capsys.readouterr().out == ""


def test_predict_with_a_folder_that_is_not_an_export_fails(tmp_path: Path) -> None:
    # Given a folder without a model / When / then it fails, saying what --model must be
    with pytest.raises(FileNotFoundError, match="--model must be an exported model folder"):
        predict_command(tmp_path, None, ["great film"], as_json=True)


def test_predict_with_a_model_path_that_does_not_exist_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a --model path that does not exist
    missing = tmp_path / "nonexistent"

    # When the CLI predicts with it
    code = main(["predict", "--model", str(missing), "--json", "great film"])

    # Then it exits 1, naming the path given (not a model.keras beside it), and prints no score
    out, err = capsys.readouterr()
    assert code == 1
    assert f"imdb-pipeline predict failed: {missing} not found: --model must be" in err
    assert "model.keras" not in err
    assert json.loads(out.strip().splitlines()[-1])["ok"] is False
