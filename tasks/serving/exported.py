"""An exported model folder, artifacts/models/<run_id>/: its file names, its readers and what
makes it complete, in one place. `export.export` writes one; every reader goes through here.

A complete export holds the Keras model twice (`model.keras`, `sentiment-lstm.h5`), the
tokenizer (`vocab.txt`, line i is id i, and `tokenizer.json`), the model card (`model-card.md`,
`model-card.json`), the report and, for an end-padded model, `saved_model/`. Scoring needs one
of the two model files and the tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

H5_FILE = "sentiment-lstm.h5"
KERAS_FILE = "model.keras"
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "model-card.md"
CARD_JSON = "model-card.json"
SAVED_MODEL_DIR = "saved_model"
REPORT_FILE = "report.html"  # a copy of the run folder's report
# Every file a complete export has (a champion move checks them all).
EXPORT_FILES = (KERAS_FILE, H5_FILE, VOCAB_FILE, TOKENIZER_FILE, CARD_JSON)


@dataclass(frozen=True)
class ExportedModel:
    """The export folder at `path` (which need not be complete: ask `missing`)."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def keras(self) -> Path:
        return self.path / KERAS_FILE

    @property
    def h5(self) -> Path:
        return self.path / H5_FILE

    @property
    def vocab_path(self) -> Path:
        return self.path / VOCAB_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def card_path(self) -> Path:
        return self.path / CARD_JSON

    @property
    def card_md(self) -> Path:
        return self.path / CARD_FILE

    @property
    def saved_model(self) -> Path:
        return self.path / SAVED_MODEL_DIR

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def model_file(self) -> Path:
        """The .keras model, else the .h5 one where only that is there."""
        return self.h5 if not self.keras.exists() and self.h5.exists() else self.keras

    def missing(self) -> list[Path]:
        """What scoring needs and the folder lacks: a model file and the tokenizer."""
        needed = (self.model_file, self.vocab_path, self.tokenizer_path)
        return [p for p in needed if not p.exists()]

    def is_published(self) -> bool:
        """The export was written (the folder appears whole, in one rename, with its card)."""
        return self.keras.is_file() and self.card_path.is_file()

    def card(self) -> dict[str, Any]:
        """model-card.json; empty when it is missing or unreadable (an older or broken export)."""
        try:
            return json.loads(self.card_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
            return {}

    def tokenizer_settings(self) -> dict[str, Any]:
        return json.loads(self.tokenizer_path.read_text(encoding="utf-8"))

    def vocabulary(self) -> list[str]:
        """The words in id order (line i of vocab.txt is id i)."""
        return self.vocab_path.read_text(encoding="utf-8").splitlines()
