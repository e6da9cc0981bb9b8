"""Start-up of a one-review `imdb-pipeline predict`, beside its floor: a Python process that
only imports TensorFlow (every TensorFlow-based scorer pays that much).

Each round runs both commands once, alternating, each in a fresh process, and times its wall
and CPU seconds (user + system of the child). The JSON line has the medians, minima and
maxima, and predict's median as a fraction of the import's.

Usage: python benchmarks/bench_startup.py --model artifacts/models/<run_id> [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT  # noqa: E402

REVIEW = "a wonderful film, I loved every minute"


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `argv` run to completion in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        argv,
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def summary(samples: list[tuple[float, float]]) -> dict:
    walls, cpus = [w for w, _ in samples], [c for _, c in samples]
    return {
        "wall_median_s": round(statistics.median(walls), 2),
        "wall_min_s": round(min(walls), 2),
        "wall_max_s": round(max(walls), 2),
        "cpu_median_s": round(statistics.median(cpus), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("imdb-pipeline"))
    commands = {
        "predict": [cli, "predict", "--model", str(args.model), "--json", REVIEW],
        "import_tensorflow": [sys.executable, "-c", "import tensorflow"],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, argv in commands.items():
            samples[name].append(timed(argv))
    result = {name: summary(s) for name, s in samples.items()}
    ratio = result["predict"]["wall_median_s"] / result["import_tensorflow"]["wall_median_s"]
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "rounds": args.rounds,
                **result,
                "predict_vs_import": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
