"""Tests of the promotion rule, its record in the registry, and models compared from raw text."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.data.processed import ProcessedData
from tasks.serving import champion, promotion, registry
from tests.imdb_fixtures import tiny_config, tokenize_small
from tests.tasks.serving.fake_exports import card, fake_export


def info(run_id: str, incoming: tuple[str, ...] = (), data: str = "v") -> champion.ModelInfo:
    return champion.ModelInfo(Path(run_id), run_id, data, incoming, "cfg")


def correct(right: int, total: int = 1000) -> np.ndarray:
    return np.arange(total) < right


# --- the rule -------------------------------------------------------------------------------


def test_the_first_model_is_promoted() -> None:
    decision = promotion.decide(info("a"), correct(700), None, None, 0.05, 0.002)
    assert decision.promoted and decision.reason == "no champion yet"
    assert (decision.challenger_accuracy, decision.champion, decision.p_value) == (0.7, None, None)


def test_significantly_better_is_promoted_equal_is_not() -> None:
    # Given a champion right on 800 of 1,000 reviews
    old = correct(800)

    # When a challenger on the same data is right on 850 (the same 800 and 50 more)
    better = promotion.decide(info("b"), correct(850), info("a"), old, 0.05, 0.002)
    # Then McNemar's test (50 against 0 discordant reviews) promotes it
    assert better.promoted and better.p_value < 1e-10
    assert (better.challenger_only, better.champion_only) == (50, 0)

    # When a challenger is exactly as good (a tie, as a retrained identical model)
    tie = promotion.decide(info("c"), old.copy(), info("a"), old, 0.05, 0.002)
    # Then it is not promoted: a tie is no improvement
    assert not tie.promoted and tie.p_value == 1.0
    assert "not significantly better" in tie.reason

    # When a challenger is slightly better, but not significantly (5 of 1,000 more)
    slight = promotion.decide(info("d"), correct(805), info("a"), old, 0.05, 0.002)
    assert not slight.promoted and slight.p_value > 0.05


def test_strictly_newer_data_wins_when_not_worse_by_more_than_the_margin() -> None:
    old = correct(800)
    champ = info("a", incoming=("f1",))
    # Given a challenger trained on the champion's files plus one more
    newer = info("b", incoming=("f1", "f2"))

    # When it is 0.1 point worse (within a 0.2 point margin): promoted
    within = promotion.decide(newer, correct(799), champ, old, 0.05, 0.002)
    assert within.promoted and within.newer_data
    assert "strictly newer data" in within.reason

    # When it is 0.5 point worse: kept out
    worse = promotion.decide(newer, correct(795), champ, old, 0.05, 0.002)
    assert not worse.promoted and "worse by over 0.002" in worse.reason

    # When its data is other, not newer (a file missing that the champion had): kept out
    other = promotion.decide(info("c", incoming=("f2",)), correct(800), champ, old, 0.05, 0.002)
    assert not other.promoted and not other.newer_data


def test_models_scored_on_different_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="different rows"):
        promotion.decide(info("b"), correct(5, 10), info("a"), correct(5, 11), 0.05, 0.0)


# --- recording: exactly once ------------------------------------------------------------------


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Per-review correctness of each fake export by folder name (instead of running models)."""
    table: dict[str, np.ndarray] = {}
    monkeypatch.setattr(promotion, "correct_on", lambda model_dir, parquet: table[model_dir.name])
    return table


