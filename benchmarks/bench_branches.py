"""Cheaper second branches beside the n-gram branch, on the validation split only: is there a
recurrent-free (or cheaper recurrent) branch that keeps the default's validation accuracy in
a fraction of its training time?

Sides, each in its own process, on the same tokenised data and the same word vectors (learnt
once into a temporary folder, by the first side), with the default config and stopping rule;
only the layer between the embedding and the pooling changes:
- `lstm`: the default, a BiLSTM(64) (the reference);
- `gru`: a BiGRU(64), built and seeded by the LSTM's own `lstm_layer`;
- `conv`: one Conv1D (128 filters of 3 tokens, ReLU), max-pooled. Convolutions take no mask
  here, so the pool also sees the padding: a branch worth keeping would need it masked;
- `bag`: no layer at all, the masked max and mean of the word vectors (a bag of embeddings).

Per side: validation accuracy per epoch with the seconds since training began, each epoch's
seconds, the best, the training seconds, and its later epochs' mean against the LSTM's. The
test split is not scored: this chooses, so it reads validation only.

Usage: python benchmarks/bench_branches.py [--sides lstm,gru,conv,bag]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import run_isolated  # noqa: E402
from benchmarks.bench_quality import _config, _data  # noqa: E402

SIDES = {
    "lstm": {},
    "gru": {},
    "conv": {"bidirectional": False, "pooling": "max"},
    "bag": {"bidirectional": False},
}


def _swap_recurrent_layer(side: str) -> None:
    """Make `build_model` put `side`'s layer where the LSTM goes (the `lstm` side: no swap)."""
    import keras

    from tasks.training import model

    if side == "gru":
        # `lstm_layer` itself, building a GRU: the same arguments, seeds drawn in the same order.
        keras.layers.LSTM = keras.layers.GRU
        return

    def conv(config, seeds, return_sequences, name, go_backwards=False):
        initializer = keras.initializers.GlorotUniform(seed=seeds())
        return keras.layers.Conv1D(
            128, 3, padding="same", activation="relu", kernel_initializer=initializer, name=name
        )

    def bag(config, seeds, return_sequences, name, go_backwards=False):
        return keras.layers.Identity(name=name)

    swaps = {"conv": conv, "bag": bag}
    if side in swaps:
        model.lstm_layer = swaps[side]


def run_side(side: str, vectors_root: Path) -> dict:
    """Train one side on the cached data and word vectors; validation figures only."""
    from tasks.pretraining.word2vec import learn_word_vectors
    from tasks.training.train import train

    _swap_recurrent_layer(side)
    config = _config(SIDES[side], None)
    data = _data(config)
    t0 = time.perf_counter()
    vectors = learn_word_vectors(data, config, vectors_root, progress=lambda m: None).load()
    pretrain_seconds = time.perf_counter() - t0
    epochs: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def on_epoch(done: int, total: int, metrics: dict[str, float]) -> None:
        epochs.append((round(time.perf_counter() - t0, 1), round(metrics["val_accuracy"], 4)))

    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, data, Path(tmp), on_epoch=on_epoch, word_vectors=vectors)
    ends = [0.0, *(t for t, _ in epochs)]
    return {
        "pretrain_seconds": round(pretrain_seconds, 1),  # learnt by the first side only
        "val_accuracy_at_seconds": epochs,
        # The first epoch also builds the n-gram table and traces the step: read the later ones.
        "epoch_seconds": [round(b - a, 1) for a, b in zip(ends, ends[1:], strict=False)],
        "best_val_accuracy": max(v for _, v in epochs),
        "selected_epoch": result.best_epoch,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


def _later_epoch(row: dict) -> float:
    """Mean seconds of a side's epochs after the first."""
    later = row["epoch_seconds"][1:]
    return sum(later) / len(later)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated; lstm always")
    parser.add_argument("--side", choices=list(SIDES), help="one side (internal)")
    parser.add_argument("--vectors-root", type=Path, help="(internal)")
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.vectors_root)))
        return
    chosen = {s.strip() for s in args.sides.split(",") if s.strip()} | {"lstm"}
    if unknown := chosen - set(SIDES):
        parser.error(f"unknown sides: {', '.join(sorted(unknown))}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in (s for s in SIDES if s in chosen):
            rows[side] = run_isolated(
                Path(__file__), "--side", side, "--vectors-root", str(Path(tmp) / "pretrained")
            )
    reference = _later_epoch(rows["lstm"])
    for row in rows.values():
        # Per epoch: the sides stop after different numbers of epochs.
        row["later_epoch_vs_lstm"] = round(_later_epoch(row) / reference, 2)
    print(json.dumps({"benchmark": "branches", "sides": rows}))


if __name__ == "__main__":
    main()
