"""Batch checks of incoming files on the real archive: the spread of each figure over random
slices of correctly labelled reviews, the false-hold rate of the defaults, what flipped and
one-sided files score, and the time the checks add to ingesting a 1,000-review file.

Slices (`--slices` of `--size` reviews, drawn without replacement within a slice):
- label balance over the 25,000 labelled training reviews (train + validation);
- champion agreement over the validation split (the champion never trained on it; the test
  split is for final evaluation only);
- OOV rate over the validation split and over the 50,000 unlabelled reviews (new text).
The timing ingests the same file of 1,000 unlabelled reviews (labelled with the champion's own
predictions) into two fresh data folders, once with the batch checks and once without, in this
run. Needs the archive prepared under --data-dir and an exported --model.
Usage: python benchmarks/bench_batch_checks.py --data-dir data --model artifacts/models/champion
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REAL_ARCHIVE, REAL_SHA256  # noqa: E402


def spread(values: list[float]) -> dict:
    a = np.asarray(values)
    return {
        "mean": round(float(a.mean()), 4),
        "sd": round(float(a.std(ddof=1)), 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("artifacts/models/champion"))
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from tasks.config import PipelineConfig
    from tasks.data.prepared import already_prepared
    from tasks.ingest import batch
    from tasks.ingest.ingest import ingest_folder
    from tasks.ingest.steps import batch_judge
    from tasks.ingest.validate import reference_keys
    from tasks.serving.predict import Predictor

    config = PipelineConfig(data_dir=args.data_dir, source=str(REAL_ARCHIVE), sha256=REAL_SHA256)
    base = already_prepared(config)
    if base is None:
        sys.exit(f"the archive is not prepared under {args.data_dir}: run imdb-pipeline prepare")
    model = args.model.resolve()
    predictor = Predictor(model)
    th = batch.Thresholds(
        config.batch_alpha,
        config.batch_max_label_shift,
        config.batch_max_agreement_drop,
        config.batch_max_oov_increase,
    )
    vocabulary = base.vocabulary()
    train = pq.read_table(base.split_path("train"), columns=["label"])
    val = pq.read_table(base.split_path("validation"), columns=["text", "label"])
    unsup = pq.read_table(base.split_path("unsup"), columns=["text"]).column("text").to_pylist()
    val_texts = val.column("text").to_pylist()
    val_labels = np.asarray(val.column("label"), dtype=np.int64)
    labelled = np.concatenate([np.asarray(train.column("label")), val_labels])
    ref = batch.archive_reference(
        labelled, val_texts, val_labels, vocabulary, predictor.predict, model.name
    )
    val_predicted = (predictor.predict(val_texts) >= 0.5).astype(np.int64)
    val_oov = batch.oov_shares(val_texts, vocabulary)
    unsup_oov = batch.oov_shares(unsup, vocabulary)

    rng = np.random.default_rng(args.seed)
    figures: dict[str, list[float]] = {"label": [], "agreement": [], "oov_val": [], "oov_unsup": []}
    held = {"correct": 0, "flipped": 0, "all_positive": 0, "reversed_words": 0}
    held_by = {"label_balance": 0, "champion_agreement": 0, "oov_rate": 0}
    for _ in range(args.slices):
        lab = labelled[rng.choice(len(labelled), args.size, replace=False)]
        v = rng.choice(len(val_labels), args.size, replace=False)
        u = rng.choice(len(unsup_oov), args.size, replace=False)
        checks = [
            batch.label_balance(lab, ref, th),
            batch.champion_agreement(val_labels[v], val_predicted[v], ref, th),
            batch.oov_rate(unsup_oov[u], ref, th),
        ]
        figures["label"].append(checks[0].value)
        figures["agreement"].append(checks[1].value)
        figures["oov_val"].append(float(val_oov[v].mean()))
        figures["oov_unsup"].append(checks[2].value)
        failed = batch.failed(checks)
        held["correct"] += bool(failed)
        for c in failed:
            held_by[c.name] += 1
        flipped = 1 - val_labels[v]
        held["flipped"] += bool(
            batch.failed([batch.champion_agreement(flipped, val_predicted[v], ref, th)])
        )
        ones = np.ones(args.size, dtype=np.int64)
        held["all_positive"] += bool(batch.failed([batch.label_balance(ones, ref, th)]))
        # Garbled text (every word spelt backwards): what an encoding or language mix-up does.
        garbled = [" ".join(w[::-1] for w in val_texts[i].split()) for i in v]
        shares = batch.oov_shares(garbled, vocabulary)
        held["reversed_words"] += bool(batch.failed([batch.oov_rate(shares, ref, th)]))

    # Time: one file of 1,000 random unlabelled reviews, ingested with and without the checks
    # into fresh folders.
    texts = [unsup[i] for i in rng.choice(len(unsup), 1000, replace=False)]
    labels = (predictor.predict(texts) >= 0.5).astype(int).tolist()
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        incoming = Path(tmp) / "incoming"
        incoming.mkdir()
        rows = [{"text": t, "label": int(y)} for t, y in zip(texts, labels, strict=True)]
        (incoming / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        keys = reference_keys(base)
        for name in ("without_checks", "with_checks"):
            t0 = time.perf_counter()  # the champion's loading counts, as in a night
            judge = (
                batch_judge(config, base, (model.name, Predictor(model).predict))
                if name == "with_checks"
                else None
            )
            report = ingest_folder(
                incoming,
                Path(tmp) / name,
                reference=partial(lambda k: k, keys),
                max_chars=config.max_review_chars,
                judge=judge,
                progress=lambda _: None,
            )
            seconds[name] = round(time.perf_counter() - t0, 2)
            assert report.files[0].status in ("accepted", "quarantined"), report.files[0]
    print(
        json.dumps(
            {
                "benchmark": "batch_checks",
                "slices": args.slices,
                "size": args.size,
                "model": str(model),
                "reference": {
                    "positive_share": round(ref.positive_share, 4),
                    "oov_rate_validation": round(ref.oov_rate, 4),
                    "champion_validation_accuracy": round(ref.champion_accuracy or 0, 4),
                },
                "thresholds": th.__dict__,
                "label_balance": spread(figures["label"]),
                "champion_agreement": spread(figures["agreement"]),
                "oov_rate_validation": spread(figures["oov_val"]),
                "oov_rate_unlabelled": spread(figures["oov_unsup"]),
                "false_hold_rate": held["correct"] / args.slices,
                "false_holds_by_check": held_by,
                "flipped_held_rate": held["flipped"] / args.slices,
                "all_positive_held_rate": held["all_positive"] / args.slices,
                "reversed_words_held_rate": held["reversed_words"] / args.slices,
                "ingest_1000_reviews_s": seconds,
                "checks_add_s": round(seconds["with_checks"] - seconds["without_checks"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
