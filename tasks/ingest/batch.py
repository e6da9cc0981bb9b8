"""Batch checks of an incoming file: does the file as a whole look like the archive's reviews?

Row checks (`validate`) judge each row alone; they cannot see a labelling job that flipped
every label or marked everything positive. These checks judge the rows a file would add, as one
batch, against the archive:

- `label_balance`: the share of positive labels, against the archive's training reviews';
- `champion_agreement`: the share of the file's labels that the current champion predicts,
  against the champion's accuracy on the archive's validation reviews (skipped, and said so,
  without a champion);
- `oov_rate`: the mean per-review share of words outside the archive's vocabulary, against
  the archive's validation reviews'.

A check fails only when its figure is beyond the tolerance (`batch_max_label_shift`,
`batch_max_agreement_drop`, `batch_max_oov_increase`) *and* the difference is significant at
`batch_alpha` (an exact binomial test for the two shares, a one-sided z-test for the OOV rate):
a large file a little off passes, and so does a tiny file that is off by chance. A file with a
failed check is held (`held`). docs/nightly.md gives the spread of each figure over random slices of
the archive, which the defaults are set from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from tasks.data import text

LABEL_BALANCE = "label_balance"
AGREEMENT = "champion_agreement"
OOV = "oov_rate"


@dataclass(frozen=True)
class Thresholds:
    """The tolerances and the significance level of the checks (config fields `batch_*`)."""

    alpha: float
    max_label_shift: float
    max_agreement_drop: float
    max_oov_increase: float


@dataclass(frozen=True)
class Reference:
    """What a file is compared with, measured on the archive (and the champion, if any)."""

    positive_share: float  # of the archive's labelled training reviews
    oov_rate: float  # mean per-review OOV share of the archive's validation reviews
    champion: str | None  # run id of the champion, None without one
    champion_accuracy: float | None  # its accuracy on the archive's validation reviews


@dataclass(frozen=True)
class Check:
    """One check of one file: its figure, what it was compared with, and the verdict."""

    name: str
    value: float | None  # None when the check was skipped
    reference: float | None
    limit: float | None  # the figure beyond which it fails (when also significant)
    p_value: float | None
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def oov_shares(texts: pa.Array | Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """Per review, the share of its words that are not in `vocabulary` (reviews without words
    are left out: the row checks reject them)."""
    arr = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    ids = text.encode(text.tokenize(arr.fill_null("")), vocabulary)
    lengths = np.asarray(pc.list_value_length(ids), dtype=np.int64)
    oov = np.asarray(pc.equal(ids.flatten(), text.OOV_ID), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep = lengths > 0
    counts = np.add.reduceat(oov, starts[keep]) if oov.size else np.zeros(0)
    return counts / lengths[keep]


def label_balance(labels: np.ndarray, ref: Reference, th: Thresholds) -> Check:
    """Fails when the positive share is more than `max_label_shift` from the archive's and a
    two-sided exact binomial test rejects the archive's share."""
    n, k = len(labels), int(np.sum(labels))
    share = k / n
    p = float(stats.binomtest(k, n, ref.positive_share).pvalue)
    passed = not (abs(share - ref.positive_share) > th.max_label_shift and p < th.alpha)
    side = 1 if share >= ref.positive_share else -1
    return Check(
        LABEL_BALANCE,
        share,
        ref.positive_share,
        ref.positive_share + side * th.max_label_shift,
        p,
        passed,
        f"{share:.1%} positive ({k:,} of {n:,}); the archive {ref.positive_share:.1%}, "
        f"tolerance ±{th.max_label_shift:.0%}, binomial p = {p:.2g}",
    )


def champion_agreement(
    labels: np.ndarray, predicted: np.ndarray | None, ref: Reference, th: Thresholds
) -> Check:
    """Fails when the champion agrees with fewer labels than its validation accuracy less
    `max_agreement_drop`, and a one-sided exact binomial test says fewer than it should."""
    if predicted is None or ref.champion_accuracy is None:
        return Check(AGREEMENT, None, None, None, None, True, "skipped: no champion yet")
    n = len(labels)
    agree = int(np.sum(predicted == labels))
    share, expected = agree / n, ref.champion_accuracy
    p = float(stats.binom.cdf(agree, n, expected))  # P(at most this many | its accuracy)
    limit = expected - th.max_agreement_drop
    passed = not (share < limit and p < th.alpha)
    return Check(
        AGREEMENT,
        share,
        expected,
        limit,
        p,
        passed,
        f"the champion {ref.champion} predicts {share:.1%} of the labels ({agree:,} of {n:,}); "
        f"its validation accuracy {expected:.1%}, tolerance -{th.max_agreement_drop:.0%}, "
        f"binomial p = {p:.2g}",
    )


def oov_rate(shares: np.ndarray, ref: Reference, th: Thresholds) -> Check:
    """Fails when the mean per-review OOV share exceeds the archive's by `max_oov_increase`
    and a one-sided z-test (on the per-review shares) says it is higher."""
    n = len(shares)
    mean = float(np.mean(shares)) if n else 0.0
    se = float(np.std(shares, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    diff = mean - ref.oov_rate
    # Identical shares (se 0): higher is certain, not higher is no evidence.
    p = float(stats.norm.sf(diff / se)) if se > 0 else float(diff <= 0)
    limit = ref.oov_rate + th.max_oov_increase
    passed = not (mean > limit and p < th.alpha)
    return Check(
        OOV,
        mean,
        ref.oov_rate,
        limit,
        p,
        passed,
        f"{mean:.1%} of the words are out of the archive's vocabulary; the archive "
        f"{ref.oov_rate:.1%}, tolerance +{th.max_oov_increase:.0%}, z-test p = {p:.2g}",
    )


def archive_reference(
    train_labels: np.ndarray,
    validation_texts: Sequence[str],
    validation_labels: np.ndarray,
    vocabulary: Sequence[str],
    predict: Callable[[list[str]], np.ndarray] | None,
    champion: str | None,
) -> Reference:
    """The archive's figures: its training reviews' positive share, its validation reviews'
    mean OOV share, and the champion's accuracy on them (when there is a champion)."""
    accuracy = None
    if predict is not None:
        predicted = np.asarray(predict(list(validation_texts))) >= 0.5
        accuracy = float(np.mean(predicted == np.asarray(validation_labels, dtype=bool)))
    return Reference(
        positive_share=float(np.mean(train_labels)),
        oov_rate=float(np.mean(oov_shares(validation_texts, vocabulary))),
        champion=champion if predict is not None else None,
        champion_accuracy=accuracy,
    )


def check_batch(
    texts: pa.Array | Sequence[str],
    labels: np.ndarray,
    *,
    vocabulary: Sequence[str],
    predict: Callable[[list[str]], np.ndarray] | None,
    reference: Reference,
    thresholds: Thresholds,
) -> list[Check]:
    """The three checks of a file's accepted rows (`texts`, `labels` 0/1). `predict` gives the
    champion's positive probability of each text (None without a champion)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return []
    predicted = None
    if predict is not None:
        values = texts.to_pylist() if isinstance(texts, pa.Array | pa.ChunkedArray) else texts
        predicted = (np.asarray(predict(list(values))) >= 0.5).astype(np.int64)
    return [
        label_balance(labels, reference, thresholds),
        champion_agreement(labels, predicted, reference, thresholds),
        oov_rate(oov_shares(texts, vocabulary), reference, thresholds),
    ]


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]
