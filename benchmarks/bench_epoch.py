"""Where one training epoch's time goes, for a config on the real training split.

One process, the default config unless flags say otherwise, each part timed alone on the
same batches (epoch 2 of the plan, after a first pass that traces every function):
- `input`: the tf.data pipeline alone (batch plan, gather, padding), no model;
- `ngram_setup`: counting the n-gram table and the naive-Bayes ratios (once per run);
- `forward`: the training model's forward pass over the epoch's batches (no gradients);
- `train_step`: a full epoch of `fit` (forward, backward, Adam), no validation, no callbacks;
- `lstm_branch_train_step`: the same epoch for the model without the n-gram branch, so the
  n-gram branch costs `train_step - lstm_branch_train_step`;
- `validation`: one pass over the validation split, as `fit` does after each epoch;
- `checkpoint`: writing the full model (`model.keras`, optimizer state included).
Prints one JSON line.

Usage: python benchmarks/bench_epoch.py [--batch-size N] [--sequence-length N] [--max-reviews N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256, ROOT  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--sequence-length", type=int)
    parser.add_argument("--max-reviews", type=int)
    args = parser.parse_args()

    from tasks.config import PipelineConfig
    from tasks.data.processed import TokenizeParams
    from tasks.data.tokenize import tokenize_archive
    from tasks.training import dataset
    from tasks.training.model import build_model, count_ngrams
    from tasks.training.train import load_training_splits, setup_determinism

    overrides = {
        k: v
        for k, v in {
            "batch_size": args.batch_size,
            "sequence_length": args.sequence_length,
            "max_reviews": args.max_reviews,
        }.items()
        if v is not None
    }
    config = PipelineConfig(
        source=str(REAL_ARCHIVE), sha256=REAL_SHA256, data_dir=ROOT / "data", **overrides
    )
    params = TokenizeParams.from_config(config)
    data = tokenize_archive(REAL_ARCHIVE, config.sha256, config.data_dir / "processed", params)
    setup_determinism(config)
    train, validation = load_training_splits(config, data)
    steps = dataset.steps_per_epoch(len(train), config.batch_size)

    def batches(epoch: int):
        return dataset.make_dataset(
            train, config.batch_size, config.seed, epoch, epoch + 1, pad_end=config.mask_padding
        )

    out: dict = {"benchmark": "epoch", "config": overrides, "steps": steps}
    out["input_s"] = _timed(lambda: sum(1 for _ in batches(1)))
    t0 = time.perf_counter()
    counts = count_ngrams(config, dataset.make_eval_dataset(train))
    model = build_model(config, steps, ngrams=counts)
    out["ngram_setup_s"] = round(time.perf_counter() - t0, 2)
    lstm_only = build_model(config.model_copy(update={"ngram_order": 0}), steps)
    val = dataset.make_eval_dataset(validation, pad_end=config.mask_padding)
    for m in (model, lstm_only):  # trace every function on one epoch first
        m.fit(batches(0), steps_per_epoch=steps, verbose=0)
    out["forward_s"] = _timed(lambda: model.predict(batches(1).map(lambda x, _: x), verbose=0))
    out["train_step_s"] = _timed(lambda: model.fit(batches(1), steps_per_epoch=steps, verbose=0))
    out["lstm_branch_train_step_s"] = _timed(
        lambda: lstm_only.fit(batches(1), steps_per_epoch=steps, verbose=0)
    )
    model.evaluate(val, verbose=0)
    out["validation_s"] = _timed(lambda: model.evaluate(val, verbose=0))
    with tempfile.TemporaryDirectory() as tmp:
        out["checkpoint_s"] = _timed(lambda: model.save(Path(tmp) / "model.keras"))
    out["ngram_branch_share_of_step"] = round(
        1 - out["lstm_branch_train_step_s"] / out["train_step_s"], 3
    )
    out["backward_and_update_s"] = round(out["train_step_s"] - out["forward_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
