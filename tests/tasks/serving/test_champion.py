"""Tests of the champion model: the promotion decision and the atomic symlink switch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.data.processed import ProcessedData
from tasks.serving import champion
from tests.imdb_fixtures import tiny_config, tokenize_small


def fake_export(models_dir: Path, name: str) -> Path:
    folder = models_dir / name
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"not a real model")
    return folder


@dataclass
class Scores:
    """Validation accuracy of each fake export by folder name, and who was scored."""

    table: dict[str, float] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def scores(monkeypatch: pytest.MonkeyPatch) -> Scores:
    scored = Scores()

    def accuracy(model_dir: Path, validation_parquet: Path) -> tuple[float, int]:
        assert validation_parquet == Path("validation.parquet")
        scored.calls.append(model_dir.name)
        return scored.table[model_dir.name], 100

    monkeypatch.setattr(champion, "validation_accuracy", accuracy)
    return scored


def test_first_model_is_promoted_and_better_or_equal_ones_replace_it(
    tmp_path: Path, scores: Scores
) -> None:
    models = tmp_path / "models"
    a, b, c, d = (fake_export(models, n) for n in ("run-a", "run-b", "run-c", "run-d"))
    scores.table.update({"run-a": 0.70, "run-b": 0.80, "run-c": 0.80, "run-d": 0.79})
    validation = Path("validation.parquet")

    # Given no champion yet, when run-a is offered, then it is promoted
    assert champion.current_champion(models) is None
    first = champion.promote_if_better(models, a, validation)
    assert first == champion.Decision(True, "run-a", 0.70, None, None, 100)
    assert champion.current_champion(models) == a.resolve()

    # When a better model is offered, then it replaces the champion
    better = champion.promote_if_better(models, b, validation)
    assert (better.promoted, better.champion, better.champion_accuracy) == (True, "run-a", 0.70)
    assert champion.current_champion(models) == b.resolve()

    # When an equally good model is offered, then it replaces the champion too (newer)
    equal = champion.promote_if_better(models, c, validation)
    assert (equal.promoted, equal.challenger_accuracy, equal.champion_accuracy) == (
        True,
        0.80,
        0.80,
    )
    assert champion.current_champion(models) == c.resolve()

    # When a worse model is offered, then the champion stays
    worse = champion.promote_if_better(models, d, validation)
    assert worse == champion.Decision(False, "run-d", 0.79, "run-c", 0.80, 100)
    assert champion.current_champion(models) == c.resolve()
    assert os.readlink(models / "champion") == "run-c"  # relative: the folder can move
    # And every decision scored the challenger and the champion on the same split
    assert scores.calls == ["run-a", "run-b", "run-a", "run-c", "run-b", "run-d", "run-c"]


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


def test_a_real_better_model_is_promoted_and_a_worse_one_is_not(
    small_archive: Path, tmp_path: Path
) -> None:
    from tasks.serving import export
    from tasks.training import train
    from tasks.training.model import build_model

    # Given the small archive tokenised, and two exports of the same tiny architecture:
    # one untrained, one trained for 4 epochs
    data: ProcessedData = tokenize_small(small_archive, tmp_path / "processed")
    config = tiny_config(tmp_path, epochs=4, dropout=0.0, early_stopping=False)
    models = tmp_path / "models"
    metrics = dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc", "loss"), 0.5)
    metrics["examples"] = 80
    untrained = tmp_path / "untrained.keras"
    build_model(config).save(untrained)
    weak = export.export(untrained, models, "weak", config, data, metrics, None)
    run_dir = tmp_path / "run"
    result = train.train(config, data, run_dir)
    best = run_dir / "best" / f"epoch-{result.best_epoch:04d}" / "model.keras"
    strong = export.export(best, models, "strong", config, data, metrics, result.best_epoch)
    validation = data.split_path("validation")

    # And their accuracies, computed here from the raw validation texts
    from tasks.serving.predict import Predictor

    table = pq.read_table(validation, columns=["text", "label"])
    labels = np.asarray(table.column("label"))

    def accuracy(model_dir: Path) -> float:
        prob = Predictor(model_dir).predict(table.column("text").to_pylist())
        return float(((prob >= 0.5) == labels).mean())

    weak_acc, strong_acc = accuracy(weak), accuracy(strong)
    assert strong_acc > weak_acc, "precondition: training must beat the untrained model"

    # When the weak model is offered first, then it becomes the champion
    first = champion.promote_if_better(models, weak, validation)
    assert first.promoted and first.champion is None
    assert first.challenger_accuracy == pytest.approx(weak_acc)
    assert first.examples == len(labels) == 16

    # When the strong one is offered, then it replaces the weak one
    second = champion.promote_if_better(models, strong, validation)
    assert second.promoted
    assert (second.challenger, second.champion) == ("strong", "weak")
    assert second.challenger_accuracy == pytest.approx(strong_acc)
    assert second.champion_accuracy == pytest.approx(weak_acc)
    assert champion.current_champion(models) == strong.resolve()

    # When the weak one is offered again, then the champion stays
    third = champion.promote_if_better(models, weak, validation)
    assert not third.promoted
    assert champion.current_champion(models) == strong.resolve()
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []
