"""docs/config.md is the reference generated from PipelineConfig, and it is current."""

from __future__ import annotations

from pathlib import Path

from tasks.config import PipelineConfig
from tasks.config_reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_the_config_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run `make docs` and commit docs/config.md"


def test_every_field_has_a_row_with_its_flag() -> None:
    page = render()
    for name in PipelineConfig.model_fields:
        assert f"| `{name}` | `--{name.replace('_', '-')}`" in page
