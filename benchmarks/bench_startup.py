"""Start-up of each kind of `imdb-pipeline` command, beside its floors: Python processes that
only import TensorFlow (what every TensorFlow-based scorer pays) or only Prefect.

The commands, each timed in a fresh process (wall seconds, and CPU seconds: user + system of
the child):
- `help`: `imdb-pipeline --help`;
- `prepare_cached`: a `prepare` whose tokenised data is there already (no flow run);
- `predict`: one review through the exported model;
- `score`: a 20-line `.txt` file through the exported model, to parquet;
- `flow_new_home`, `flow_temp_server`, `flow_server`: a `prepare` with work to do (tokenising
  the real archive into a new folder, about 4 s) as a Prefect flow: on a temporary server with
  a new `PREFECT_HOME` (its database created, as on a first run), on a temporary server with
  an existing `PREFECT_HOME`, and on a `prefect server start` running beside it (started by
  this script, stopped by PID). For these, `flow_begins` is the time until Prefect logs
  "Beginning flow run": the cost of orchestration before any work.

Each round runs every command once, in this order; then the server is started and `flow_server`
runs its rounds (an idle server's background services would otherwise slow the others). The
JSON line has medians, minima and maxima, and predict's median as a fraction of the bare
TensorFlow import's.

Usage: python benchmarks/bench_startup.py --model artifacts/models/<run_id> [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256, ROOT  # noqa: E402

REVIEW = "a wonderful film, I loved every minute"
FLOW_BEGINS = "Beginning flow run"


def timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds of `argv` run to completion in a fresh process with `env`, and the
    seconds until it logged that its flow began (if it did)."""
    env = {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    begins, tail = None, deque(maxlen=20)
    with subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        for line in proc.stderr:
            tail.append(line)
            if begins is None and FLOW_BEGINS in line:
                begins = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}:\n{''.join(tail)}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu} | ({} if begins is None else {"flow_begins": begins})


def summary(samples: list[dict[str, float]]) -> dict:
    walls = [s["wall"] for s in samples]
    row = {
        "wall_median_s": round(statistics.median(walls), 2),
        "wall_min_s": round(min(walls), 2),
        "wall_max_s": round(max(walls), 2),
        "cpu_median_s": round(statistics.median(s["cpu"] for s in samples), 2),
    }
    begins = [s["flow_begins"] for s in samples if "flow_begins" in s]
    if begins:
        row["flow_begins_median_s"] = round(statistics.median(begins), 2)
    return row


def home(tmp: Path, name: str) -> dict[str, str]:
    """The environment entry of a PREFECT_HOME of its own under `tmp` (made here: Prefect
    creates the home but not its parents)."""
    path = tmp / "homes" / name
    path.mkdir(parents=True, exist_ok=True)
    return {"PREFECT_HOME": str(path)}


def main() -> None:
    from tests.prefect_server import local_prefect

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("imdb-pipeline"))
    source = ["--source", str(REAL_ARCHIVE), "--sha256", REAL_SHA256]
    no_server = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    samples: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reviews = tmp / "reviews.txt"
        reviews.write_text("".join(f"{REVIEW}, number {i}\n" for i in range(20)))
        cached = tmp / "cached"
        timed([cli, "prepare", *source, "--data-dir", str(cached)], no_server | home(tmp, "first"))

        def flow(name: str) -> list[str]:
            return [cli, "prepare", *source, "--data-dir", str(tmp / name), "--json"]

        def scoring(r: int) -> list[str]:
            out = str(tmp / f"scored-{r}.parquet")
            model = str(args.model)
            return [cli, "score", "--input", str(reviews), "--model", model, "--output", out]

        def rounds(commands) -> None:
            for r in range(args.rounds):
                for name, (argv, env) in commands(r).items():
                    samples.setdefault(name, []).append(timed(argv, env))

        rounds(
            lambda r: {
                "help": ([cli, "--help"], no_server),
                "prepare_cached": ([cli, "prepare", *source, "--data-dir", str(cached)], no_server),
                "predict": (
                    [cli, "predict", "--model", str(args.model), "--json", REVIEW],
                    no_server,
                ),
                "score": (scoring(r), no_server),
                "flow_new_home": (flow(f"new-{r}"), no_server | home(tmp, f"new-{r}")),
                "flow_temp_server": (flow(f"temp-{r}"), no_server | home(tmp, "first")),
                "import_tensorflow": ([sys.executable, "-c", "import tensorflow"], no_server),
                "import_prefect": ([sys.executable, "-c", "import prefect"], no_server),
            }
        )
        # Apart, so that the server's own background work does not slow the commands above.
        with local_prefect(tmp / "server") as server:
            rounds(lambda r: {"flow_server": (flow(f"server-{r}"), server.env)})
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
