"""Seconds per epoch: the pipeline's train step vs a bare `model.fit`, same model and data.

Three sides, each in its own process, on the real tokenised data (`make prepare` first, or it
is prepared here):
- `bare_numpy`: `model.fit` on numpy arrays padded to `sequence_length` (the tutorial's way);
- `bare_batches`: `model.fit` on the pipeline's length-bucketed tf.data batches, no callbacks;
- `pipeline`: `tasks.training.train.train` (tf.data, checkpoint/best/history callbacks,
  TensorBoard).
Overhead = pipeline / bare_batches - 1 (what callbacks, checkpoints and artifacts cost).
Epoch 1 includes tracing, so per-epoch figures use the later epochs.

Usage: python benchmarks/bench_train.py [--max-reviews N] [--epochs E]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, run_isolated  # noqa: E402


def _config(args: argparse.Namespace):
    from benchmarks._common import REAL_ARCHIVE, REAL_SHA256
    from tasks.config import PipelineConfig

    return PipelineConfig(
        source=str(REAL_ARCHIVE),
        sha256=REAL_SHA256,
        data_dir=ROOT / "data",
        epochs=args.epochs,
        max_reviews=args.max_reviews,
        early_stopping=False,
    )


def _data(config):
    from tasks.data.processed import TokenizeParams
    from tasks.data.tokenize import tokenize_archive

    params = TokenizeParams.from_config(config)
    return tokenize_archive(
        Path(config.source), config.sha256, config.data_dir / "processed", params
    )


SIDES = ("bare_numpy", "bare_batches", "pipeline", "pipeline_nondeterministic")


class _EpochTimer:
    @staticmethod
    def make():
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.t0)

        return Timer()


def side(name: str, args: argparse.Namespace) -> dict:
    config = _config(args)
    if name == "pipeline_nondeterministic":
        config = config.model_copy(update={"deterministic": False})
    data = _data(config)
    from tasks.training import dataset
    from tasks.training.model import build_model
    from tasks.training.train import load_training_splits, setup_determinism, train

    setup_determinism(config)
    tr, va = load_training_splits(config, data)
    if name.startswith("pipeline"):
        times: list[float] = []
        last = [time.perf_counter()]

        def on_epoch(done, total, metrics):  # called at the end of each epoch's callback work
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            run_dir.mkdir()
            last[0] = time.perf_counter()
            train(config, data, run_dir, on_epoch=on_epoch)
        return {"epoch_seconds": times}
    model = build_model(config, dataset.steps_per_epoch(len(tr), config.batch_size))
    timer = _EpochTimer.make()
    if name == "bare_batches":
        ds = dataset.make_dataset(tr, config.batch_size, config.seed, 0, config.epochs)
        model.fit(
            ds,
            epochs=config.epochs,
            steps_per_epoch=dataset.steps_per_epoch(len(tr), config.batch_size),
            validation_data=dataset.make_eval_dataset(va, 256),
            callbacks=[timer],
            verbose=0,
        )
    else:
        x, y = _padded(tr, config.sequence_length)
        vx, vy = _padded(va, config.sequence_length)
        model.fit(
            x,
            y,
            batch_size=config.batch_size,
            epochs=config.epochs,
            validation_data=(vx, vy),
            callbacks=[timer],
            verbose=0,
        )
    return {"epoch_seconds": timer.times}


def _padded(split, length: int):
    import numpy as np

    x = np.zeros((len(split), length), dtype=np.int32)
    for i in range(len(split)):
        seq = split.values[split.offsets[i] : split.offsets[i + 1]]
        if len(seq):
            x[i, length - len(seq) :] = seq
    return x, split.labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-reviews", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--side", choices=SIDES)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args)))
        return
    extra = ["--max-reviews", str(args.max_reviews), "--epochs", str(args.epochs)]
    script = Path(__file__)
    results = {s: run_isolated(script, "--side", s, *extra) for s in SIDES}

    def per_epoch(s: str) -> float:
        times = results[s]["epoch_seconds"][1:] or results[s]["epoch_seconds"]
        return sum(times) / len(times)

    out = {
        "benchmark": "train",
        "max_reviews": args.max_reviews,
        "epochs": args.epochs,
        "bare_numpy_s_per_epoch": round(per_epoch("bare_numpy"), 2),
        "bare_batches_s_per_epoch": round(per_epoch("bare_batches"), 2),
        "pipeline_s_per_epoch": round(per_epoch("pipeline"), 2),
        "pipeline_vs_bare_numpy": round(per_epoch("pipeline") / per_epoch("bare_numpy"), 3),
        "overhead_vs_bare_batches": round(per_epoch("pipeline") / per_epoch("bare_batches") - 1, 4),
        "pipeline_nondeterministic_s_per_epoch": round(per_epoch("pipeline_nondeterministic"), 2),
        "determinism_cost": round(
            per_epoch("pipeline") / per_epoch("pipeline_nondeterministic") - 1, 4
        ),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
