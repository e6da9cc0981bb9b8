"""Tests of the test metrics: binary_metrics and the rank-sum ROC-AUC."""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest

from tasks.evaluation import evaluate

# --- binary_metrics and roc_auc ----------------------------------------------------------


def test_binary_metrics_on_hand_made_arrays() -> None:
    # Given 8 labels and probabilities: 3 true positives, 1 false negative, 1 false positive
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    prob = np.array([0.9, 0.8, 0.5, 0.2, 0.7, 0.1, 0.3, 0.4])

    # When the metrics are computed
    m = evaluate.binary_metrics(y, prob)

    # Then they match the counts worked out by hand (0.5 counts as positive)
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["examples"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    expected_loss = -np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob))
    assert m["loss"] == pytest.approx(expected_loss)
    # 16 positive/negative pairs, misordered: 0.5 < 0.7, 0.2 < 0.7, 0.2 < 0.3, 0.2 < 0.4
    assert m["roc_auc"] == pytest.approx(12 / 16)
    json.dumps(m)  # JSON-able as written to metrics.json


def test_binary_metrics_degenerate_cases() -> None:
    # Given predictions that are all negative for labels that are all negative
    m = evaluate.binary_metrics(np.zeros(4), np.array([0.0, 0.1, 0.2, 0.3]))

    # Then precision/recall/F1 are 0 rather than a division error, ROC-AUC is undefined
    assert m["accuracy"] == 1.0
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert np.isnan(m["roc_auc"])
    assert np.isfinite(m["loss"])  # probabilities of exactly 0 or 1 are clipped

    # And perfect, confident predictions give a tiny loss and perfect scores
    perfect = evaluate.binary_metrics(np.array([0, 1, 1]), np.array([0.0, 1.0, 1.0]))
    assert perfect["accuracy"] == perfect["f1"] == perfect["roc_auc"] == 1.0
    assert 0 <= perfect["loss"] < 1e-6


def _pairwise_auc(y: np.ndarray, score: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos, neg = score[y == 1], score[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_a_brute_force_pairwise_count(seed: int) -> None:
    # Given random labels and scores with many ties (rounded scores)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = rng.integers(0, 2, size=n)
    y[0], y[1] = 0, 1  # both classes present
    score = np.round(rng.random(n), int(rng.integers(1, 3)))

    # When / then the rank-sum AUC equals the pairwise definition
    assert evaluate.roc_auc(y, score) == pytest.approx(_pairwise_auc(y, score), abs=1e-12)
