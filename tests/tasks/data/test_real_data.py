"""Slow checks of tokenize_archive on the real IMDB archive (skipped when it is not present)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.core.atomic import file_sha256
from tasks.data.processed import SPLITS, TokenizeParams, load_processed
from tasks.data.tokenize import tokenize_archive
from tests.conftest import REAL_ARCHIVE, REAL_SHA256

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_data(tmp_path_factory: pytest.TempPathFactory):
    if not REAL_ARCHIVE.exists():
        pytest.skip(f"real IMDB archive not found at {REAL_ARCHIVE}")
    assert file_sha256(REAL_ARCHIVE) == REAL_SHA256, f"{REAL_ARCHIVE} is not the expected copy"
    root = tmp_path_factory.mktemp("real-processed")
    data = tokenize_archive(REAL_ARCHIVE, REAL_SHA256, root, TokenizeParams(), progress=print)
    tables = {
        s: pq.read_table(data.split_path(s), columns=["review_id", "movie_id", "label"])
        for s in SPLITS
    }
    return data, tables


def test_real_archive_rows_and_labels(real_data) -> None:
    # Given the real archive tokenised with the default parameters
    data, tables = real_data
    labels = {s: Counter(tables[s]["label"].to_pylist()) for s in SPLITS}

    # Then train+validation and test each hold 25,000 reviews, 12,500 per label
    assert tables["train"].num_rows + tables["validation"].num_rows == 25_000
    assert tables["test"].num_rows == 25_000
    assert labels["train"] + labels["validation"] == Counter({0: 12_500, 1: 12_500})
    assert labels["test"] == Counter({0: 12_500, 1: 12_500})
    assert load_processed(Path(data.path)) == data


def test_real_archive_validation_split(real_data) -> None:
    # Given the real train and validation splits
    _, tables = real_data
    train = tables["train"]["movie_id"].to_pylist()
    validation = tables["validation"]["movie_id"].to_pylist()

    # Then validation is within 0.01 of the default 10%, and no movie is on both sides
    assert abs(len(validation) / (len(train) + len(validation)) - 0.1) <= 0.01
    assert None not in train and None not in validation
    assert set(train).isdisjoint(validation)


def test_fast_tokenizer_equals_the_regex_rules_on_every_real_review(real_data) -> None:
    # Given every real review's text
    import pyarrow as pa

    from tasks.data import text

    data, _ = real_data
    texts = pa.concat_arrays(
        [
            pq.read_table(data.split_path(s), columns=["text"])["text"].combine_chunks()
            for s in SPLITS
        ]
    )

    # When the vectorised tokenizer and the reference regex rules both tokenise them
    fast = text.tokenize(texts)
    reference = text._tokenize_regex(texts)

    # Then they agree on every review
    assert fast.equals(reference)


def test_the_saved_models_graph_tokenizer_gives_the_same_ids_on_every_real_review(
    real_data,
) -> None:
    # Given every real review's text and the vocabulary of the real data
    import tensorflow as tf

    from tasks.data import text
    from tasks.serving.saved_model import ServingGraph

    data, _ = real_data
    vocabulary = data.vocabulary()
    graph = ServingGraph(None, vocabulary, 10**9)
    tokens = tf.function(graph.tokens, input_signature=[tf.TensorSpec([None], tf.string)])
    texts = [
        t
        for s in SPLITS
        for t in pq.read_table(data.split_path(s), columns=["text"])["text"].to_pylist()
    ]

    # When the SavedModel's in-graph tokenizer and the project's give token ids
    differ = []
    for start in range(0, len(texts), 5000):
        chunk = texts[start : start + 5000]
        want = text.encode(text.tokenize(chunk), vocabulary).to_pylist()
        got = tokens(tf.constant(chunk))
        got = got.with_flat_values(graph.vocabulary.lookup(got.flat_values)).to_list()
        differ += [start + i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b]

    # Then they are identical for all 100,000 reviews
    assert len(texts) == 100_000 and differ == []
