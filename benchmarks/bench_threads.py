"""TensorFlow's threads per op: the package's default (TF_NUM_INTRAOP_THREADS=1) against
TensorFlow's own (0: one per core), on training steps of the default model.

Each round runs one fresh process per setting, in alternating order (a VM's speed drifts from
minute to minute): the default config's model, n-gram table included, built
on the real training split, `fit` over `--steps` batches of epoch 1's plan after a first
batch that traces the step. Each process reports its wall time and CPU time (user + system,
all threads) per step and a digest of the weights it ends with. Prints one JSON line: per
setting the median over rounds, every round's figures, and whether its digests agree.

Usage: python benchmarks/bench_threads.py [--rounds 3] [--steps 12] [--max-reviews N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256, ROOT, run_isolated  # noqa: E402

SETTINGS = {"one_per_op": "1", "tensorflow_default": "0"}


def _config(max_reviews: int | None):
    from tasks.config import PipelineConfig

    return PipelineConfig(
        source=str(REAL_ARCHIVE),
        sha256=REAL_SHA256,
        data_dir=ROOT / "data",
        max_reviews=max_reviews,
        word_vectors="none",  # the embedding's start does not change a step's cost
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(steps: int, max_reviews: int | None) -> dict:
    """One process's training steps (TF_NUM_INTRAOP_THREADS as the parent set it)."""
    from tasks.data.processed import TokenizeParams
    from tasks.data.tokenize import tokenize_archive
    from tasks.training import dataset
    from tasks.training.model import build_model, count_ngrams
    from tasks.training.train import load_training_splits, setup_determinism

    config = _config(max_reviews)
    params = TokenizeParams.from_config(config)
    data = tokenize_archive(REAL_ARCHIVE, config.sha256, config.data_dir / "processed", params)
    setup_determinism(config)
    train, _ = load_training_splits(config, data)
    counts = count_ngrams(config, dataset.make_eval_dataset(train))
    model = build_model(config, steps + 1, ngrams=counts)
    batches = dataset.make_dataset(
        train, config.batch_size, config.seed, 1, 2, pad_end=config.mask_padding
    )
    model.fit(batches.take(1), verbose=0)  # traces the step
    wall, cpu = time.perf_counter(), _cpu_seconds()
    model.fit(batches.skip(1).take(steps), verbose=0)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    return {
        "wall_ms_per_step": round(1000 * wall / steps),
        "cpu_ms_per_step": round(1000 * cpu / steps),
        "weights": digest[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--max-reviews", type=int)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.max_reviews)))
        return

    rounds: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for i in range(args.rounds):
        order = list(SETTINGS) if i % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            child_args = ["--child", "--steps", str(args.steps)]
            if args.max_reviews:
                child_args += ["--max-reviews", str(args.max_reviews)]
            env = {"TF_NUM_INTRAOP_THREADS": SETTINGS[name]}
            rounds[name].append(run_isolated(Path(__file__), *child_args, env=env))

    result: dict = {"benchmark": "threads", "steps": args.steps, "rounds": args.rounds}
    for name, runs in rounds.items():
        result[name] = {
            "wall_ms_per_step": statistics.median(r["wall_ms_per_step"] for r in runs),
            "cpu_ms_per_step": statistics.median(r["cpu_ms_per_step"] for r in runs),
            "same_weights_every_round": len({r["weights"] for r in runs}) == 1,
            "runs": runs,
        }
    ref, new = result["tensorflow_default"], result["one_per_op"]
    result["cpu_saved"] = round(1 - new["cpu_ms_per_step"] / ref["cpu_ms_per_step"], 3)
    result["wall_saved"] = round(1 - new["wall_ms_per_step"] / ref["wall_ms_per_step"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
