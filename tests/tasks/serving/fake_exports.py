"""Export folders that hold only what a test of the champion link or the registry reads."""

from __future__ import annotations

import json
from pathlib import Path


def fake_export(models_dir: Path, name: str) -> Path:
    folder = models_dir / name
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"not a real model")
    return folder


def card(folder: Path, data_version: str, incoming: list[str], digest: str = "cfg") -> Path:
    (folder / "model-card.json").write_text(
        json.dumps(
            {"data_fingerprint": data_version, "data_incoming": incoming, "config_digest": digest}
        )
    )
    return folder
