"""One owner of an export folder's layout: its files, its completeness and its readers."""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.serving.exported import EXPORT_FILES, SAVED_MODEL_DIR, ExportedModel
from tests.imdb_fixtures import Exported


def test_a_complete_export_reads_back(exported: Exported) -> None:
    export = ExportedModel(exported.model_dir)
    assert export.run_id == "run-1" and export.missing() == [] and export.is_published()
    assert all((export.path / name).is_file() for name in EXPORT_FILES)
    assert (export.path / SAVED_MODEL_DIR / "saved_model.pb").is_file()
    assert export.card()["run_id"] == "run-1"
    assert export.vocabulary()[:2] == ["<pad>", "<oov>"]
    assert export.tokenizer_settings()["sequence_length"] == exported.config.sequence_length


def test_what_scoring_lacks_is_named_and_the_h5_stands_in(
    exported: Exported, tmp_path: Path
) -> None:
    # Given a copy of an export without its .keras file, then without its tokenizer too
    folder = tmp_path / "run-1"
    shutil.copytree(exported.model_dir, folder)
    (folder / "model.keras").unlink()
    export = ExportedModel(folder)
    # Then the .h5 model scores in its place, and the folder is no longer a published export
    assert export.model_file == folder / "sentiment-lstm.h5" and export.missing() == []
    assert not export.is_published()
    (folder / "tokenizer.json").unlink()
    assert export.missing() == [folder / "tokenizer.json"]


def test_a_broken_card_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / "model-card.json").write_text("{not json")
    assert ExportedModel(tmp_path).card() == {}
