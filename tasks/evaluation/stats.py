"""Statistics for honest model comparison: an accuracy's confidence interval, McNemar's test."""

from __future__ import annotations

import math

import numpy as np

_Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


def accuracy_interval(correct: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval (95 % by default) for an accuracy of `correct` out of `total`.

    Unlike the normal approximation it stays inside [0, 1] and is sound near 0 and 1.
    """
    if total <= 0:
        return (0.0, 1.0)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float | int]:
    """McNemar's exact test of two models scored on the same rows.

    `correct_a`, `correct_b`: whether each model got each row right. Only the rows on which
    they disagree count; under "equally accurate" each such row is a fair coin, so the two-sided
    p-value is that of a binomial test of the split with p = 1/2.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"models scored different rows: {a.shape} and {b.shape}")
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    n = only_a + only_b
    # Two-sided exact binomial p-value: twice the smaller tail, at most 1.
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": min(1.0, 2 * tail)}
