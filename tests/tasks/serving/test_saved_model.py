"""The SavedModel export: raw text in, the project's tokens and probabilities out, for any
input a server may be sent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.data import text
from tasks.serving.exported import SAVED_MODEL_DIR
from tasks.serving.predict import Predictor
from tasks.serving.saved_model import (
    INPUT,
    SIGNATURE,
    ServingGraph,
    lower_map,
    word_bounds,
)
from tests.imdb_fixtures import Exported

# Where TensorFlow's own Unicode support and the project's rules part (found on every code
# point, see tasks/serving/saved_model.py), and reviews a server may meet.
HARD_CASES = [
    "İstanbul was GREAT",  # U+0130: tf.strings.lower gives two code points, Arrow one
    "x\u2c2fy Ⱟ",  # U+2C2F: newer than TensorFlow's ICU, lower-cased by Arrow
    "a\U0001123fb",  # a letter to TensorFlow's RE2, not to Python's unicodedata
    "a\U00011f02b c",
    "don't ''quote'' let''s 90's 'plot' rock'n'roll",
    "great!!! really?? <br /><br />end<i>tag</i>",
    "tabs\tand\nnewlines\u00a0nbsp\u3000ideographic",
    "ǅungla ΣΊΣΥΦΟΣ straße ﬁne ｆｕｌｌｗｉｄｔｈ",
    "",
    "<br /><br />",
    "!!! ???",
    "''' ... ---",
    "\ufffd bad bytes",
]


@pytest.fixture(scope="module")
def graph(exported: Exported) -> ServingGraph:
    import tensorflow as tf

    vocabulary = (exported.model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    g = ServingGraph(None, vocabulary, exported.config.sequence_length)
    g.tokens = tf.function(g.tokens, input_signature=[tf.TensorSpec([None], tf.string)])
    return g


@pytest.fixture(scope="module")
def serve(exported: Exported):
    import tensorflow as tf

    signature = tf.saved_model.load(str(exported.model_dir / SAVED_MODEL_DIR)).signatures
    return signature[SIGNATURE]


def graph_tokens(graph: ServingGraph, texts: list[str]) -> list[list[str]]:
    import tensorflow as tf

    return [[w.decode() for w in row] for row in graph.tokens(tf.constant(texts)).to_list()]


def test_the_graph_tokenizer_gives_the_projects_tokens_on_the_hard_cases(
    graph: ServingGraph,
) -> None:
    assert graph_tokens(graph, HARD_CASES) == text.tokenize(HARD_CASES).to_pylist()


def test_the_graph_tokenizer_agrees_on_every_code_point_beside_a_word(
    graph: ServingGraph,
) -> None:
    # Given every code point (surrogates aside) between two letters, and after an apostrophe
    chars = [chr(c) for c in range(1, sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for form in ("x{}y", "x'{}'s"):
        texts = [form.format(c) for c in chars]
        # Then the graph's tokens are the project's, for each of them
        want = text.tokenize(texts).to_pylist()
        got = [
            t
            for i in range(0, len(texts), 100_000)
            for t in graph_tokens(graph, texts[i : i + 100_000])
        ]
        bad = [texts[i] for i in range(len(texts)) if got[i] != want[i]]
        assert bad == [], f"{len(bad)} code points differ in {form!r}, e.g. {bad[:5]!r}"


def test_the_tables_are_those_of_the_project_rules() -> None:
    src, dst = lower_map()
    pairs = dict(zip(src.tolist(), dst.tolist(), strict=True))
    assert pairs[ord("A")] == ord("a") and pairs[0x130] == ord("i") and ord("a") not in pairs
    bounds = word_bounds()
    assert bounds[0] == ord("0") and bounds[1] == ord("9") + 1 and len(bounds) % 2 == 0


def test_the_saved_model_scores_like_predict_alone_and_in_any_batch(
    exported: Exported, serve
) -> None:
    import tensorflow as tf

    # Given the small archive's test reviews, scored by the project's predict
    texts = pq.read_table(exported.data.split_path("test"), columns=["text"])["text"].to_pylist()
    want = Predictor(exported.model_dir).predict(texts)

    # When the SavedModel scores them as one batch, then one by one, then beside a long review
    batch = serve(**{INPUT: tf.constant(texts)})
    alone = [float(serve(**{INPUT: tf.constant([t])})["probability"][0]) for t in texts[:10]]
    long = " ".join(texts) * 3
    beside = serve(**{INPUT: tf.constant([long, *texts[:10]])})["probability"].numpy()[1:]

    # Then every probability is predict's, to 1e-5, and the labels follow them
    prob = batch["probability"].numpy()
    assert np.max(np.abs(prob - want)) <= 1e-5
    assert np.array_equal(batch["label"].numpy(), (prob >= 0.5).astype(np.int64))
    assert np.max(np.abs(np.array(alone) - want[:10])) <= 1e-5
    assert np.max(np.abs(beside - want[:10])) <= 1e-5


def test_bad_input_through_the_signature_gets_a_defined_answer_or_a_clear_error(
    exported: Exported, serve
) -> None:
    import tensorflow as tf

    # Given an empty review, only tags, only punctuation, 1 MB of text and invalid UTF-8
    texts = [
        b"",
        b"<br /><br />",
        b"!!! ...",
        ("a great film " * 80_000).encode(),
        b"\xff\xfe ok \xc3",
    ]

    # When they are scored together
    out = serve(**{INPUT: tf.constant(texts)})

    # Then each has a probability in [0, 1], equal to predict's on the decoded text
    prob = out["probability"].numpy()
    assert prob.shape == (5,) and np.all((prob >= 0) & (prob <= 1))
    decoded = [b.decode("utf-8", "replace") for b in texts]
    assert np.max(np.abs(prob - Predictor(exported.model_dir).predict(decoded))) <= 1e-5
    # And an empty batch is an empty answer
    assert serve(**{INPUT: tf.constant([], tf.string)})["probability"].shape == (0,)
    # And a number instead of text is refused by the signature, naming the type
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="string"):
        serve(**{INPUT: tf.constant([1.5])})


def test_predict_and_score_take_the_saved_model_folder(exported: Exported, tmp_path) -> None:
    from tasks.serving.score import score_input

    texts = ["a wonderful film", "dull and awful"]
    model = exported.model_dir / SAVED_MODEL_DIR
    via_saved = Predictor(model).predict(texts)
    assert np.max(np.abs(via_saved - Predictor(exported.model_dir).predict(texts))) <= 1e-5

    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(texts) + "\n")
    summary = score_input(reviews, model, tmp_path / "out.parquet", tmp_path)
    table = pq.read_table(summary["output"])
    assert summary["model_id"] == exported.model_dir.name
    assert np.max(np.abs(np.asarray(table["probability"]) - via_saved)) <= 1e-6


def test_the_model_card_says_how_to_call_it(exported: Exported) -> None:
    card = json.loads((exported.model_dir / "model-card.json").read_text())
    assert card["saved_model"]["signature"] == SIGNATURE
    assert card["saved_model"]["input"]["name"] == INPUT
    page = (exported.model_dir / "model-card.md").read_text()
    assert "tf.saved_model.load" in page and "/v1/models/imdb:predict" in page


def test_an_export_killed_while_writing_the_saved_model_publishes_nothing(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.serving import export

    # Given an export whose SavedModel write dies half-way
    def dies(model, vocabulary, sequence_length, dest: Path) -> None:
        dest.mkdir()
        (dest / "saved_model.pb").write_bytes(b"half")
        raise OSError("killed mid-export")

    monkeypatch.setattr(export, "write_saved_model", dies)
    models = tmp_path / "models"
    with pytest.raises(OSError, match="killed"):
        export.export(
            exported.best.model_path,
            models,
            "run-x",
            exported.config,
            exported.data,
            exported.metrics,
            exported.best.epoch,
        )

    # Then there is no export folder, and no temporary one left
    assert not models.exists() or list(models.iterdir()) == []
