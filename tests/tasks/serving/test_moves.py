"""Tests of the champion by hand: show, history, promote, rollback, and what a rollback means
for later nights."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from flows.cli import main
from tasks.serving import champion, moves, registry


def export(models_dir: Path, run_id: str, data_version: str = "v1", digest: str = "cfg") -> Path:
    """A complete export folder (the model a small valid zip: nothing here loads it)."""
    folder = models_dir / run_id
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    for name in ("sentiment-lstm.h5", "vocab.txt", "tokenizer.json"):
        (folder / name).write_text("x")
    card = {
        "run_id": run_id,
        "data_fingerprint": data_version,
        "config_digest": digest,
        "test_metrics": {"accuracy": 0.9, "accuracy_ci95": [0.89, 0.91], "roc_auc": 0.95},
    }
    (folder / "model-card.json").write_text(json.dumps(card))
    return folder


def night_promotes(models_dir: Path, run_id: str) -> None:
    """What the nightly leaves when it promotes `run_id`."""
    previous = champion.current_champion(models_dir)
    champion.switch_champion(models_dir, models_dir / run_id)
    registry.append_event(
        models_dir, registry.PROMOTION, run_id, previous=previous.name if previous else None
    )


def state(models_dir: Path) -> tuple[str | None, str]:
    link = models_dir / "champion"
    return (os.readlink(link) if link.is_symlink() else None), (
        (models_dir / "registry.jsonl").read_text()
        if (models_dir / "registry.jsonl").exists()
        else ""
    )


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """Three exports; the nights promoted a, then b."""
    models_dir = tmp_path / "artifacts" / "models"
    for run_id, data in (("a", "v1"), ("b", "v2"), ("c", "v3")):
        export(models_dir, run_id, data)
    night_promotes(models_dir, "a")
    night_promotes(models_dir, "b")
    return models_dir


def test_promote_then_rollback_keep_the_link_and_the_registry_in_agreement(models: Path) -> None:
    # When an operator promotes c, then rolls back
    promoted = moves.promote(models, "c", reason="better on the complaints sample")
    assert os.readlink(models / "champion") == "c"
    back = moves.rollback(models, reason="c misbehaves")

    # Then the link names b again, and each move is one registry line saying who and why
    assert os.readlink(models / "champion") == "b"
    assert champion.current_champion(models) == (models / "b").resolve()
    events = registry.read_events(models)
    assert events[-2:] == [promoted, back]
    assert (promoted["event"], promoted["previous"], promoted["manual"]) == ("promotion", "b", True)
    assert (back["event"], back["run_id"], back["previous"]) == ("rollback", "b", "c")
    assert back["reason"] == "c misbehaves" and back["user"] and back["host"]
    # And show and history say the same
    shown = moves.show(models)
    assert (shown["run_id"], shown["data_version"]) == ("b", "v2")
    assert shown["champion_since"] == back
    assert [e["event"] for e in moves.history(models)][:2] == ["rollback", "promotion"]


def test_rollbacks_never_return_to_a_model_rolled_back(models: Path) -> None:
    # Given c promoted after b, then rolled back (b is the champion again)
    moves.promote(models, "c")
    moves.rollback(models)

    # When the operator rolls back once more
    moves.rollback(models)

    # Then the champion is a, the one before b, not c
    assert os.readlink(models / "champion") == "a"
    with pytest.raises(moves.ChampionError, match="a has no earlier champion"):
        moves.rollback(models)


def test_a_rolled_back_model_is_not_trained_again_on_its_data_and_settings(models: Path) -> None:
    # Given b rolled back to a
    moves.rollback(models, reason="bad in use")

    # When a night comes with b's data version and settings, then it trains nothing, saying why
    reason = champion.unchanged_reason(models, "v2", "cfg")
    assert reason is not None and "rolled back" in reason and "bad in use" in reason
    # And other data is trained as usual
    assert champion.unchanged_reason(models, "v4", "cfg") is None

    # When the operator promotes b again, then its data version is b's, as the champion's
    moves.promote(models, "b")
    assert "those of the champion b" in champion.unchanged_reason(models, "v2", "cfg")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: None, "no exported model 'zz'"),
        (lambda m: (m / "c" / "vocab.txt").unlink(), "incomplete: vocab.txt missing"),
        (lambda m: (m / "c" / "model.keras").write_bytes(b"PK\x03\x04 torn"), "does not read back"),
        (lambda m: (m / "c" / "model-card.json").write_text("{"), "does not read back"),
    ],
)
def test_a_bad_promotion_is_refused_and_changes_nothing(models: Path, damage, message) -> None:
    # Given an unknown run id or a damaged export
    damage(models)
    before = state(models)

    # When it is promoted, then a clear error names the problem, and nothing changed
    with pytest.raises(moves.ChampionError, match=message):
        moves.promote(models, "zz" if "zz" in message else "c")
    assert state(models) == before


def test_rollback_without_an_earlier_champion_is_refused(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    with pytest.raises(moves.ChampionError, match="nothing to roll back"):
        moves.rollback(models_dir)
    export(models_dir, "a")
    night_promotes(models_dir, "a")
    before = state(models_dir)
    with pytest.raises(moves.ChampionError, match="a has no earlier champion"):
        moves.rollback(models_dir)
    assert state(models_dir) == before


def test_the_champion_commands_print_json_and_exit_non_zero_on_errors(
    models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifacts = ["--artifacts-dir", str(models.parent)]
    # When the operator promotes c from the command line
    assert main(["champion", "promote", "c", "--reason", "by hand", *artifacts, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    # Then the JSON line is the registry's, and show agrees
    assert (out["ok"], out["run_id"], out["previous"], out["mlflow"]) == (True, "c", "b", None)
    assert main(["champion", "show", *artifacts, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["run_id"] == "c"
    assert main(["champion", "history", *artifacts, "--json"]) == 0
    events = json.loads(capsys.readouterr().out.splitlines()[-1])["events"]
    assert events[0]["event"] == "promotion" and events[0]["run_id"] == "c"

    # When a rollback names an unknown export, then it fails with one clear line
    assert main(["champion", "rollback", "--to", "nope", *artifacts, "--json"]) == 1
    captured = capsys.readouterr()
    assert "no exported model 'nope'" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["ok"] is False
    assert os.readlink(models / "champion") == "c"


def test_a_corrupt_registry_line_is_named_and_the_others_still_count(
    models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a registry with a damaged line between two good ones (a hand edit, a torn write)
    path = models / "registry.jsonl"
    good = path.read_text().splitlines()
    path.write_text("\n".join([good[0], '{"event": "promo', good[1]]) + "\n")

    # When the history is read and a rollback made, then the damaged line is named, the others
    # count, and the rollback goes back to a as it would have
    with caplog.at_level("WARNING"):
        assert [e["run_id"] for e in moves.history(models)] == ["b", "a"]
        moves.rollback(models)
    assert "registry.jsonl:2 is not a complete JSON line" in caplog.text
    assert os.readlink(models / "champion") == "a"
