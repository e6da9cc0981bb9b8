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
    NgramLookup,
    load_model,
    ngram_keys,
)


def _padded(rows: list[list[int]]) -> np.ndarray:
    width = max(map(len, rows))
    return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int32)


def _ids(layer: NgramIds | NgramLookup, rows: list[list[int]]) -> list[set[int]]:
    out = np.asarray(layer(_padded(rows)))
    return [set(row[row > 0].tolist()) for row in out]


def _lookup(vocab_size: int, order: int, rows: list[list[int]]) -> NgramLookup:
    """An NgramLookup whose table holds every n-gram of `rows`."""
    keys = np.asarray(ngram_keys(_padded(rows), vocab_size, order)).ravel()
    table = np.unique(np.concatenate([[0], keys]))
    layer = NgramLookup(vocab_size, order, len(table))
    layer.build((None, None))
    layer.set_table(table)
    return layer


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


def test_ngram_keys_are_exact_distinct_and_ignore_padding_and_oov() -> None:
    # Given a vocabulary of 10 ids and a review repeating one bigram, alone and batched
    keys = np.asarray(ngram_keys(_padded([[3, 4, 3, 4, 5], [2] * 12]), 10, 3))[0]
    with_oov = np.asarray(ngram_keys(_padded([[3, 1, 4]]), 10, 3))[0]

    # Then each distinct uni-, bi- and trigram has one exact key, in its order's range
    assert sorted(keys[keys > 0].tolist()) == [
        3,
        4,
        5,
        10 + 34,  # (3, 4): base-10 digits, past the 10 unigram keys
        10 + 43,
        10 + 45,
        110 + 343,  # (3, 4, 3): past the 100 bigram keys
        110 + 345,
        110 + 434,
    ]
    # and no n-gram spans an <oov> (id 1), which is no unigram either
    assert sorted(with_oov[with_oov > 0].tolist()) == [3, 4]


def test_ngram_lookup_gives_table_positions_and_0_for_ngrams_not_in_it() -> None:
    # Given a table of the n-grams of one review
    layer = _lookup(10, 2, [[2, 3, 4]])

    # When that review, a longer batch neighbour and a review with unseen n-grams are looked up
    alone = _ids(layer, [[2, 3, 4]])[0]
    batched = _ids(layer, [[2, 3, 4], [5, 6, 7, 8, 9, 5, 6, 7, 8, 9]])[0]
    (unseen,) = _ids(layer, [[3, 4, 9, 8]])

    # Then its n-grams get distinct ids 1..5 whatever the batch, and only known n-grams an id
    assert alone == batched == {1, 2, 3, 4, 5}
    assert unseen == _ids(layer, [[3, 4]])[0]  # 3, 4 and (3, 4); 9, 8, (4, 9), (9, 8): none
    with pytest.raises(ValueError, match="table of 6 keys"):
        layer.set_table(np.zeros(3, np.int64))


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
    # Given a model using the layers (hashed and exact n-grams) and a masking embedding
    inputs = keras.Input((None,), dtype="int32")
    x = np.array([[2, 3, 4, 0], [5, 6, 0, 0]], dtype=np.int32)
    logits = []
    for grams in (NgramIds(20, 64, 2), _lookup(20, 3, [[2, 3, 4], [4, 5, 6, 7]])):
        ngram = NaiveBayesLogit(grams.size, dropout=0.5, seed=1)
        logits.append(ngram(grams(inputs)))
        ngram.set_ratios(np.linspace(-1.0, 1.0, grams.size))
    seq = keras.layers.Embedding(20, 4, mask_zero=True)(inputs)
    pooled = MaskedGlobalMaxPooling1D()(keras.layers.LSTM(3, return_sequences=True)(seq))
    out = keras.layers.Add()([*logits, keras.layers.Dense(1)(pooled)])
    model = keras.Model(inputs, out)
    expected = np.asarray(model(x, training=False))

    # When saved in both formats and loaded back
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = load_model(tmp_path / name, compile=False)

        # Then it computes the same outputs
        assert np.allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6), name