def test_promote_records_candidate_decision_and_promotion_once(
    tmp_path: Path, scored: dict[str, np.ndarray]
) -> None:
    models = tmp_path / "models"
    a = card(fake_export(models, "run-a"), "v1", [])
    b = card(fake_export(models, "run-b"), "v2", ["f1"])
    scored.update({"run-a": correct(800), "run-b": correct(900)})

    # When run-a is offered with no champion, then run-b, clearly better
    first = promotion.promote(models, a, Path("validation.parquet"), 0.05, 0.002)
    second = promotion.promote(models, b, Path("validation.parquet"), 0.05, 0.002)

    # Then both are promoted, the link ends on run-b, and the registry holds the lineage
    assert first.promoted and second.promoted and second.champion == "run-a"
    assert os.readlink(models / "champion") == "run-b"
    events = registry.read_events(models)
    assert [(e["event"], e["run_id"]) for e in events] == [
        ("candidate", "run-a"),
        ("decision", "run-a"),
        ("promotion", "run-a"),
        ("candidate", "run-b"),
        ("decision", "run-b"),
        ("promotion", "run-b"),
    ]
    assert events[3]["data_version"] == "v2" and events[3]["incoming"] == ["f1"]
    assert events[4]["p_value"] == second.p_value and events[5]["previous"] == "run-a"

    # When run-b is offered again (a resumed nightly), even with other scores now
    scored["run-b"] = correct(100)
    again = promotion.promote(models, b, Path("validation.parquet"), 0.05, 0.002)

    # Then the recorded decision is returned and nothing is appended
    assert again == second
    assert len(registry.read_events(models)) == 6


def test_a_promotion_decided_but_not_carried_out_is_completed_once(
    tmp_path: Path, scored: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a champion run-a and a better run-b whose switch crashes after the decision
    models = tmp_path / "models"
    a = card(fake_export(models, "run-a"), "v1", [])
    b = card(fake_export(models, "run-b"), "v2", ["f1"])
    scored.update({"run-a": correct(800), "run-b": correct(900)})
    promotion.promote(models, a, Path("v.parquet"), 0.05, 0.002)
    real_switch = champion.switch_champion

    def crash(models_dir: Path, target: Path) -> None:
        raise KeyboardInterrupt("killed between decision and switch")

    monkeypatch.setattr(promotion, "switch_champion", crash)
    with pytest.raises(KeyboardInterrupt):
        promotion.promote(models, b, Path("v.parquet"), 0.05, 0.002)
    # Then the link still names the old champion, a valid model
    assert champion.current_champion(models) == a.resolve()

    # When the promotion is offered again
    monkeypatch.setattr(promotion, "switch_champion", real_switch)
    decision = promotion.promote(models, b, Path("v.parquet"), 0.05, 0.002)

    # Then it is carried out, with exactly one decision and one promotion for run-b
    assert decision.promoted and champion.current_champion(models) == b.resolve()
    kinds = [e["event"] for e in registry.read_events(models) if e["run_id"] == "run-b"]
    assert kinds == ["candidate", "decision", "promotion"]


def test_registry_skips_a_torn_last_line(tmp_path: Path) -> None:
    registry.append_event(tmp_path, registry.CANDIDATE, "run-a", data_version="v1")
    with (tmp_path / registry.REGISTRY).open("a") as fh:
        fh.write('{"event": "decision", "run_')  # a write cut short by a crash
    assert [e["run_id"] for e in registry.read_events(tmp_path)] == ["run-a"]
    assert registry.find_event(tmp_path, registry.DECISION, "run-a") is None


# The untrained model is saved before its optimizer was ever built (1 variable: iterations);
# loading it to export builds the optimizer (15 variables) and Keras says it skips the state.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning:keras")
def test_real_models_are_compared_from_raw_text_on_the_same_reviews(
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
    first = promotion.promote(models, weak, validation, alpha=0.05, margin=0.0)
    assert first.promoted and first.champion is None
    assert first.challenger_accuracy == pytest.approx(weak_acc)
    assert first.examples == len(labels) == 16

    # When the strong one is offered (same data: it must be significantly better)
    second = promotion.promote(models, strong, validation, alpha=0.5, margin=0.0)
    assert (second.challenger, second.champion) == ("strong", "weak")
    assert second.challenger_accuracy == pytest.approx(strong_acc)
    assert second.champion_accuracy == pytest.approx(weak_acc)
    # Then, both scored from raw text on the same 16 reviews, it replaces the weak one
    assert second.challenger_only > second.champion_only
    assert second.promoted, second.reason
    assert champion.current_champion(models) == strong.resolve()
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []
