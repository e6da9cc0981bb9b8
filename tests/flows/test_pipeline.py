"""End-to-end tests of the `pipeline` flow and the train/evaluate/predict CLI commands.

The command-line parser and its config validation are tested in test_cli.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.cli import main
from flows.pipeline import pipeline
from tasks.config import PipelineConfig
from tasks.serving.predict import Predictor
from tests.imdb_fixtures import pipeline_config, train_argv

pytestmark = pytest.mark.usefixtures("prefect_server")


@dataclass
class Finished:
    config: PipelineConfig
    summary: dict


@pytest.fixture(scope="module")
def finished(
    prefect_server, small_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> Finished:
    """One whole pipeline run (2 epochs of a tiny model) on the small archive."""
    tmp = tmp_path_factory.mktemp("pipeline")
    config = pipeline_config(small_archive, tmp)
    return Finished(config, pipeline(config, run_id="run-1"))


def test_pipeline_trains_evaluates_and_exports(finished: Finished) -> None:
    # Given a finished pipeline run
    summary = finished.summary
    artifacts = finished.config.artifacts_dir.resolve()

    # Then the summary reports the run and its test accuracy
    assert summary["flow"] == "pipeline"
    assert summary["run_id"] == "run-1"
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["epochs_completed"] == 2
    assert summary["stopped_early"] is False
    assert summary["selected_epoch"] in (1, 2)
    metrics = summary["test_metrics"]
    assert metrics["examples"] == 80
    assert metrics["split"] == "test"
    assert metrics["accuracy"] == summary["test_accuracy"]
    json.dumps(summary)  # the CLI prints it as JSON

    # And the model was exported with its tokenizer
    model_dir = Path(summary["model_dir"])
    assert model_dir == artifacts / "models" / "run-1"
    for name in ("sentiment-lstm.h5", "model.keras", "vocab.txt", "tokenizer.json"):
        assert (model_dir / name).is_file(), name

    # And the run folder records completion, test metrics and plots
    run_dir = Path(summary["run_dir"])
    assert run_dir == artifacts / "runs" / "run-1"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["model_dir"] == str(model_dir)
    assert info["config_digest"] == finished.config.digest()
    assert len(info["flow_run_ids"]) == 1
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    for plot in ("training-curves.png", "confusion-matrix.png", "calibration.png"):
        assert (run_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    # And its report, the same page in the export
    page = (run_dir / "report.html").read_text()
    assert "Test metrics (80 reviews)" in page and "run-1" in page
    assert (model_dir / "report.html").read_text() == page
    assert (run_dir / "history.csv").is_file()
    assert [p.name for p in (run_dir / "best").iterdir()] == [
        f"epoch-{summary['selected_epoch']:04d}"
    ]


def test_pipeline_refuses_to_reuse_a_run_folder(finished: Finished) -> None:
    # Given a finished run "run-1"
    run_json = finished.config.artifacts_dir.resolve() / "runs" / "run-1" / "run.json"
    before = run_json.read_bytes()

    # When another pipeline is started with the same run id
    with pytest.raises(Exception, match="already exists; runs never share one"):
        pipeline(finished.config, run_id="run-1")

    # Then the finished run is left as it was
    assert run_json.read_bytes() == before


def test_cli_train_prints_a_json_summary(
    small_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given tiny settings as command-line flags
    argv = [*train_argv(small_archive, tmp_path), "--epochs", "1", "--run-id", "cli-run"]

    # When `imdb-pipeline train --json` runs
    code = main([*argv, "--json"])

    # Then it succeeds, and the last stdout line is the JSON summary of the run
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["run_id"] == "cli-run"
    assert summary["epochs_completed"] == 1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert (Path(summary["model_dir"]) / "sentiment-lstm.h5").is_file()
    assert "test accuracy" in err
    info = json.loads((tmp_path / "art" / "runs" / "cli-run" / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["config"]["lstm_units"] == 8
    assert info["config"]["bidirectional"] is False


def test_cli_predict_prints_json_lines(
    finished: Finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an exported model, and reviews as arguments and in a .jsonl file
    model_dir = finished.summary["model_dir"]
    (tmp_path / "more.jsonl").write_text('{"text": "awful boring plot"}\n')

    # When `imdb-pipeline predict --json` runs
    code = main(
        ["predict", "--model", model_dir, "good film", "great wonderful", "--json"]
        + ["--input", str(tmp_path / "more.jsonl")]
    )

    # Then it prints one JSON line per review with its probability and label
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["text"] for r in lines] == ["good film", "great wonderful", "awful boring plot"]
    expected = Predictor(Path(model_dir)).predict([r["text"] for r in lines])
    for row, prob in zip(lines, expected, strict=True):
        assert 0.0 <= row["probability"] <= 1.0
        assert row["probability"] == pytest.approx(prob, abs=1e-6)
        assert row["label"] == ("positive" if row["probability"] >= 0.5 else "negative")
    assert "scored 3 reviews" in err


def test_cli_predict_without_texts_fails(
    finished: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no review texts and no --input / When / Then it fails with a usage hint
    code = main(["predict", "--model", finished.summary["model_dir"]])
    assert code == 1
    assert "--input" in capsys.readouterr().err


def test_cli_evaluate_matches_the_pipeline_test_metrics(
    finished: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the exported model of a finished pipeline run and its data folder
    model_dir = finished.summary["model_dir"]

    # When `imdb-pipeline evaluate --json` re-evaluates it
    code = main(
        ["evaluate", "--model", model_dir, "--data-dir", str(finished.config.data_dir), "--json"]
    )

    # Then it reports the same test metrics as the pipeline did
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] is True
    expected = finished.summary["test_metrics"]
    assert result["test_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-9)
    for key in ("loss", "roc_auc", "f1"):
        assert result["test_metrics"][key] == pytest.approx(expected[key], abs=1e-9), key
    assert result["test_metrics"]["confusion_matrix"] == expected["confusion_matrix"]
