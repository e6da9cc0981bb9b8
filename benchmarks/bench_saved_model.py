"""The SavedModel against the project on the real archive: the 25,000 raw test reviews scored by
`imdb-pipeline predict`'s path (the Keras model and the project's tokenizer) and by the
export's SavedModel (tokenizer in the graph, loaded with `tf.saved_model.load`), in one run:
the largest probability difference, both accuracies, how many labels differ, each path's
reviews/s, and whether the graph's token ids equal the project's on all 100,000 reviews.
Needs the archive prepared under --data-dir; a SavedModel is written to a temporary folder for
an export made before it had one.
Usage: python benchmarks/bench_saved_model.py --data-dir data --model artifacts/models/champion
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("artifacts/models/champion"))
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import tensorflow as tf

    from tasks.config import PipelineConfig
    from tasks.data import text
    from tasks.data.prepared import already_prepared
    from tasks.serving.exported import SAVED_MODEL_DIR
    from tasks.serving.predict import Predictor
    from tasks.serving.saved_model import (
        SavedModelScorer,
        ServingGraph,
        export_for,
    )

    config = PipelineConfig(data_dir=args.data_dir, source=str(REAL_ARCHIVE), sha256=REAL_SHA256)
    base = already_prepared(config)
    if base is None:
        sys.exit(f"the archive is not prepared under {args.data_dir}: run imdb-pipeline prepare")
    model = args.model.resolve()
    test = pq.read_table(base.split_path("test"), columns=["text", "label"])
    texts = test.column("text").to_pylist()
    labels = np.asarray(test.column("label"), dtype=np.int64)

    with tempfile.TemporaryDirectory() as tmp:
        saved = model / SAVED_MODEL_DIR
        if not saved.is_dir():
            saved = export_for(model, Path(tmp) / SAVED_MODEL_DIR)
        size = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())

        t0 = time.perf_counter()
        keras_prob = Predictor(model).predict(texts)
        keras_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        saved_prob = SavedModelScorer(saved).predict(texts)
        saved_s = time.perf_counter() - t0

    # Token ids of every review (all splits): the graph's against the project's.
    vocabulary = (model / "vocab.txt").read_text(encoding="utf-8").splitlines()
    graph = ServingGraph(None, vocabulary, 10**9)
    tokens = tf.function(graph.tokens, input_signature=[tf.TensorSpec([None], tf.string)])
    every = []
    for split in ("train", "validation", "test", "unsup"):
        every += pq.read_table(base.split_path(split), columns=["text"]).column("text").to_pylist()
    differ = 0
    for i in range(0, len(every), 5000):
        chunk = every[i : i + 5000]
        want = text.encode(text.tokenize(chunk), vocabulary).to_pylist()
        got_tokens = tokens(tf.constant(chunk))
        got = graph.vocabulary.lookup(got_tokens.flat_values)
        got = got_tokens.with_flat_values(got).to_list()
        differ += sum(a != b for a, b in zip(want, got, strict=True))

    diff = np.abs(saved_prob - keras_prob)
    print(
        json.dumps(
            {
                "benchmark": "saved_model",
                "model": str(model),
                "test_reviews": len(texts),
                "max_abs_diff": float(diff.max()),
                "mean_abs_diff": float(diff.mean()),
                "keras_accuracy": float(np.mean((keras_prob >= 0.5) == labels)),
                "saved_model_accuracy": float(np.mean((saved_prob >= 0.5) == labels)),
                "labels_differ": int(np.sum((keras_prob >= 0.5) != (saved_prob >= 0.5))),
                "keras_reviews_per_second": round(len(texts) / keras_s, 1),
                "saved_model_reviews_per_second": round(len(texts) / saved_s, 1),
                "saved_model_mb": round(size / 2**20, 1),
                "token_ids_compared": len(every),
                "token_ids_differ": differ,
            }
        )
    )


if __name__ == "__main__":
    main()
