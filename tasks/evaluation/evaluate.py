"""evaluate_model: test-split metrics of the selected model, plus plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.config import PipelineConfig
from tasks.core.atomic import atomic_write, atomic_write_text
from tasks.core.run_folder import RunFolder
from tasks.evaluation.stats import accuracy_interval


def binary_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
    """Loss, accuracy, precision, recall, F1, ROC-AUC and confusion matrix at threshold 0.5."""
    y = y_true.astype(np.int64)
    pred = (prob >= 0.5).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    eps = 1e-7
    p = np.clip(prob.astype(np.float64), eps, 1 - eps)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    low, high = accuracy_interval(tp + tn, len(y))
    return {
        "examples": int(len(y)),
        "loss": loss,
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "accuracy_ci95": [low, high],  # Wilson score interval
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, prob),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "calibration": calibration(y, prob),
    }


def calibration(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability table: for each probability bin with reviews in it, the mean predicted
    probability and the share of positive reviews."""
    index = np.minimum((np.asarray(prob) * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            rows.append(
                {
                    "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                    "reviews": int(inside.sum()),
                    "mean_probability": float(np.mean(prob[inside])),
                    "positive_share": float(np.mean(y[inside])),
                }
            )
    return rows


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties get average ranks)."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # Average ranks over runs of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def predict_split(model: Any, split: Any, pad_end: bool) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) for every row of a dataset.Split, in the split's row order;
    `pad_end`: the model masks padding at the end of each row (else it is padded in front)."""
    from tasks.training import dataset

    ds = dataset.make_eval_dataset(split, pad_end=pad_end)
    # predict() runs a compiled function; calling the model eagerly is ~3x slower for an LSTM.
    prob = np.asarray(model.predict(ds.map(lambda x, _: x), verbose=0)).ravel()
    out = np.empty(len(split), dtype=np.float64)
    out[dataset.eval_order(split)] = prob
    return split.labels, out


def evaluate(model: Any, test_path: Path, config: PipelineConfig) -> dict[str, Any]:
    """Metrics of `model`, trained with `config`, on a parquet split."""
    from tasks.training import dataset

    split = dataset.load_split(test_path, config.sequence_length, config.max_reviews, config.seed)
    y, prob = predict_split(model, split, config.mask_padding)
    return binary_metrics(y, prob)


def write_metrics(path: Path, metrics: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(metrics, indent=2))


def plot_report(run: RunFolder, history: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    """The run folder's three plots: training curves, confusion matrix, calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for name in (key, f"val_{key}"):
            if history and name in history[0]:
                ax.plot(epochs, [h[name] for h in history], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    atomic_write(run.training_curves, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)

    cm = metrics["confusion_matrix"]
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:,}", ha="center", va="center")
    ax.set_xticks([0, 1], ["neg", "pos"])
    ax.set_yticks([0, 1], ["neg", "pos"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"test accuracy {metrics['accuracy']:.4f}")
    fig.tight_layout()
    atomic_write(run.confusion_matrix, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)

    table = metrics.get("calibration") or []
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(
        [r["mean_probability"] for r in table],
        [r["positive_share"] for r in table],
        marker="o",
        label="model",
    )
    ax.set_xlabel("predicted probability of positive")
    ax.set_ylabel("share of positive reviews")
    ax.set_title("calibration (test)")
    ax.legend()
    fig.tight_layout()
    atomic_write(run.calibration, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
