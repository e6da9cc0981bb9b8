"""Behaviour tests for tasks.data.tokenize on small synthetic archives in the aclImdb layout."""

from __future__ import annotations

import io
import json
import pickle
import re
import tarfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tasks.config import ConfigError, PipelineConfig, load_config
from tasks.core.atomic import file_sha256
from tasks.data import text, tokenize
from tasks.data.processed import MANIFEST, SPLITS, ProcessedData, TokenizeParams, load_processed
from tasks.data.tokenize import (
    METADATA_KEY,
    SCHEMA,
    DataError,
    assign_validation,
    decode_chunk,
    fingerprint,
    tokenize_archive,
)
from tests.imdb_fixtures import build_archive

SHA = "ab" * 32
PARAMS = TokenizeParams(vocab_size=1000, validation_fraction=0.1, seed=42)


def _vocabulary(data: ProcessedData) -> list[str]:
    return data.vocabulary_path.read_text(encoding="utf-8").splitlines()


REVIEW = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")


def _quiet(_: str) -> None:
    pass


def _run(archive: Path, root: Path, params: TokenizeParams = PARAMS, sha: str = SHA):
    return tokenize_archive(archive, sha, root, params, progress=_quiet)


def _tables(data: ProcessedData) -> dict[str, pa.Table]:
    return {s: pq.read_table(data.split_path(s)) for s in SPLITS}


