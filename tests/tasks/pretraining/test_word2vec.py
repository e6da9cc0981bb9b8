"""Tests of the pretraining stage: deterministic, cached, verified word vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.atomic import file_sha256
from tasks.data.processed import ProcessedData
from tasks.pretraining import word2vec
from tasks.pretraining.word2vec import VECTORS_FILE, learn_word_vectors, load_vectors
from tests.imdb_fixtures import build_archive, tiny_config, tokenize_small


@pytest.fixture(scope="module")
def data(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> ProcessedData:
    return tokenize_small(small_archive, tmp_path_factory.mktemp("processed"))


def _learn(data: ProcessedData, root: Path, messages: list[str] | None = None, **overrides):
    config = tiny_config(root, **overrides)
    log = messages.append if messages is not None else (lambda _: None)
    return learn_word_vectors(data, config, root / "pretrained", progress=log)


def test_vectors_cover_the_vocabulary_and_are_deterministic(data: ProcessedData, tmp_path: Path):
    # Given the same data and settings, learnt twice in separate folders
    first = _learn(data, tmp_path / "a")
    second = _learn(data, tmp_path / "b")

    # Then the vector files are identical, one row per id of the configured vocabulary
    vectors = first.load()
    assert vectors.shape == (60, 8) and vectors.dtype == np.float32
    assert file_sha256(first.path / VECTORS_FILE) == file_sha256(second.path / VECTORS_FILE)
    assert not vectors[0].any()  # padding
    # and words the corpus holds got learnt vectors, not the small random start
    assert np.abs(vectors[2:20]).max() > 0.05


def test_other_settings_give_another_folder(data: ProcessedData, tmp_path: Path) -> None:
    # Given vectors learnt with one seed / When another seed is used / Then a new key
    assert _learn(data, tmp_path).key != _learn(data, tmp_path, seed=7).key


def test_the_downsampling_threshold_reaches_word2vec(data: ProcessedData, tmp_path: Path) -> None:
    # Given vectors learnt keeping every occurrence, and vectors learnt skipping frequent words
    kept = _learn(data, tmp_path, word2vec_sample=0)
    sampled = _learn(data, tmp_path, word2vec_sample=1e-3)

    # Then they are cached apart and are other vectors
    assert kept.key != sampled.key
    assert not np.array_equal(kept.load(), sampled.load())


def test_intact_vectors_are_reused_and_damaged_ones_rebuilt(
    data: ProcessedData, tmp_path: Path
) -> None:
    # Given vectors learnt once
    first = _learn(data, tmp_path)
    stamp = (first.path / VECTORS_FILE).stat().st_mtime_ns

    # When asked again / Then the folder is reused, untouched, and the log says so
    messages: list[str] = []
    again = _learn(data, tmp_path, messages)
    assert again == first
    assert (first.path / VECTORS_FILE).stat().st_mtime_ns == stamp
    assert any("reusing word vectors" in m for m in messages)

    # When the vector file is damaged
    (first.path / VECTORS_FILE).write_bytes(b"\x93NUMPY garbage")
    assert load_vectors(first.path) is None

    # Then the next call learns them again, and the result verifies
    rebuilt = _learn(data, tmp_path)
    assert load_vectors(rebuilt.path) is not None
    assert rebuilt.load().shape == (60, 8)


def test_a_crash_while_learning_leaves_no_folder(
    data: ProcessedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given word2vec dying half way
    def crash(*args, **kwargs):
        raise MemoryError("killed")

    monkeypatch.setattr(word2vec, "_train", crash)

    # When vectors are learnt / Then the error surfaces and nothing is left to be taken
    with pytest.raises(MemoryError):
        _learn(data, tmp_path)
    root = tmp_path / "pretrained"
    assert not root.exists() or list(root.iterdir()) == []


def test_without_unlabelled_reviews_the_training_text_is_used(tmp_path: Path) -> None:
    # Given an archive with no train/unsup folder
    archive = build_archive(tmp_path / "trimmed.tar.gz", unsup=0)
    trimmed = tokenize_small(archive, tmp_path / "processed")
    assert trimmed.counts["unsup"]["rows"] == 0

    # When vectors are learnt / Then the corpus is the training split alone
    messages: list[str] = []
    _learn(trimmed, tmp_path, messages)
    corpus = next(m for m in messages if m.startswith("word2vec on"))
    assert corpus.endswith("of train")


def _grown(base: ProcessedData, root: Path, new_rows: int) -> ProcessedData:
    """A data version adding `new_rows` accepted training reviews to `base`: its vocabulary has
    the base's words in another order, one word fewer and one new word."""
    words = base.vocabulary()
    vocabulary = [*words[:2], "brandnewword", *reversed(words[3:])]
    root.mkdir(parents=True)
    (root / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    counts = {**base.counts, "train": {"rows": base.counts["train"]["rows"] + new_rows}}
    return ProcessedData(root, "grown", counts, 0, ("a" * 64,))


def test_a_version_with_little_new_text_carries_the_archives_vectors_over(
    data: ProcessedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the archive's vectors, and a version adding 1 review to its ~100 pretraining ones
    base_vectors = _learn(data, tmp_path).load()
    grown = _grown(data, tmp_path / "grown", new_rows=1)
    share = word2vec.new_text_share(grown, data)
    assert 0 < share < 0.05

    # When the new version's vectors are asked for, word2vec being unable to run
    def no_word2vec(*args, **kwargs):
        raise AssertionError("word2vec ran")

    monkeypatch.setattr(word2vec, "_train", no_word2vec)
    messages: list[str] = []
    config = tiny_config(tmp_path)
    carried = learn_word_vectors(grown, config, tmp_path / "pretrained", messages.append, data)

    # Then every word keeps its vector, looked up by word; the new word starts at random
    vectors = carried.load()
    old = {word: i for i, word in enumerate(data.vocabulary())}
    for i, word in enumerate(grown.vocabulary()):
        if word in old and i > 0:
            assert np.array_equal(vectors[i], base_vectors[old[word]]), word
    start = word2vec.random_start(60, 8, config.seed)
    assert np.array_equal(vectors[2], start[2]) and not vectors[0].any()
    # and the log says what was reused and why; the folder is another than the archive's
    assert any("reusing the word vectors of data version" in m and "%" in m for m in messages)
    assert carried.key != word2vec.vectors_key(data, config)
    assert load_vectors(carried.path) is not None

    # When asked again / Then the carried-over folder is reused as it is
    again = learn_word_vectors(grown, config, tmp_path / "pretrained", messages.append, data)
    assert again == carried
    assert any("reusing carried-over word vectors" in m for m in messages)


def test_vectors_are_learnt_again_past_the_share_or_without_the_archive_version(
    data: ProcessedData, tmp_path: Path
) -> None:
    # Given versions adding 1 and 50 reviews to the archive's ~100 pretraining reviews
    config = tiny_config(tmp_path)
    small = _grown(data, tmp_path / "small", new_rows=1)
    large = _grown(data, tmp_path / "large", new_rows=50)

    # Then only the small one may carry the archive's vectors over, and only from the archive
    assert word2vec.reusable_base(small, data, config) is not None
    assert word2vec.reusable_base(large, data, config) is None
    assert word2vec.reusable_base(small, None, config) is None
    assert word2vec.reusable_base(small, small, config) is None  # not the archive's version
    assert word2vec.reusable_base(data, data, config) is None  # nothing new
    never = tiny_config(tmp_path, word_vectors_reuse_share=0)
    assert word2vec.reusable_base(small, data, never) is None
