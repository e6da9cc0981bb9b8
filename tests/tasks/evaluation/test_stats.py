"""Tests of the comparison statistics: Wilson interval and McNemar's exact test."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.evaluation.stats import accuracy_interval, mcnemar


def test_wilson_interval_matches_known_values() -> None:
    # Given 22,215 of 25,000 right (0.8886) / When the interval is taken
    low, high = accuracy_interval(22_215, 25_000)

    # Then it is the Wilson interval: centred near the accuracy, about ±0.39 points wide
    assert low == pytest.approx(0.88464, abs=1e-5)
    assert high == pytest.approx(0.89244, abs=1e-5)
    assert low < 22_215 / 25_000 < high


def test_wilson_interval_stays_inside_zero_and_one() -> None:
    # Given all right, none right and no rows / Then the bounds stay in [0, 1]
    assert accuracy_interval(10, 10)[1] == pytest.approx(1.0)
    assert accuracy_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-3)
    assert accuracy_interval(0, 10)[0] == 0.0
    assert accuracy_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_counts_only_disagreements() -> None:
    # Given two models that agree on most rows and disagree on 10 (A right on 9 of them)
    a = np.array([True] * 100 + [True] * 9 + [False])
    b = np.array([True] * 100 + [False] * 9 + [True])

    # When compared / Then only the 10 disagreements count: exact two-sided binomial p
    result = mcnemar(a, b)
    assert (result["only_a"], result["only_b"]) == (9, 1)
    assert result["p_value"] == pytest.approx(2 * 11 / 1024)


def test_mcnemar_of_identical_models_is_one_and_shapes_must_match() -> None:
    same = np.array([True, False, True])
    assert mcnemar(same, same)["p_value"] == 1.0
    with pytest.raises(ValueError, match="different rows"):
        mcnemar(same, same[:2])