def _leftovers(root: Path) -> list[str]:
    """Everything in processed_root (output folders, temporary folders, files)."""
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _rewrite(
    src: Path, dst: Path, body: Callable[[str, bytes], bytes] = lambda n, b: b, reverse=False
) -> Path:
    """Copy an archive, changing member contents with `body` and optionally reversing order."""
    members = list(_members(src).items())
    if reverse:
        members.reverse()
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in members:
            data = body(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def _url(movie: int) -> str:
    return f"http://www.imdb.com/title/tt{movie:07d}/usercomments"


@pytest.fixture(scope="module")
def built(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> ProcessedData:
    """small_archive tokenised once with PARAMS (read-only for the tests using it)."""
    return _run(small_archive, tmp_path_factory.mktemp("processed"))


# --- content of the output ---------------------------------------------------------------------


def test_rows_per_split_and_labels(built: ProcessedData) -> None:
    # Given small_archive (40 reviews per labelled folder) tokenised
    tables = _tables(built)
    rows = {s: tables[s].num_rows for s in SPLITS}
    labels = {s: Counter(tables[s]["label"].to_pylist()) for s in SPLITS}

    # Then train+validation hold the 80 train reviews and test the 80 test reviews
    assert rows["train"] + rows["validation"] == 80
    assert rows["test"] == 80
    assert labels["train"] + labels["validation"] == Counter({0: 40, 1: 40})
    assert labels["test"] == Counter({0: 40, 1: 40})

    # And the reported counts describe the files
    for s in SPLITS:
        movies = set(tables[s]["movie_id"].to_pylist()) - {None}
        assert built.counts[s] == {
            "rows": rows[s],
            "pos": labels[s][1],
            "neg": labels[s][0],
            "movies": len(movies),
        }


def test_validation_is_whole_movies_near_the_fraction(built: ProcessedData) -> None:
    # Given the tokenised train and validation splits
    tables = _tables(built)
    train = tables["train"]["movie_id"].to_pylist()
    validation = tables["validation"]["movie_id"].to_pylist()

    # Then every training review has a movie, no movie is on both sides,
    assert None not in train and None not in validation
    assert set(train).isdisjoint(validation)
    # and the validation share is within one movie (4 reviews) of the requested 10%
    share = len(validation) / (len(train) + len(validation))
    assert abs(share - PARAMS.validation_fraction) <= 4 / 80


def test_rows_hold_the_archive_reviews(built: ProcessedData, small_archive: Path) -> None:
    # Given the reviews as stored in the archive
    reviews = {}
    for name, body in _members(small_archive).items():
        m = REVIEW.match(name)
        if m:
            split, folder, rid, rating = m.groups()
            reviews[f"{split}/{folder}/{rid}"] = (split, folder, int(rating), body.decode())

    # When all output rows are gathered
    rows = [row for table in _tables(built).values() for row in table.to_pylist()]

    # Then each review appears exactly once (other members such as *.feat are left out)
    assert sorted(r["review_id"] for r in rows) == sorted(reviews)
    # with its original text, rating, label and split; unlabelled ones have neither label nor
    # rating, and a split of their own
    for row in rows:
        split, folder, rating, body = reviews[row["review_id"]]
        assert row["text"] == body
        if folder == "unsup":
            assert (row["split"], row["label"], row["rating"]) == ("unsup", None, None)
        else:
            assert row["rating"] == rating
            assert row["label"] == (1 if folder == "pos" else 0)
            assert row["split"] == split or (split, row["split"]) == ("train", "validation")
        assert row["movie_id"] is not None and row["movie_id"].startswith("tt")


def test_parquet_schema_and_metadata(built: ProcessedData) -> None:
    for split in SPLITS:
        # Given a written split file
        schema = pq.read_schema(built.split_path(split))

        # Then its columns are exactly SCHEMA
        assert schema.equals(SCHEMA, check_metadata=False)
        # and its metadata records what the data was made from
        meta = json.loads(schema.metadata[METADATA_KEY])
        assert meta == {
            "fingerprint": built.fingerprint,
            "source_sha256": SHA,
            "tokenizer_version": text.TOKENIZER_VERSION,
            "params": PARAMS.model_dump(),
        }
    # And the folder is named by the fingerprint of those inputs
    assert built.path.name == built.fingerprint == fingerprint(SHA, PARAMS)


def test_token_ids_encode_each_text_with_the_vocabulary(built: ProcessedData) -> None:
    # Given the written vocabulary
    vocabulary = _vocabulary(built)
    assert vocabulary[:2] == ["<pad>", "<oov>"]
    assert len(vocabulary) <= PARAMS.vocab_size
    assert len(set(vocabulary)) == len(vocabulary)

    for table in _tables(built).values():
        # When each split's text is tokenised and encoded again
        expected = text.encode(text.tokenize(table["text"].combine_chunks()), vocabulary)

        # Then the stored ids are exactly that, and padding never appears inside a review
        assert table["token_ids"].to_pylist() == expected.to_pylist()
        assert all(0 not in ids and ids for ids in table["token_ids"].to_pylist())


def test_manifest_lists_every_file(built: ProcessedData) -> None:
    # Given the output folder
    manifest = json.loads((built.path / MANIFEST).read_text())

    # Then the manifest names every other file and the counts reported
    assert set(manifest["files"]) == {p.name for p in built.path.iterdir()} - {MANIFEST}
    assert manifest["counts"] == built.counts
    assert manifest["undecodable_bytes"] == built.undecodable_bytes == 0
    assert load_processed(built.path) == built


def test_vocabulary_is_built_from_train_rows_only(tmp_path: Path, small_archive: Path) -> None:
    # Given an archive where every review carries a word of its own
    def tag(name: str, body: bytes) -> bytes:
        m = REVIEW.match(name)
        return body + f" uniq{m[1]}{m[2]}{m[3]}".encode() if m else body

    archive = _rewrite(small_archive, tmp_path / "tagged.tar.gz", tag)

    # When it is tokenised with room for every word
    data = _run(archive, tmp_path / "processed")

    # Then exactly the words of the train split are in the vocabulary
    tables = _tables(data)
    vocabulary = _vocabulary(data)
    train_tokens = Counter(
        t
        for tokens in text.tokenize(tables["train"]["text"].combine_chunks()).to_pylist()
        for t in tokens
    )
    assert set(vocabulary[2:]) == set(train_tokens)
    # in order of decreasing frequency, ties by token
    assert vocabulary[2:] == sorted(train_tokens, key=lambda t: (-train_tokens[t], t))
    # so the words of validation and test reviews are out of vocabulary
    for split in ("validation", "test"):
        review_ids = tables[split]["review_id"].to_pylist()
        assert review_ids
        for rid in review_ids:
            assert f"uniq{rid.replace('/', '')}" not in vocabulary


def test_output_does_not_depend_on_member_order(
    tmp_path: Path, small_archive: Path, built: ProcessedData
) -> None:
    # Given the same reviews stored in reverse order
    archive = _rewrite(small_archive, tmp_path / "reversed.tar.gz", reverse=True)

    # When tokenised with the same parameters
    data = _run(archive, tmp_path / "processed")

    # Then every split and the vocabulary are identical
    for split, table in _tables(data).items():
        assert table.equals(_tables(built)[split])
    assert _vocabulary(data) == _vocabulary(built)


def test_undecodable_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    # Given a test review containing bytes that are not UTF-8
    bad = {"aclImdb/test/pos/40_10.txt": b"Great \xff\xfe film!"}
    archive = build_archive(tmp_path / "bad.tar.gz", extra=bad)

    # When it is tokenised
    data = _run(archive, tmp_path / "processed")

    # Then it is kept with U+FFFD in place of the bad bytes, which are counted
    assert data.undecodable_bytes == 2
    assert json.loads((data.path / MANIFEST).read_text())["undecodable_bytes"] == 2
    test = {r["review_id"]: r for r in pq.read_table(data.split_path("test")).to_pylist()}
    assert test["test/pos/40"]["text"] == "Great \ufffd\ufffd film!"
    assert test["test/pos/40"]["movie_id"] is None  # no url line for it: fine outside train
    assert data.counts["test"]["rows"] == 81
    # and the count survives a reload
    assert _run(archive, tmp_path / "processed").undecodable_bytes == 2


# --- fingerprint and reuse ---------------------------------------------------------------------


def test_fingerprint_covers_every_input() -> None:
    # Given one base and variants changing one input each
    variants = [
        (SHA, PARAMS),
        ("cd" * 32, PARAMS),
        (SHA, TokenizeParams(vocab_size=999, validation_fraction=0.1, seed=42)),
        (SHA, TokenizeParams(vocab_size=1000, validation_fraction=0.2, seed=42)),
        (SHA, TokenizeParams(vocab_size=1000, validation_fraction=0.1, seed=43)),
    ]

    # When fingerprinted
    prints = [fingerprint(sha, params) for sha, params in variants]

    # Then all differ, and the same inputs always give the same fingerprint
    assert len(set(prints)) == len(prints)
    assert (
        fingerprint(SHA, TokenizeParams(vocab_size=1000, validation_fraction=0.1, seed=42))
        == prints[0]
    )


def test_second_call_reuses_without_reading_the_archive(tmp_path: Path, small_archive: Path):
    # Given a completed run
    root = tmp_path / "processed"
    first = _run(small_archive, root)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}

    # When run again with the same inputs, even with the archive gone from its path
    messages: list[str] = []
    second = tokenize_archive(tmp_path / "gone.tar.gz", SHA, root, PARAMS, progress=messages.append)

    # Then the existing folder is returned untouched
    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in second.path.iterdir()} == stamps
    assert _leftovers(root) == [first.fingerprint]
    assert any("reusing" in m for m in messages)


