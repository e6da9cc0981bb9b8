"""Tests of the `evaluate` flow: re-evaluating an exported model on its test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.cli import main
from flows.evaluate import evaluate_exported
from tests.imdb_fixtures import Exported

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_evaluate_reports_the_export_test_metrics(exported: Exported) -> None:
    # Given the tiny exported model and the folder holding its tokenised data

    # When the flow re-evaluates the model folder
    summary = evaluate_exported(exported.model_dir, exported.data_dir)

    # Then it reports the .keras model's metrics on the whole test split, as at export time
    assert summary["flow"] == "evaluate"
    assert summary["model"] == str(exported.model_dir / "model.keras")
    metrics = summary["test_metrics"]
    assert summary["test_accuracy"] == metrics["accuracy"]
    assert metrics["examples"] == 80
    assert metrics["confusion_matrix"] == exported.metrics["confusion_matrix"]
    for key in ("accuracy", "loss", "roc_auc", "f1"):
        assert metrics[key] == pytest.approx(exported.metrics[key], abs=1e-9), key


def test_evaluate_of_the_h5_file_gives_the_same_metrics(exported: Exported) -> None:
    # Given the .h5 file inside the export / When the flow evaluates it
    summary = evaluate_exported(exported.model_dir / "sentiment-lstm.h5", exported.data_dir)

    # Then that file was used, and it scores like the .keras model
    assert summary["model"] == str(exported.model_dir / "sentiment-lstm.h5")
    assert summary["test_metrics"]["confusion_matrix"] == exported.metrics["confusion_matrix"]
    assert summary["test_accuracy"] == pytest.approx(exported.metrics["accuracy"], abs=1e-9)
    assert summary["test_metrics"]["loss"] == pytest.approx(exported.metrics["loss"], abs=1e-5)


def test_evaluate_of_a_folder_without_a_model_card_fails(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a copy of the export without its model-card.json
    folder = tmp_path / "no-card"
    shutil.copytree(exported.model_dir, folder)
    (folder / "model-card.json").unlink()

    # When / then the flow fails, saying what --model must be
    with pytest.raises(FileNotFoundError, match="model-card.json not found: --model must be"):
        evaluate_exported(folder, exported.data_dir)


def test_evaluate_without_the_tokenised_data_fails(exported: Exported, tmp_path: Path) -> None:
    # Given a data folder without the model's tokenised data
    # When / then the flow fails, naming the fingerprint and the command that makes the data
    with pytest.raises(FileNotFoundError, match=exported.data.fingerprint) as failed:
        evaluate_exported(exported.model_dir, tmp_path / "data")
    assert "imdb-pipeline prepare" in str(failed.value)


def test_cli_evaluate_runs_without_a_flow_and_names_a_missing_model(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the export, and a --model path that does not exist
    missing = tmp_path / "nonexistent"
    data_dir = str(exported.data_dir)

    # When `imdb-pipeline evaluate --json` runs with each
    ok = main(["evaluate", "--model", str(exported.model_dir), "--data-dir", data_dir, "--json"])
    out, _ = capsys.readouterr()
    failed = main(["evaluate", "--model", str(missing), "--data-dir", data_dir, "--json"])

    # Then the export's metrics are the flow's, and the missing path is named
    summary = json.loads(out.strip().splitlines()[-1])
    assert (ok, summary["ok"]) == (0, True)
    assert summary == {**evaluate_exported(exported.model_dir, exported.data_dir), "ok": True}
    out, err = capsys.readouterr()
    assert failed == 1
    assert f"{missing} not found: --model must be an exported model folder" in err
    assert json.loads(out.strip().splitlines()[-1])["ok"] is False
