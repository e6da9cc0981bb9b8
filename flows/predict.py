"""predict: score raw review text with an exported model (no Prefect run: it must be quick)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from tqdm import tqdm

from tasks.serving.predict import BATCH, Predictor, read_texts


def predict_command(model: Path, input_path: Path | None, texts: list[str], as_json: bool) -> dict:
    """Print one line per text (probability and label); returns a summary."""
    if input_path is None and not texts:
        raise ValueError("give review texts as arguments or --input FILE")
    predictor = Predictor(model)
    stream = itertools.chain(texts, read_texts(input_path) if input_path else [])
    count = positive = 0
    with tqdm(unit=" reviews", disable=None, file=sys.stderr) as bar:
        while batch := list(itertools.islice(stream, BATCH)):
            for text, prob in zip(batch, predictor.predict(batch), strict=True):
                label = "positive" if prob >= 0.5 else "negative"
                positive += label == "positive"
                if as_json:
                    print(
                        json.dumps(
                            {"text": text, "probability": round(float(prob), 6), "label": label}
                        )
                    )
                else:
                    print(f"{prob:.4f}\t{label}\t{text[:80]}")
            count += len(batch)
            bar.update(len(batch))
    return {"flow": "predict", "model": str(predictor.path), "count": count, "positive": positive}