def test_other_parameters_get_their_own_folder(tmp_path: Path, small_archive: Path) -> None:
    # Given a completed run
    root = tmp_path / "processed"
    first = _run(small_archive, root)

    # When run with another seed and another source digest
    second = _run(
        small_archive, root, TokenizeParams(vocab_size=1000, validation_fraction=0.1, seed=7)
    )
    third = _run(small_archive, root, sha="cd" * 32)

    # Then each has its own complete folder and the first is still intact
    assert len({first.path, second.path, third.path}) == 3
    assert _leftovers(root) == sorted(d.fingerprint for d in (first, second, third))
    assert all(load_processed(d.path) is not None for d in (first, second, third))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated-parquet": lambda d: _truncate(d / "train.parquet"),
    "flipped-byte-in-vocab": lambda d: _flip_byte(d / "vocab.txt"),
    "deleted-split": lambda d: (d / "test.parquet").unlink(),
    "deleted-manifest": lambda d: (d / MANIFEST).unlink(),
    "garbled-manifest": lambda d: (d / MANIFEST).write_text("{not json"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_output_is_detected_and_rebuilt(
    tmp_path: Path, small_archive: Path, damage: str
) -> None:
    # Given a completed run whose folder is then damaged
    root = tmp_path / "processed"
    first = _run(small_archive, root)
    expected = _tables(first)
    DAMAGE[damage](first.path)

    # When it is loaded / Then it is not accepted
    assert load_processed(first.path) is None

    # When tokenised again
    again = _run(small_archive, root)

    # Then the same folder is complete and identical to the original, with nothing left over
    assert again.path == first.path
    assert load_processed(again.path) == again
    assert all(t.equals(expected[s]) for s, t in _tables(again).items())
    assert _leftovers(root) == [first.fingerprint]


def test_load_processed_of_missing_folder(tmp_path: Path) -> None:
    # Given no folder / When loaded / Then there is nothing
    assert load_processed(tmp_path / "nothing") is None


# --- errors --------------------------------------------------------------------------------------


def _expect_failure(archive: Path, root: Path, match: str, params: TokenizeParams = PARAMS):
    """tokenize_archive fails with `match` in the message and leaves nothing in `root`."""
    with pytest.raises(DataError, match=match) as info:
        _run(archive, root, params)
    assert _leftovers(root) == []
    return str(info.value)


def test_truncated_archive(tmp_path: Path, small_archive: Path) -> None:
    # Given the archive cut in half
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(small_archive.read_bytes()[: small_archive.stat().st_size // 2])

    # When / then tokenising names the problem and the file, and writes nothing
    message = _expect_failure(archive, tmp_path / "processed", "truncated")
    assert str(archive) in message


def test_corrupt_archive(tmp_path: Path, small_archive: Path) -> None:
    # Given the archive with garbage in the middle
    data = bytearray(small_archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = b"\x00" * 16
    archive = tmp_path / "corrupt.tar.gz"
    archive.write_bytes(bytes(data))

    # When / then it fails clearly and writes nothing
    _expect_failure(archive, tmp_path / "processed", "corrupt")


def test_file_that_is_not_an_archive(tmp_path: Path) -> None:
    # Given an HTML page saved under the archive's name
    archive = tmp_path / "aclImdb_v1.tar.gz"
    archive.write_text("<html>not found</html>")

    # When / then it fails clearly and writes nothing
    _expect_failure(archive, tmp_path / "processed", "not a gzip-compressed file")


@pytest.mark.parametrize(
    "folder", ["aclImdb/test/neg", "aclImdb/train/pos"], ids=["test-neg", "train-pos"]
)
def test_archive_missing_a_labelled_folder(tmp_path: Path, folder: str) -> None:
    # Given an archive without one labelled folder
    archive = build_archive(tmp_path / "partial.tar.gz", skip=[folder])

    # When / then the message names the missing folder
    _expect_failure(archive, tmp_path / "processed", re.escape(f"{folder}/"))


def test_archive_missing_a_urls_file(tmp_path: Path) -> None:
    # Given an archive without the train urls that map reviews to movies
    archive = build_archive(tmp_path / "nourls.tar.gz", skip=["aclImdb/train/urls_pos.txt"])

    # When / then the message names the missing file
    _expect_failure(archive, tmp_path / "processed", "urls_pos.txt")


def test_train_review_without_movie_url(tmp_path: Path) -> None:
    # Given a training review past the end of its urls file
    extra = {"aclImdb/train/neg/40_2.txt": b"a review nobody listed"}
    archive = build_archive(tmp_path / "unlisted.tar.gz", extra=extra)

    # When / then the message names the review that has no movie
    _expect_failure(archive, tmp_path / "processed", "no movie url for aclImdb/train/neg/40_")


def test_empty_validation_split(tmp_path: Path) -> None:
    # Given one training review per label, each its own movie
    archive = build_archive(tmp_path / "tiny.tar.gz", per_folder=1)

    # When / then 10% of two reviews cannot hold a whole movie: validation would be empty
    _expect_failure(archive, tmp_path / "processed", "split validation would be empty")


def test_empty_train_split(tmp_path: Path) -> None:
    # Given training reviews that all belong to one movie
    extra = {"aclImdb/train/urls_neg.txt": (_url(1000) + "\n").encode()}
    archive = build_archive(tmp_path / "onemovie.tar.gz", per_folder=1, extra=extra)

    # When / then a large validation fraction takes that movie: train would be empty (the config
    # refuses fractions of 0.5 or more; the writer still refuses an empty split if handed one)
    params = TokenizeParams.model_construct(vocab_size=100, validation_fraction=0.9, seed=0)
    _expect_failure(archive, tmp_path / "processed", "split train would be empty", params)


@pytest.mark.parametrize(
    "fields",
    [{"vocab_size": 2}, {"vocab_size": 0}, {"validation_fraction": 0.0}, {"seed": -1}],
    ids=["vocab-2", "vocab-0", "fraction-0", "seed-negative"],
)
def test_invalid_parameters_are_refused_with_the_config_rules(fields: dict) -> None:
    # Given parameters that cannot make a dataset
    # When / then they are refused as the config refuses them, naming the field
    (name,) = fields
    with pytest.raises(ValidationError, match=name):
        TokenizeParams(**fields)
    with pytest.raises(ConfigError, match=name):
        load_config(**fields)


def test_params_are_built_from_the_config() -> None:
    # Given a config / When its parameters are taken / Then they are its tokenize fields
    config = PipelineConfig(vocab_size=123, validation_fraction=0.2, seed=5, epochs=9)
    params = TokenizeParams.from_config(config)
    assert params.model_dump() == {"vocab_size": 123, "validation_fraction": 0.2, "seed": 5}
    assert TokenizeParams() == TokenizeParams.from_config(PipelineConfig())


def test_failure_while_writing_leaves_no_partial_folder(
    tmp_path: Path, small_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a disk that fills up while the last split is written
    real_write = pq.write_table

    def write_table(table, where, **kwargs):
        if str(where).endswith("test.parquet"):
            raise OSError(28, "No space left on device")
        return real_write(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    root = tmp_path / "processed"

    # When tokenising
    with pytest.raises(OSError, match="No space left"):
        _run(small_archive, root)

    # Then neither the output folder nor its temporary sibling remains
    assert _leftovers(root) == []


def test_shards_tokenised_elsewhere_give_the_same_files(
    tmp_path: Path, small_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the small archive tokenised the default way (one chunk of 160 reviews)
    expected = _run(small_archive, tmp_path / "default")

    # When its shards of 24 reviews go through `submit`, each result pickled as if it came
    # from another process
    monkeypatch.setattr(tokenize, "SHARD", 24)
    shards: list[int] = []

    def submit(bodies: list[bytes]) -> Future:
        shards.append(len(bodies))
        future: Future = Future()
        future.set_result(pickle.loads(pickle.dumps(decode_chunk(bodies))))
        return future

    root = tmp_path / "sharded"
    data = tokenize_archive(small_archive, SHA, root, PARAMS, progress=_quiet, submit=submit)

    # Then every review went through a shard, and every file is byte for byte the same
    assert shards == [24] * 7 + [12]  # 160 labelled + 20 unlabelled reviews
    assert data.fingerprint == expected.fingerprint
    for name in ["vocab.txt", *(f"{s}.parquet" for s in SPLITS)]:
        assert file_sha256(data.path / name) == file_sha256(expected.path / name), name


# --- validation assignment ---------------------------------------------------------------------


def _movie_ids(seed: int, movies: int = 200) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = [f"tt{m:07d}" for m in range(movies) for _ in range(rng.integers(1, 12))]
    rng.shuffle(ids)
    return ids


def test_assign_validation_takes_whole_movies_near_fraction() -> None:
    # Given reviews of movies with 1..11 reviews each, in no particular order
    movie_ids = _movie_ids(0)

    for fraction in (0.05, 0.1, 0.3):
        # When a validation share is assigned
        mask = assign_validation(movie_ids, fraction, seed=1)

        # Then each movie is entirely in or entirely out
        chosen = {m for m, v in zip(movie_ids, mask, strict=True) if v}
        assert all(v == (m in chosen) for m, v in zip(movie_ids, mask, strict=True))
        # and the share is within one movie's worth of the target
        assert abs(mask.mean() - fraction) <= 11 / len(movie_ids)


def test_assign_validation_is_deterministic_by_seed() -> None:
    # Given the same reviews
    movie_ids = _movie_ids(1)

    # When assigned twice with one seed, and with several others
    first = assign_validation(movie_ids, 0.1, seed=42)
    again = assign_validation(movie_ids, 0.1, seed=42)
    others = {tuple(assign_validation(movie_ids, 0.1, seed=s)) for s in range(5)}

    # Then the same seed gives the same mask, and the seed does change the choice
    assert np.array_equal(first, again)
    assert len(others) > 1


def test_assign_validation_does_not_depend_on_review_order() -> None:
    # Given the same reviews in two orders
    movie_ids = _movie_ids(2)
    shuffled = list(reversed(movie_ids))

    # When assigned with one seed
    a = assign_validation(movie_ids, 0.2, seed=3)
    b = assign_validation(shuffled, 0.2, seed=3)

    # Then the same movies are chosen
    chosen_a = {m for m, v in zip(movie_ids, a, strict=True) if v}
    chosen_b = {m for m, v in zip(shuffled, b, strict=True) if v}
    assert chosen_a == chosen_b


def test_unlabelled_reviews_form_their_own_split_with_the_training_vocabulary(
    built: ProcessedData,
) -> None:
    # Given the small archive's 20 unlabelled reviews, tokenised
    unsup = _tables(built)["unsup"]

    # Then they are a split of their own: no label, no rating, ids from the same vocabulary
    assert len(unsup) == built.counts["unsup"]["rows"] == 20
    assert unsup["label"].null_count == unsup["rating"].null_count == 20
    assert set(unsup["split"].to_pylist()) == {"unsup"}
    vocabulary = _vocabulary(built)
    assert max(max(ids, default=0) for ids in unsup["token_ids"].to_pylist()) < len(vocabulary)


def test_an_archive_without_unlabelled_reviews_still_prepares_and_says_so(
    tmp_path: Path,
) -> None:
    # Given an older or trimmed archive with no train/unsup folder
    archive = build_archive(tmp_path / "trimmed.tar.gz", unsup=0)

    # When it is tokenised
    warnings: list[str] = []
    data = tokenize_archive(archive, SHA, tmp_path / "p", PARAMS, _quiet, warn=warnings.append)

    # Then the unlabelled split is empty, and a warning names what is missing
    assert data.counts["unsup"]["rows"] == 0
    assert pq.read_table(data.split_path("unsup")).num_rows == 0
    assert len(warnings) == 1 and "aclImdb/train/unsup/" in warnings[0]
    assert data.counts["train"]["rows"] > 0


# --- accepted incoming reviews: new data versions ------------------------------------------------


def _accepted(root: Path, sha: str, rows: list[dict]):
    """An accepted incoming file (as the ingest stage writes it) holding `rows`."""
    from tasks.data.accepted import write_accepted
    from tasks.ingest.validate import ACCEPTED_SCHEMA, text_keys

    texts = [r["text"] for r in rows]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "text": texts,
            "label": [r["label"] for r in rows],
            "movie": [r.get("movie") for r in rows],
            "rating": [r.get("rating") for r in rows],
            "text_key": text_keys(texts),
            "line": list(range(1, len(rows) + 1)),
        },
        schema=ACCEPTED_SCHEMA,
    )
    return write_accepted(root, sha, f"{sha[:4]}.jsonl", table)


def _new_rows(prefix: str, n: int, movie: Callable[[int], str | None]) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "text": f"zebra{prefix} quagga {'superb' if i % 2 else 'dreadful'} review number {i}",
            "label": i % 2,
            "movie": movie(i),
            "rating": 9 if i % 2 else None,
        }
        for i in range(n)
    ]


def test_accepted_rows_make_a_new_version_that_keeps_every_archive_row_in_its_split(
    tmp_path: Path, small_archive: Path, built: ProcessedData
) -> None:
    # Given an accepted file: reviews of an archive movie, and reviews of new movies
    train_movies = pq.read_table(built.split_path("train"), columns=["movie_id"])
    val_movies = pq.read_table(built.split_path("validation"), columns=["movie_id"])
    in_train = train_movies.column("movie_id")[0].as_py()
    in_val = val_movies.column("movie_id")[0].as_py()
    rows = _new_rows("a", 4, lambda i: in_train if i < 2 else in_val)
    rows += _new_rows("n", 60, lambda i: f"tt9{i:06d}")
    accepted = _accepted(tmp_path / "accepted", "1f" * 32, rows)

    # When the archive is tokenised with it
    data = tokenize_archive(small_archive, SHA, tmp_path / "p", PARAMS, _quiet, incoming=[accepted])

    # Then it is another data version, which records the file
    assert data.fingerprint != built.fingerprint
    assert data.fingerprint == fingerprint(SHA, PARAMS, [accepted.sha256])
    assert data.incoming == (accepted.sha256,) == load_processed(data.path).incoming
    # And every archive row kept its split; the new rows are training or validation rows
    old, new = _tables(built), _tables(data)
    for split in SPLITS:
        ids = set(old[split].column("review_id").to_pylist())
        assert ids <= set(new[split].column("review_id").to_pylist())
    same = ["review_id", "label", "text"]  # token ids follow the version's vocabulary
    assert new["test"].select(same).equals(old["test"].select(same))
    added = {
        r["review_id"]: r
        for s in ("train", "validation")
        for r in new[s].to_pylist()
        if r["review_id"].startswith("incoming/")
    }
    assert len(added) == 64
    # And a review of an archive movie joins that movie's side; new movies split by the fraction
    prefix = f"incoming/{accepted.sha256[:12]}/"
    assert added[prefix + "a0"]["split"] == added[prefix + "a1"]["split"] == "train"
    assert added[prefix + "a2"]["split"] == added[prefix + "a3"]["split"] == "validation"
    new_val = sum(added[f"{prefix}n{i}"]["split"] == "validation" for i in range(60))
    assert 1 <= new_val <= 15
    # And labels, ratings (absent = null), text and token ids are those of the rows
    row = added[prefix + "n1"]
    assert (row["label"], row["rating"], row["movie_id"]) == (1, 9, "tt9000001")
    assert added[prefix + "n0"]["rating"] is None
    assert row["text"] == rows[5]["text"]
    vocabulary = _vocabulary(data)
    encoded = text.encode(text.tokenize(pa.array([row["text"]])), vocabulary)
    assert row["token_ids"] == encoded[0].as_py()
    # And the vocabulary is rebuilt from the version's training rows: new words are in it
    assert "quagga" in vocabulary and "quagga" not in _vocabulary(built)


def test_a_row_keeps_its_split_in_every_later_version(tmp_path: Path, small_archive: Path) -> None:
    # Given a version with one accepted file, and a later one with a second file
    first = _accepted(tmp_path / "accepted", "2a" * 32, _new_rows("x", 40, lambda i: None))
    second = _accepted(tmp_path / "accepted", "3b" * 32, _new_rows("y", 40, lambda i: None))
    v1 = tokenize_archive(small_archive, SHA, tmp_path / "p", PARAMS, _quiet, incoming=[first])
    v2 = tokenize_archive(
        small_archive, SHA, tmp_path / "p", PARAMS, _quiet, incoming=[first, second]
    )

    # Then the rows of the first file are in the same split in both
    def splits(data: ProcessedData) -> dict[str, str]:
        return {
            r: s
            for s in ("train", "validation")
            for r in pq.read_table(data.split_path(s)).column("review_id").to_pylist()
        }

    a, b = splits(v1), splits(v2)
    assert {r: a[r] for r in a if "/x" in r} == {r: b[r] for r in a if "/x" in r}
    assert v1.fingerprint != v2.fingerprint and v2.incoming == tuple(
        sorted([first.sha256, second.sha256])
    )


def test_stable_validation_follows_archive_movies_and_a_fixed_hash() -> None:
    from tasks.data.reviews import stable_validation

    # Given reviews of an archive movie on each side, and of many new movies
    archive = {"tt1": "train", "tt2": "validation"}
    ids = [f"r{i}" for i in range(2000)]
    movies = ["tt1", "tt2", None, None] + [f"tt9{i // 2}" for i in range(1996)]

    # When split twice, the second time in another order and with other reviews around them
    first = stable_validation(ids, movies, archive, 0.1)
    again = stable_validation(ids[::-1], movies[::-1], archive, 0.1)[::-1]
    alone = stable_validation(ids[4:5], movies[4:5], archive, 0.1)

    # Then archive movies keep their side, each review always gets the same answer, two
    # reviews of one new movie land together, and about the fraction goes to validation
    assert first[:2] == ["train", "validation"]
    assert first == again and alone == first[4:5]
    assert all(first[i] == first[i + 1] for i in range(4, 2000, 2))
    assert 150 <= first.count("validation") <= 250
