"""A run continues only with the data and settings it started with."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.config import PipelineConfig
from tasks.core.run_folder import RunError
from tasks.training.resuming import check_compatible

CONFIG = PipelineConfig(source="unused.tar.gz", epochs=3)


def checkpoint(**manifest) -> SimpleNamespace:
    return SimpleNamespace(path=Path("run/checkpoints/epoch-0002"), manifest=manifest)


def test_the_same_data_and_settings_continue() -> None:
    latest = checkpoint(config_digest=CONFIG.digest(), data_fingerprint="abc")
    check_compatible(Path("run"), {"data_fingerprint": "abc"}, CONFIG, "abc", latest)  # type: ignore[arg-type]
    check_compatible(Path("run"), {"data_fingerprint": "abc"}, CONFIG, "abc", None)


@pytest.mark.parametrize(
    ("info", "manifest", "message"),
    [
        ({"data_fingerprint": "old"}, None, "was trained on data old, but the archive"),
        (
            {"data_fingerprint": "abc"},
            {"config_digest": "0" * 16, "data_fingerprint": "abc"},
            "written with config 0000000000000000",
        ),
        (
            {"data_fingerprint": "abc"},
            {"config_digest": CONFIG.digest(), "data_fingerprint": "x"},
            "was trained on data x, not abc",
        ),
    ],
)
def test_other_data_or_settings_are_refused_with_a_reason(info, manifest, message) -> None:
    latest = checkpoint(**manifest) if manifest else None
    with pytest.raises(RunError, match=message):
        check_compatible(Path("run"), info, CONFIG, "abc", latest)  # type: ignore[arg-type]
