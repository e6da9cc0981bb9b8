"""A prediction is a function of its input alone: never of batch neighbours, padding or order."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq

from tasks.evaluation import evaluate
from tasks.serving.predict import Predictor
from tasks.training.layers import load_model
from tasks.training.model import serving_model
from tests.imdb_fixtures import Exported, review_text


def test_a_review_scores_the_same_alone_beside_others_and_beside_long_reviews(
    exported: Exported,
) -> None:
    # Given the exported default model (masked padding, two branches) and a short review
    predictor = Predictor(exported.model_dir)
    rng = random.Random(3)
    short = "great film, loved it!"
    others = [review_text(rng, rng.random() < 0.5) for _ in range(30)]
    long = [review_text(rng, rng.random() < 0.5, words=600) for _ in range(3)]

    # When it is scored alone, among other reviews, and among very long ones, in any position
    alone = predictor.predict([short])[0]
    among = predictor.predict([*others[:10], short, *others[10:]])[10]
    beside_long = predictor.predict([*long, short])[3]
    first = predictor.predict([short, *long, *others])[0]

    # Then every score agrees to 1e-5
    assert abs(among - alone) < 1e-5
    assert abs(beside_long - alone) < 1e-5
    assert abs(first - alone) < 1e-5


def test_evaluate_and_predict_count_exactly_the_same_correct_answers(exported: Exported) -> None:
    # Given the test split: token ids in parquet, and the same reviews' raw text
    test_path = exported.data.split_path("test")
    table = pq.read_table(test_path, columns=["text", "label"])
    labels = np.asarray(table.column("label"), dtype=np.int64)

    # When the test split is evaluated (batches sorted by length) and the raw texts are
    # predicted (batches in file order, in another batch size)
    model = serving_model(load_model(exported.best.model_path, compile=False), exported.config)
    metrics = evaluate.evaluate(model, test_path, exported.config)
    predictor = Predictor(exported.model_dir)
    texts = table.column("text").to_pylist()
    prob = np.concatenate([predictor.predict(texts[i : i + 7]) for i in range(0, len(texts), 7)])

    # Then both count exactly the same correct answers
    evaluated = round(metrics["accuracy"] * metrics["examples"])
    predicted = int(((prob >= 0.5) == labels).sum())
    assert predicted == evaluated
    assert metrics["examples"] == len(labels)
