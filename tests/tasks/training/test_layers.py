"""Tests of the model's own layers: n-gram ids, the naive-Bayes logit, masked max pooling."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tasks.training.layers import (
    MaskedGlobalMaxPooling1D,
    NaiveBayesLogit,
    NgramIds,
    load_model,
)


def _ids(layer: NgramIds, rows: list[list[int]]) -> list[set[int]]:
    width = max(map(len, rows))
    batch = np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int32)
    out = np.asarray(layer(batch))
    return [set(row[row > 0].tolist()) for row in out]


def test_ngram_ids_are_the_distinct_unigrams_and_hashed_bigrams_of_a_review() -> None:
    # Given a vocabulary of 10 ids and 100 bigram buckets
    layer = NgramIds(vocab_size=10, buckets=100, order=2)

    # When a review repeating one bigram is turned into n-gram ids
    (ids,) = _ids(layer, [[3, 4, 3, 4, 5]])

    # Then it holds each unigram once and each distinct bigram once, bigrams above the vocab
    unigrams = {i for i in ids if i < 10}
    bigrams = {i for i in ids if i >= 10}
    assert unigrams == {3, 4, 5}
    assert len(bigrams) == 3  # (3,4), (4,3), (4,5)
    assert all(10 <= i < layer.size for i in bigrams)


def test_ngram_ids_ignore_padding_oov_and_the_row_length_in_the_batch() -> None:
    # Given one review alone, then padded beside a much longer one, then with <oov> (id 1)
    layer = NgramIds(vocab_size=10, buckets=100, order=3)
    alone = _ids(layer, [[2, 3, 4]])[0]
    batched = _ids(layer, [[2, 3, 4], [5, 6, 7, 8, 9, 5, 6, 7, 8, 9]])[0]
    (with_oov,) = _ids(layer, [[2, 3, 1, 4]])

    # Then padding changes nothing, and no n-gram spans an <oov>
    assert alone == batched
    assert with_oov == {2, 3, 4, *(_ids(layer, [[2, 3]])[0] - {2, 3})}


def test_naive_bayes_logit_starts_as_the_scaled_naive_bayes_log_odds() -> None:
    # Given ratios r over 6 ids (0 pads) and untrained weights
    layer = NaiveBayesLogit(size=6, bias=0.4, scale=10.0)
    layer.build((None, None))
    layer.set_ratios(np.array([0.0, 0.0, 1.0, -2.0, 0.5, 3.0], dtype=np.float32))

    # When two reviews' n-gram ids (0-padded) are scored
    out = np.asarray(layer(np.array([[2, 4, 0], [3, 0, 0]], dtype=np.int32)))

    # Then each is 0.4 * sum(r) / 10 over its n-grams
    assert out[:, 0] == pytest.approx([0.04 * 1.5, 0.04 * -2.0])


def test_masked_max_pooling_ignores_masked_steps() -> None:
    # Given a sequence whose masked steps hold the largest values
    x = np.array([[[1.0, -5.0], [2.0, -1.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[True, True, False]])

    # When pooled with and without the mask / Then the masked step is skipped only with it
    pool = MaskedGlobalMaxPooling1D()
    assert np.asarray(pool(x, mask=mask)).tolist() == [[2.0, -1.0]]
    assert np.asarray(pool(x)).tolist() == [[9.0, 9.0]]


def test_masked_pools_of_a_review_without_tokens_are_zero_not_nan() -> None:
    from tasks.training.layers import MaskedGlobalAveragePooling1D

    # Given a batch whose second row is all padding (an empty review)
    x = np.array([[[1.0, 3.0], [3.0, 5.0]], [[7.0, 7.0], [7.0, 7.0]]], dtype=np.float32)
    mask = np.array([[True, True], [False, False]])

    # When pooled / Then the empty row pools to 0 and the other to its max and mean
    assert np.asarray(MaskedGlobalMaxPooling1D()(x, mask=mask)).tolist() == [[3, 5], [0, 0]]
    assert np.asarray(MaskedGlobalAveragePooling1D()(x, mask=mask)).tolist() == [[2, 4], [0, 0]]


def test_a_model_with_the_layers_round_trips_through_keras_and_h5(tmp_path: Path) -> None:
    # Given a model using all three layers and a masking embedding
    inputs = keras.Input((None,), dtype="int32")
    grams = NgramIds(20, 64, 2)
    ngram = NaiveBayesLogit(grams.size, dropout=0.5, seed=1)(grams(inputs))
    seq = keras.layers.Embedding(20, 4, mask_zero=True)(inputs)
    pooled = MaskedGlobalMaxPooling1D()(keras.layers.LSTM(3, return_sequences=True)(seq))
    out = keras.layers.Add()([ngram, keras.layers.Dense(1)(pooled)])
    model = keras.Model(inputs, out)
    x = np.array([[2, 3, 4, 0], [5, 6, 0, 0]], dtype=np.int32)
    expected = np.asarray(model(x, training=False))

    # When saved in both formats and loaded back
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = load_model(tmp_path / name, compile=False)

        # Then it computes the same outputs
        assert np.allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6), name
