"""Tests of the champion link and of what a night reuses of the champion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.serving import champion, registry
from tests.tasks.serving.fake_exports import card, fake_export


def test_unchanged_reason_names_the_champion_with_the_same_data_and_config(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    assert champion.unchanged_reason(models, "v1", "cfg") is None  # no champion: train
    a = card(fake_export(models, "run-a"), "v1", [], digest="cfg")
    champion.switch_champion(models, a)
    reason = champion.unchanged_reason(models, "v1", "cfg")
    assert reason is not None and "run-a" in reason and "v1" in reason
    assert champion.unchanged_reason(models, "v2", "cfg") is None  # new data version
    assert champion.unchanged_reason(models, "v1", "other") is None  # other settings

    # Given a candidate on v2 that was judged and kept out
    registry.append_event(
        models, registry.CANDIDATE, "run-b", data_version="v2", config_digest="cfg"
    )
    assert champion.unchanged_reason(models, "v2", "cfg") is None  # not decided yet: train
    registry.append_event(models, registry.DECISION, "run-b", reason="not significantly better")
    # Then training it again would only reproduce it: skipped, naming it and its decision
    again = champion.unchanged_reason(models, "v2", "cfg")
    assert again is not None and "run-b" in again and "not significantly better" in again


def test_switch_champion_replaces_the_link_in_one_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a champion link to run-a, and a stale temporary link of a killed earlier switch
    models = tmp_path / "models"
    a, b = fake_export(models, "run-a"), fake_export(models, "run-b")
    champion.switch_champion(models, a)
    stale = models / f".champion.{os.getpid()}.tmp"
    os.symlink("run-a", stale)
    renames: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def replace(src, dst) -> None:
        # The new link is complete before the rename; readers see the old or the new one.
        renames.append((Path(src).name, Path(dst).name, os.readlink(src)))
        assert os.readlink(dst) == "run-a"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)

    # When the champion is switched to run-b
    champion.switch_champion(models, b)

    # Then one rename of a temporary symlink onto `champion` did it, leaving no temp behind
    assert renames == [(stale.name, "champion", "run-b")]
    assert os.readlink(models / "champion") == "run-b"
    assert champion.current_champion(models) == b.resolve()
    assert sorted(p.name for p in models.iterdir()) == ["champion", "run-a", "run-b"]


def test_current_champion_is_none_unless_the_link_reaches_a_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a = fake_export(models, "run-a")
    # No link at all; a plain folder named champion is not a link
    assert champion.current_champion(models) is None
    (models / "champion").mkdir()
    assert champion.current_champion(models) is None
    (models / "champion").rmdir()
    # A link to a folder without model.keras, or a dangling link
    champion.switch_champion(models, a)
    (a / "model.keras").unlink()
    assert champion.current_champion(models) is None
    champion.switch_champion(models, models / "gone")
    assert champion.current_champion(models) is None
