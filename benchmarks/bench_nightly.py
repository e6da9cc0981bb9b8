"""Nightly wall times on the real archive, each night its own `imdb-pipeline nightly` process.

1. The first night, nothing new yet: it trains on the archive and becomes the champion.
2. A night with 1,000 new labelled reviews waiting in incoming/: ingest, validate, new data
   version, word vectors (carried over from the archive's while the new text is a small share),
   train, evaluate, export, decide against the champion (the trained night).
3. The next night with nothing new: it must skip training (the skipped night).
4. The reference, measured in the same run: the trained night as it was before word vectors
   were carried over (`--word-vectors-reuse-share 0`: learnt again on the new version; the
   changed setting makes it train a challenger of its own on the same data version).
The new reviews are made from the archive's *training* reviews (never test): each joins the
first half of one review to the second half of another with the same label, so its text is
new and passes the duplicate check. Prints one JSON line; `--keep DIR` keeps the folders
(DIR/art/models/champion then serves `bench_score.py --model`). `--first-night DIR` starts
from the data/ and art/ a first night left in DIR (copied), or runs the first night and saves
them there: the later nights can then be measured again without training the champion again.
Usage: python benchmarks/bench_nightly.py [--new-reviews 1000] [--keep DIR] [--no-reference]
       [--first-night DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256, ROOT  # noqa: E402


def new_reviews(data_dir: Path, n: int, seed: int = 0) -> list[dict]:
    """`n` labelled reviews spliced from halves of the archive's training reviews."""
    import numpy as np
    import pyarrow.parquet as pq

    from tasks.data.processed import load_processed

    folders = sorted((data_dir / "processed").glob("*/train.parquet"))
    data = next(load_processed(p.parent) for p in folders if not load_processed(p.parent).incoming)
    table = pq.read_table(data.split_path("train"), columns=["text", "label"]).to_pylist()
    pools = [np.array([r["text"] for r in table if r["label"] == y], object) for y in (0, 1)]
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        a, b = rng.choice(pools[label], 2, replace=False)
        rows.append(
            {
                "id": f"bench-{i}",
                "text": a[: len(a) // 2] + " " + b[len(b) // 2 :],
                "label": "pos" if label else "neg",
                "movie": f"tt99{i // 10:05d}",
            }
        )
    return rows


def night(root: Path, *extra: str) -> tuple[float, dict]:
    """Wall seconds of one `imdb-pipeline <command>` process and its JSON summary."""
    cmd = [
        str(ROOT / ".venv/bin/imdb-pipeline"),
        *extra,
        "--source", str(REAL_ARCHIVE),
        "--sha256", REAL_SHA256,
        "--data-dir", str(root / "data"),
        *([] if extra[0] == "prepare" else ["--artifacts-dir", str(root / "art")]),
        "--json",
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-reviews", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="keep data/ and art/ in this folder")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the night that learns vectors again"
    )
    parser.add_argument("--first-night", type=Path, help="reuse (or save) the first night here")
    args = parser.parse_args()
    if not REAL_ARCHIVE.exists():
        sys.exit(f"real archive not found at {REAL_ARCHIVE} (set IMDB_SOURCE)")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        saved = args.first_night
        if saved is not None and (saved / "art").is_dir():
            for name in ("data", "art"):
                shutil.copytree(saved / name, root / name, symlinks=True)
            first_s, first = None, {"test_accuracy": None}
        else:
            night(root, "prepare")  # the archive's own data version, to draw new reviews from
            first_s, first = night(root, "nightly")
            if saved is not None:
                for name in ("data", "art"):
                    shutil.copytree(root / name, saved / name, symlinks=True)
        incoming = root / "data" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        rows = new_reviews(root / "data", args.new_reviews)
        (incoming / "new-reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        trained_s, trained = night(root, "nightly")
        skipped_s, skipped = night(root, "nightly")
        reference_s = reference = None
        if not args.no_reference:
            reference_s, reference = night(root, "nightly", "--word-vectors-reuse-share", "0")
        print(
            json.dumps(
                {
                    "benchmark": "nightly",
                    "first_night_s": first_s and round(first_s, 1),
                    "first_test_accuracy": first.get("test_accuracy"),
                    "new_reviews": args.new_reviews,
                    "accepted": sum(f["accepted_rows"] for f in trained["incoming"]),
                    "trained_night_s": round(trained_s, 1),
                    "trained": trained["trained"],
                    "test_accuracy": trained.get("test_accuracy"),
                    "decision": trained.get("champion", {}).get("reason"),
                    "skipped_night_s": round(skipped_s, 1),
                    "skipped": not skipped["trained"],
                    "skip_reason": skipped.get("reason"),
                    "reference_vectors_learnt_again_s": reference_s and round(reference_s, 1),
                    "reference_test_accuracy": reference and reference.get("test_accuracy"),
                    "data_version": trained["data_version"],
                }
            )
        )


if __name__ == "__main__":
    main()
