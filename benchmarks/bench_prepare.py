"""Archive -> parquet: the pipeline's tokenize step vs tarfile + keras TextVectorization.

Each side runs in its own process on the real archive; prints one JSON line with both times,
the speed-up and each side's peak RSS.  Usage: python benchmarks/bench_prepare.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256, peak_rss_mb, run_isolated  # noqa: E402

VOCAB = 20_000
LENGTH = 200


def reference() -> dict:
    """The plain-Keras way: read every review with tarfile, adapt and apply TextVectorization."""
    import re
    import tarfile

    import keras
    import numpy as np

    t0 = time.perf_counter()
    pattern = re.compile(r"^aclImdb/(train|test)/(pos|neg)/\d+_\d+\.txt$")
    texts: dict[str, list[str]] = {"train": [], "test": []}
    with tarfile.open(REAL_ARCHIVE, "r:gz") as tar:
        for member in tar:
            m = pattern.match(member.name)
            if m:
                body = tar.extractfile(member).read().decode("utf-8", "replace")
                texts[m.group(1)].append(body)
    read_s = time.perf_counter() - t0
    layer = keras.layers.TextVectorization(max_tokens=VOCAB, output_sequence_length=LENGTH)
    layer.adapt(texts["train"], batch_size=1024)
    train = np.asarray(layer(texts["train"]))
    test = np.asarray(layer(texts["test"]))
    total = time.perf_counter() - t0
    return {
        "seconds": total,
        "read_seconds": read_s,
        "rows": int(len(train) + len(test)),
        "peak_rss_mb": peak_rss_mb(),
    }


def pipeline() -> dict:
    """The pipeline's pure tokenize step, archive to parquet in a temporary folder."""
    from tasks.tokenize import TokenizeParams, tokenize_archive

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = tokenize_archive(REAL_ARCHIVE, REAL_SHA256, Path(tmp), TokenizeParams(VOCAB))
        seconds = time.perf_counter() - t0
    rows = sum(c["rows"] for c in data.counts.values())
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    if len(sys.argv) > 1:  # child process: run one side
        print(json.dumps({"reference": reference, "pipeline": pipeline}[sys.argv[1]]()))
        return
    if not REAL_ARCHIVE.exists():
        sys.exit(f"real archive not found at {REAL_ARCHIVE} (set IMDB_SOURCE)")
    script = Path(__file__)
    ref = run_isolated(script, "reference")
    ours = run_isolated(script, "pipeline")
    result = {
        "benchmark": "prepare",
        "archive": str(REAL_ARCHIVE),
        "reference_keras_textvectorization_s": round(ref["seconds"], 2),
        "reference_read_s": round(ref["read_seconds"], 2),
        "pipeline_s": round(ours["seconds"], 2),
        "speedup": round(ref["seconds"] / ours["seconds"], 2),
        "reference_peak_rss_mb": round(ref["peak_rss_mb"]),
        "pipeline_peak_rss_mb": round(ours["peak_rss_mb"]),
        "rows": ours["rows"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
