"""Tests of the sentiment model: its layers under each config switch, and its compilation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.training.model import build_model, compile_model, set_ngram_ratios
from tests.imdb_fixtures import tiny_config

BASE = ["token_ids", "embedding", "embedding_dropout"]
POOLS = ["max_pool", "mean_pool", "pools"]
HEAD = ["dropout", "sentiment"]
# The earlier model: front padding without a mask, no n-gram branch ("off" for each addition)
EARLIER = {"mask_padding": False, "ngram_order": 0}
TWO_BRANCH_HEAD = ["dropout", "ngram_ids", "lstm_logit", "ngram_logit", "branch_logits"]


def _names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def _batch(rows: int = 3, length: int = 40) -> np.ndarray:
    """Token ids below the tiny vocabulary size, the first row padded at the front."""
    x = np.random.default_rng(0).integers(1, 60, size=(rows, length)).astype(np.int32)
    x[0, :10] = 0
    return x


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, [*BASE, "lstm_1", *POOLS, *HEAD]),
        ({"bidirectional": True}, [*BASE, "bilstm_1", *POOLS, *HEAD]),
        ({"pooling": "last"}, [*BASE, "lstm_1", *HEAD]),
        ({"pooling": "max"}, [*BASE, "lstm_1", "max_pool", *HEAD]),
        ({"pooling": "mean"}, [*BASE, "lstm_1", "mean_pool", *HEAD]),
        ({"lstm_layers": 2}, [*BASE, "lstm_1", "lstm_2", *POOLS, *HEAD]),
        (
            {"lstm_layers": 2, "bidirectional": True, "pooling": "last"},
            [*BASE, "bilstm_1", "bilstm_2", *HEAD],
        ),
        ({"dropout": 0}, [*BASE, "lstm_1", *POOLS, "sentiment"]),
        ({"embedding_dropout": 0, "dropout": 0}, [*BASE[:2], "lstm_1", *POOLS, "sentiment"]),
    ],
    ids=[
        "tiny",
        "bidirectional",
        "last",
        "max",
        "mean",
        "two-layers",
        "two-bidirectional-last",
        "no-dropout",
        "no-dropouts",
    ],
)
def test_config_switches_give_the_expected_layers_and_output(
    tmp_path: Path, overrides: dict, expected: list[str]
) -> None:
    # Given the tiny config (one unidirectional LSTM, max+mean pooling) as the earlier model,
    # with some switches
    config = tiny_config(tmp_path, **{**EARLIER, **overrides})

    # When the model is built and run on a batch
    model = build_model(config)
    prob = np.asarray(model(_batch(), training=False))

    # Then it has exactly the expected layers, and one probability per review
    assert _names(model) == expected
    assert prob.shape == (3, 1)
    assert np.all((prob >= 0) & (prob <= 1))


def test_the_default_model_masks_padding_and_trains_two_branches(tmp_path: Path) -> None:
    import keras

    from tasks.training.layers import MaskedGlobalMaxPooling1D
    from tasks.training.model import is_two_branch, serving_model

    # Given the tiny config with the defaults: masked padding and the n-gram branch
    config = tiny_config(tmp_path)
    model = build_model(config)

    # Then the embedding masks id 0, the max pool honours the mask, and the training model
    # outputs one logit per branch, trained on their own losses
    assert _names(model) == [*BASE, "lstm_1", *POOLS, *TWO_BRANCH_HEAD]
    assert model.get_layer("embedding").mask_zero is True
    assert isinstance(model.get_layer("max_pool"), MaskedGlobalMaxPooling1D)
    assert is_two_branch(model)
    assert np.asarray(model(_batch(), training=False)).shape == (3, 2)
    assert model.loss.__name__ == "branch_crossentropy"

    # When turned into the serving model / Then one probability: the sigmoid of the LSTM
    # logit weighted by lstm_weight plus the n-gram logit
    serving = serving_model(model, config)
    logits = np.asarray(model(_batch(), training=False))
    prob = np.asarray(serving(_batch(), training=False))
    assert prob.shape == (3, 1)
    combined = config.lstm_weight * logits[:, :1] + logits[:, 1:]
    assert np.allclose(prob, 1 / (1 + np.exp(-combined)), atol=1e-6)
    assert isinstance(serving, keras.Model) and serving_model(serving, config) is serving


@pytest.mark.parametrize("bidirectional", [False, True], ids=["lstm", "bilstm"])
def test_initial_weights_depend_on_the_seed_alone_not_on_pythons_global_random(
    tmp_path: Path, bidirectional: bool
) -> None:
    import random

    import keras

    # Given the default model (n-gram branch, masked padding), built once right after seeding,
    # and once after another thread of the process drew from Python's `random` (as Prefect's do)
    config = tiny_config(tmp_path, bidirectional=bidirectional)
    keras.utils.set_random_seed(config.seed)
    first = [w.copy() for w in build_model(config).get_weights()]
    keras.utils.set_random_seed(config.seed)
    random.random()
    second = build_model(config).get_weights()

    # Then every weight is the same, bit for bit
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)

    # And another seed starts elsewhere; the directions of a BiLSTM start from their own weights
    other = build_model(tiny_config(tmp_path, bidirectional=bidirectional, seed=7)).get_weights()
    assert not np.array_equal(other[1], first[1])
    if bidirectional:
        layer = build_model(config).get_layer("bilstm_1")
        forward = layer.forward_layer.cell.kernel.numpy()
        assert not np.array_equal(forward, layer.backward_layer.cell.kernel.numpy())


def test_lower_lstm_layers_feed_sequences_and_the_top_one_its_pooling(tmp_path: Path) -> None:
    # Given two LSTM layers, with and without pooling over the steps
    pooled = build_model(tiny_config(tmp_path, lstm_layers=2, pooling="max"))
    last = build_model(tiny_config(tmp_path, lstm_layers=2, pooling="last"))

    # Then the lower layer always returns sequences; the top one only when pooled over them
    assert pooled.get_layer("lstm_1").return_sequences
    assert pooled.get_layer("lstm_2").return_sequences
    assert last.get_layer("lstm_1").return_sequences
    assert not last.get_layer("lstm_2").return_sequences


def test_built_model_is_compiled_with_the_config_learning_rate(tmp_path: Path) -> None:
    import keras

    # Given a constant and a cosine learning rate
    constant = build_model(
        tiny_config(tmp_path, **EARLIER, lr_schedule="constant", learning_rate=0.01)
    )
    cosine = build_model(tiny_config(tmp_path, lr_schedule="cosine", epochs=3), steps_per_epoch=5)

    # Then both are compiled with Adam; the cosine decays to 0 over every step of every epoch
    assert constant.compiled and cosine.compiled
    assert isinstance(constant.optimizer, keras.optimizers.Adam)
    assert constant.loss == "binary_crossentropy"
    assert float(constant.optimizer.learning_rate) == pytest.approx(0.01)
    schedule = cosine.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["decay_steps"] == 15
    assert schedule["config"]["initial_learning_rate"] == pytest.approx(0.01)


def test_compile_model_recompiles_a_model_loaded_from_h5(tmp_path: Path) -> None:
    import keras

    # Given a built model (the earlier one, whose output is the probability) saved as .h5,
    # then loaded without compiling
    original = build_model(tiny_config(tmp_path, **EARLIER))
    original.save(tmp_path / "model.h5")
    loaded = keras.models.load_model(tmp_path / "model.h5", compile=False)  # layers registered
    assert not loaded.compiled

    # When it is compiled
    compile_model(loaded, 0.05)

    # Then it has Adam at that rate, binary cross-entropy, and the saved weights
    assert loaded.compiled
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert loaded.loss == "binary_crossentropy"
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.05)
    x = _batch()
    assert np.allclose(loaded(x, training=False), original(x, training=False), atol=1e-6)
    # And it trains: one batch of fit runs one optimizer step with a finite loss
    y = np.array([0, 1, 1], dtype=np.float32)
    history = loaded.fit(x, y, batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert "accuracy" in history.history
    assert int(loaded.optimizer.iterations.numpy()) == 1


def test_the_ngram_table_holds_the_ngrams_of_at_least_min_count_training_reviews(
    tmp_path: Path,
) -> None:
    from tasks.training.model import count_ngrams

    # Given training reviews in which 2, 3, 5 and (2, 3) occur in two reviews, and 4 and (4, 5)
    # in one review only, twice
    config = tiny_config(tmp_path, ngram_order=2, ngram_min_count=2)
    batches = [
        (np.array([[2, 3, 0, 0], [2, 3, 5, 0]]), np.array([1, 0])),
        (np.array([[4, 5, 4, 5]]), np.array([0])),
    ]

    # When the n-grams are counted
    counts = count_ngrams(config, batches)

    # Then the table holds 0 and the keys of 2, 3, 5 and (2, 3): reviews are counted, not
    # occurrences
    assert counts.table.tolist() == [0, 2, 3, 5, 60 + 2 * 60 + 3]

    # When the model is built with them / Then a review's unknown n-grams add nothing to its logit
    model = build_model(config, ngrams=counts)
    grams = np.asarray(model.get_layer("ngram_ids")(np.array([[2, 3, 9, 9]])))
    assert sorted(grams[0][grams[0] > 0].tolist()) == [1, 2, 4]

    # And the ratios are the ones the model's own n-gram layer counts, to the last bit: 5 is in
    # two negative reviews, 2, 3 and (2, 3) in one review of each label
    ratios = np.asarray(model.get_layer("ngram_logit").r)
    set_ngram_ratios(model, batches)
    assert np.array_equal(ratios, np.asarray(model.get_layer("ngram_logit").r))
    assert ratios[0] == 0 and ratios[3] < 0 < ratios[1] == ratios[2] == ratios[4]


def test_ngram_min_count_0_hashes_the_ngrams_as_the_previous_default_did(tmp_path: Path) -> None:
    from tasks.training.layers import NgramIds, NgramLookup

    # Given the default (an exact table) and the previous default (min count 0, bigrams)
    exact = build_model(tiny_config(tmp_path))
    hashed = build_model(tiny_config(tmp_path, ngram_order=2, ngram_min_count=0))

    # Then the first looks n-grams up in its table, the second hashes them into buckets
    assert isinstance(exact.get_layer("ngram_ids"), NgramLookup)
    layer = hashed.get_layer("ngram_ids")
    assert isinstance(layer, NgramIds)
    assert layer.size == 60 + 1024
