"""Batch checks of a file's rows: each fails on what it is for, and only when the difference is
both beyond its tolerance and significant."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.data.text import RESERVED
from tasks.ingest import batch

TH = batch.Thresholds(
    alpha=0.001, max_label_shift=0.2, max_agreement_drop=0.15, max_oov_increase=0.05
)
REF = batch.Reference(positive_share=0.5, oov_rate=0.03, champion="night-1", champion_accuracy=0.9)
VOCAB = [*RESERVED, "good", "bad", "film", "plot", "the"]


def test_oov_shares_count_words_outside_the_vocabulary_per_review() -> None:
    # Given three reviews: all known, half unknown, and one with no words at all
    texts = ["good film", "the zorblax plot quux", "<br /><br />"]

    # When their OOV shares are measured
    shares = batch.oov_shares(texts, VOCAB)

    # Then each review counts its own words, and the wordless one is left out
    assert shares.tolist() == [0.0, 0.5]


def test_a_one_sided_file_fails_label_balance_and_a_balanced_one_passes() -> None:
    # Given 300 labels all positive, and 300 with 55 % positive
    all_positive = np.ones(300, dtype=np.int64)
    near = np.array([1] * 165 + [0] * 135)

    # Then only the one-sided file fails, with its share and p-value
    one_sided = batch.label_balance(all_positive, REF, TH)
    assert not one_sided.passed and one_sided.value == 1.0 and one_sided.p_value < 1e-50
    assert one_sided.limit == pytest.approx(0.7)
    assert batch.label_balance(near, REF, TH).passed


def test_a_tiny_file_off_by_chance_is_not_held() -> None:
    # Given 10 labels with 8 positive: beyond the tolerance, but not significant
    check = batch.label_balance(np.array([1] * 8 + [0] * 2), REF, TH)

    # Then it passes, and says why in its figures
    assert check.passed and check.p_value > TH.alpha and abs(check.value - 0.5) > 0.2


def test_flipped_labels_fail_agreement_with_the_champion() -> None:
    # Given the champion's predictions, right on 90 % of 300 reviews
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 300)
    predicted = np.where(rng.random(300) < 0.9, truth, 1 - truth)

    # Then the true labels pass and the flipped ones fail
    assert batch.champion_agreement(truth, predicted, REF, TH).passed
    flipped = batch.champion_agreement(1 - truth, predicted, REF, TH)
    assert not flipped.passed and flipped.value < 0.2 and "night-1" in flipped.detail


def test_without_a_champion_agreement_is_skipped_and_says_so() -> None:
    no_champion = batch.Reference(0.5, 0.03, None, None)
    check = batch.champion_agreement(np.ones(5, dtype=np.int64), None, no_champion, TH)
    assert check.passed and check.value is None and "no champion" in check.detail


def test_garbled_words_fail_the_oov_rate() -> None:
    # Given 50 reviews of known words and 50 with every word unknown
    known = np.full(50, 0.04)
    garbled = np.full(50, 0.9) + np.linspace(0, 0.05, 50)

    # Then only the garbled ones fail
    assert batch.oov_rate(known, REF, TH).passed
    check = batch.oov_rate(garbled, REF, TH)
    assert not check.passed and check.value > 0.9 and check.p_value < 1e-10


def test_check_batch_runs_the_three_checks_with_the_champions_predictions() -> None:
    # Given two reviews, and a champion that calls everything positive
    seen: list[list[str]] = []

    def predict(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.ones(len(texts))

    # When the batch is checked
    checks = batch.check_batch(
        ["good film", "bad plot"],
        np.array([1, 0]),
        vocabulary=VOCAB,
        predict=predict,
        reference=REF,
        thresholds=TH,
    )

    # Then the champion scored the texts, and each check reports a figure
    assert seen == [["good film", "bad plot"]]
    assert [c.name for c in checks] == [batch.LABEL_BALANCE, batch.AGREEMENT, batch.OOV]
    assert [c.value for c in checks] == [0.5, 0.5, 0.0]
    assert (
        batch.check_batch(
            [], np.array([]), vocabulary=VOCAB, predict=predict, reference=REF, thresholds=TH
        )
        == []
    )
