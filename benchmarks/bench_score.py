"""Batch scoring: one `imdb-pipeline score` process vs one `imdb-pipeline predict` per review.

The reference is the per-review way: `--processes` separate `imdb-pipeline predict --model M
"<review>"` processes, each timed (wall, process start included), their mean extrapolated to
`--reviews` reviews. The pipeline is one `imdb-pipeline score --input reviews.parquet --json`
process on all of them (wall, process start, Prefect and model load included); the in-process
scoring time from its JSON summary is reported beside it. The same `score` runs again on the
export's SavedModel (`--model <export>/saved_model`; one is written to a temporary folder for
an export made before it had one), with the largest difference between the two paths'
probabilities. All run in the same invocation.
Input: the first `--reviews` texts of unsup.parquet (else test.parquet) of the newest complete
tokenised folder under <data-dir>/processed/; generated texts only if there is none.
Prints one JSON line.
Usage: python benchmarks/bench_score.py [--model artifacts/models/champion] [--reviews 25000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT  # noqa: E402

TARGET = ">= 10x"


def cli() -> list[str]:
    """The `imdb-pipeline` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "imdb-pipeline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]


def review_texts(data_dir: Path, count: int) -> tuple[list[str], str]:
    """`count` review texts and where they came from (repeated if the split is smaller)."""
    import pyarrow.parquet as pq

    from tasks.data.processed import load_processed

    processed = data_dir / "processed"
    folders = [p for p in processed.iterdir() if p.is_dir()] if processed.is_dir() else []
    for folder in sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True):
        data = load_processed(folder)
        if data is None:
            continue
        for split in ("unsup", "test"):
            path = data.split_path(split)
            if path.exists():
                texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
                if texts:
                    return list(itertools.islice(itertools.cycle(texts), count)), str(path)
    rng = random.Random(0)
    words = ["the", "film", "plot", "great", "awful", "boring", "loved", "story", "and", "a"]
    texts = [" ".join(rng.choices(words, k=rng.randint(50, 400))) for _ in range(count)]
    return texts, f"generated (no complete tokenised data under {processed})"


def run(argv: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of one command; fails with its stderr if it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/models/champion"))
    parser.add_argument("--reviews", type=int, default=25_000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    model = args.model if args.model.is_absolute() else ROOT / args.model
    if not model.exists():
        sys.exit(f"model {model} not found: train one, or pass --model artifacts/models/<run_id>")
    data_dir = args.data_dir if args.data_dir.is_absolute() else ROOT / args.data_dir
    texts, source = review_texts(data_dir, args.reviews)
    command = cli()

    # Reference: one `predict` process per review.
    per_review = [
        run([*command, "predict", "--model", str(model), "--json", text])[0]
        for text in texts[: args.processes]
    ]
    mean = statistics.fmean(per_review)

    # Pipeline: one `score` process for all of them.
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.serving.exported import SAVED_MODEL_DIR
    from tasks.serving.saved_model import export_for

    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        reviews = Path(tmp) / "reviews.parquet"
        ids = [str(i) for i in range(1, len(texts) + 1)]
        pq.write_table(pa.table({"id": ids, "text": texts}), reviews)
        output = Path(tmp) / "out.parquet"
        argv = ["score", "--input", str(reviews), "--model", str(model), "--output", str(output)]
        seconds, stdout = run([*command, *argv, "--json"])
        summary = json.loads(stdout.strip().splitlines()[-1])
        rows = pq.read_metadata(output).num_rows
        keras_prob = np.asarray(pq.read_table(output, columns=["probability"])["probability"])

        # The SavedModel path: the same command on the export's saved_model/.
        saved = model / SAVED_MODEL_DIR
        if not saved.is_dir():
            saved = export_for(model, Path(tmp) / SAVED_MODEL_DIR)
        saved_argv = ["score", "--input", str(reviews), "--model", str(saved)]
        saved_seconds, stdout = run([*command, *saved_argv, "--output", str(output), "--json"])
        saved_summary = json.loads(stdout.strip().splitlines()[-1])
        saved_prob = np.asarray(pq.read_table(output, columns=["probability"])["probability"])
        size = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())
    if rows != len(texts) or summary["rows"] != len(texts):
        sys.exit(f"score wrote {rows} rows for {len(texts)} reviews")

    extrapolated = mean * len(texts)
    print(
        json.dumps(
            {
                "benchmark": "score",
                "reviews": len(texts),
                "input": source,
                "reference_processes": len(per_review),
                "reference_seconds": [round(s, 2) for s in per_review],
                "reference_seconds_per_review": round(mean, 3),
                "reference_extrapolated_seconds": round(extrapolated, 1),
                "pipeline_seconds": round(seconds, 2),
                "pipeline_reviews_per_second": round(len(texts) / seconds, 1),
                "pipeline_scoring_seconds": summary["seconds"],
                "pipeline_scoring_reviews_per_second": summary["reviews_per_second"],
                "speedup": round(extrapolated / seconds, 1),
                "target": TARGET,
                "saved_model_seconds": round(saved_seconds, 2),
                "saved_model_reviews_per_second": round(len(texts) / saved_seconds, 1),
                "saved_model_scoring_seconds": saved_summary["seconds"],
                "saved_model_scoring_reviews_per_second": saved_summary["reviews_per_second"],
                "saved_model_max_abs_diff": float(np.max(np.abs(saved_prob - keras_prob))),
                "saved_model_mb": round(size / 2**20, 1),
                "model": summary["model_id"],
                "model_path": str(model),
            }
        )
    )


if __name__ == "__main__":
    main()
