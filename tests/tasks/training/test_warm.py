"""Warm starts: the champion's weights moved into a model of a new vocabulary and n-gram table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.training.layers import ngram_keys
from tasks.training.model import EMBEDDING, build_model, count_ngrams
from tasks.training.warm import WarmStart, id_map, remap_ngram_keys, transfer_weights
from tests.imdb_fixtures import tiny_config

SPECIAL = ["", "[UNK]"]


def _vocabularies() -> tuple[list[str], list[str]]:
    """The champion's vocabulary, and tonight's: the same words in another order, one of them
    ("w7") replaced by a word the champion never saw."""
    old = SPECIAL + [f"w{i}" for i in range(2, 60)]
    words = [w for w in old[2:] if w != "w7"] + ["novel"]
    new = SPECIAL + list(np.random.default_rng(1).permutation(words))
    return old, new


def _reviews(vocabulary: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The same 40 reviews (end-padded token ids) in `vocabulary`'s ids: words shared by both
    vocabularies, many repeated, so that n-grams occur in two reviews or more."""
    rng = np.random.default_rng(0)
    shared = [f"w{i}" for i in range(2, 14) if i != 7]
    ids = {word: i for i, word in enumerate(vocabulary)}
    x = np.zeros((40, 12), dtype=np.int32)
    for row in range(40):
        length = int(rng.integers(6, 13))
        x[row, :length] = [ids[w] for w in rng.choice(shared, length)]
    return x, (np.arange(40) % 2).astype(np.float32)


def _model(config, batches):
    return build_model(config, ngrams=count_ngrams(config, batches))


def test_ngram_keys_follow_their_words_into_another_vocabulary() -> None:
    # Given a unigram, a bigram and a trigram of known words, and one with a word now gone
    old, new = _vocabularies()
    ids = id_map(old, new)
    at_old = {w: i for i, w in enumerate(old)}
    at_new = {w: i for i, w in enumerate(new)}
    grams = [["w3"], ["w3", "w5"], ["w9", "w2", "w4"], ["w7", "w2"]]

    def key(words: list[str], at: dict[str, int]) -> int:
        row = np.array([[at.get(w, 1) for w in words]], dtype=np.int32)
        keys = np.asarray(ngram_keys(row, 60, 3))[0]
        return int(keys.max())  # the highest-order key of the row is the whole n-gram's

    # When their keys in the old vocabulary are remapped
    remapped = remap_ngram_keys(np.array([0] + [key(g, at_old) for g in grams]), ids, 60, 3)

    # Then each is the key of the same words in the new vocabulary, and the gone word's is -1
    assert list(remapped) == [0, *(key(g, at_new) for g in grams[:3]), -1]


def test_a_warm_started_model_scores_reviews_as_the_champion_did_when_only_ids_changed() -> None:
    # Given a champion with non-trivial weights, and tonight's model built on the same reviews
    # in another vocabulary (its own n-gram table and ratios)
    config = tiny_config(Path("unused"), ngram_order=3)
    old, new = _vocabularies()
    x_old, y = _reviews(old)
    x_new, _ = _reviews(new)
    champion = _model(config, [(x_old, y)])
    rng = np.random.default_rng(2)
    for weight in champion.trainable_weights:
        weight.assign(rng.normal(0, 0.3, weight.shape).astype(weight.dtype))
    model = _model(config, [(x_new, y)])
    fresh = np.asarray(model.get_layer(EMBEDDING).embeddings.numpy())

    # When the champion's weights are moved into it
    moved = transfer_weights(model, champion, old, new, config.vocab_size, config.ngram_order)

    # Then it gives each review both branch logits the champion gave it
    np.testing.assert_allclose(
        model.predict(x_new, verbose=0), champion.predict(x_old, verbose=0), atol=1e-5
    )
    # And the word the champion never saw keeps its fresh start, the others carried over
    novel = new.index("novel")
    rows = np.asarray(model.get_layer(EMBEDDING).embeddings.numpy())
    np.testing.assert_array_equal(rows[novel], fresh[novel])
    assert moved["words"] == 57 and moved["words_new"] == 1
    assert moved["ngrams"] > 0 and moved["ngrams_new"] == 0


def test_a_warm_start_whose_champion_export_is_gone_says_so(tmp_path: Path) -> None:
    # Given a warm start recorded in a run, whose model has since been deleted
    record = WarmStart(tmp_path / "night-1" / "model.keras", tmp_path / "night-1" / "vocab.txt", 1)

    # When it is read back and checked, then the error names the missing file
    warm = WarmStart.from_record(record.record())
    assert warm == record
    with pytest.raises(FileNotFoundError, match="night-1/model.keras not found"):
        warm.check()
