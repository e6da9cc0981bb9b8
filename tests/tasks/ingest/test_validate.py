"""Tests of the row checks of incoming reviews: keys, labels, reasons and their order."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data.review_files import READ_SCHEMA
from tasks.ingest import validate as v
from tasks.ingest.validate import ACCEPTED_SCHEMA, split_keys, text_keys, validate_rows

SHA = "ab" * 32


def raw_table(*rows: dict) -> pa.Table:
    """A read_incoming-like table; each row's line defaults to its position + 1."""
    cols = {name: [] for name in READ_SCHEMA.names}
    for i, row in enumerate(rows):
        cols["line"].append(row.get("line", i + 1))
        for name in READ_SCHEMA.names[1:]:
            cols[name].append(row.get(name))
    return pa.table(cols, schema=READ_SCHEMA)


def check(table: pa.Table, **kwargs) -> v.Validated:
    settings = {
        "known_ids": set(),
        "known_keys": set(),
        "leak_keys": frozenset(),
        "max_chars": 1000,
        **kwargs,
    }
    return validate_rows(table, SHA, **settings)


def reasons_by_line(result: v.Validated) -> dict[int, str]:
    return {r["line"]: r["reason"] for r in result.rejected}


# --- keys ---------------------------------------------------------------------------------------


def test_texts_differing_only_in_case_spacing_and_tags_share_a_key() -> None:
    keys = text_keys(
        [
            "A great film!<br /><br />Loved it.",
            "a   GREAT film ! loved it",
            "\tA great <i>film</i>!\nLoved   it.  ",
            "A great film! Hated it.",
        ]
    )
    assert len(keys[0]) == 32 and all(c in "0123456789abcdef" for c in keys[0])
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]


def test_split_keys_are_the_keys_of_a_split_texts(tmp_path: Path) -> None:
    # Given a tokenised split with a text column (other columns ignored)
    path = tmp_path / "test.parquet"
    pq.write_table(
        pa.table({"review_id": ["a", "b"], "text": ["Good film", "Bad <br />film"]}), path
    )

    # When / then its keys are those of its texts, whatever their case or tags
    assert split_keys(path) == frozenset(text_keys(["good FILM", "bad film"]))


# --- labels, ids, ratings, movies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("pos", 1),
        ("POSITIVE", 1),
        (" Positive ", 1),
        ("1", 1),
        ("neg", 0),
        ("Negative", 0),
        ("NEG", 0),
        ("0", 0),
    ],
)
def test_every_label_spelling_is_accepted(raw: str, label: int) -> None:
    result = check(raw_table({"text": "some review", "label": raw}))
    assert result.rejected == []
    assert result.accepted.column("label").to_pylist() == [label]


@pytest.mark.parametrize("raw", ["maybe", "2", "", "-1", "true", None])
def test_other_labels_are_unknown(raw: str | None) -> None:
    result = check(raw_table({"text": "some review", "label": raw, "line": 4}))
    assert result.accepted.num_rows == 0
    [row] = result.rejected
    assert row["reason"] == v.UNKNOWN_LABEL == "unknown_label"
    assert "pos/neg/positive/negative/1/0" in row["detail"]


def test_rejected_row_has_line_id_reason_detail_and_text_excerpt() -> None:
    long_text = "word " * 100
    result = check(raw_table({"id": " r9 ", "text": long_text, "label": "maybe", "line": 12}))
    assert result.rejected == [
        {
            "line": 12,
            "id": "r9",
            "reason": "unknown_label",
            "detail": "label 'maybe' is not one of pos/neg/positive/negative/1/0",
            "text": long_text[:200],
        }
    ]


def test_rows_without_id_get_one_from_the_file_checksum_and_line() -> None:
    result = check(
        raw_table(
            {"id": "given", "text": "first review", "label": "pos", "line": 2},
            {"text": "second review", "label": "neg", "line": 5},
            {"id": "  ", "text": "third review", "label": "neg", "line": 9},
        )
    )
    assert result.accepted.column("id").to_pylist() == [
        "given",
        f"{SHA[:12]}-5",
        f"{SHA[:12]}-9",
    ]


def test_ratings_are_whole_numbers_from_1_to_10() -> None:
    result = check(
        raw_table(
            {"text": "r one", "label": "pos", "rating": "10"},
            {"text": "r two", "label": "pos", "rating": "7.0"},
            {"text": "r three", "label": "pos", "rating": ""},
            {"text": "r four", "label": "pos", "rating": "11"},
            {"text": "r five", "label": "pos", "rating": "seven"},
            {"text": "r six", "label": "pos", "rating": "0"},
            {"text": "r seven", "label": "pos", "rating": "2.5"},
        )
    )
    assert result.accepted.column("rating").to_pylist() == [10, 7, None]
    assert reasons_by_line(result) == {
        4: "bad_rating",
        5: "bad_rating",
        6: "bad_rating",
        7: "bad_rating",
    }
    assert result.rejected[0]["detail"] == "rating '11' is not a whole number from 1 to 10"


def test_movie_is_kept_and_an_imdb_title_id_extracted() -> None:
    result = check(
        raw_table(
            {"text": "r one", "label": "pos", "movie": "http://www.imdb.com/title/tt0111161/"},
            {"text": "r two", "label": "pos", "movie": " Some Film (1999) "},
            {"text": "r three", "label": "pos", "movie": ""},
        )
    )
    assert result.accepted.column("movie").to_pylist() == ["tt0111161", "Some Film (1999)", None]


# --- the checks and their order -----------------------------------------------------------------


def test_each_check_rejects_with_its_reason() -> None:
    # Given one good row, then one row failing each check
    leak = "This review is in the test split."
    known = "Already in the training data."
    table = raw_table(
        {"id": "ok", "text": "A <b>fine</b> film.", "label": "pos"},
        {"text": "   ", "label": "pos"},
        {"text": None, "label": "pos"},
        {"text": "<br /><br />", "label": "pos"},
        {"text": "x" * 1001, "label": "pos"},
        {"text": "another film", "label": "meh"},
        {"text": "a film again", "label": "neg", "rating": "99"},
        {"text": leak.upper(), "label": "neg"},
        {"id": "seen-before", "text": "a new text", "label": "neg"},
        {"id": "ok", "text": "yet another", "label": "neg"},
        {"text": "a   fine FILM", "label": "neg"},
        {"text": known, "label": "neg"},
    )

    # When it is validated against known ids, known keys and leak keys
    result = check(
        table,
        known_ids={"seen-before"},
        known_keys=set(text_keys([known])),
        leak_keys=frozenset(text_keys([leak])),
    )

    # Then only the first row is accepted, each other row rejected for its own reason
    assert result.accepted.column("id").to_pylist() == ["ok"]
    assert reasons_by_line(result) == {
        2: v.EMPTY,
        3: v.EMPTY,
        4: v.EMPTY,
        5: v.TOO_LONG,
        6: v.UNKNOWN_LABEL,
        7: v.BAD_RATING,
        8: v.TEST_LEAK,
        9: v.DUPLICATE_ID,
        10: v.DUPLICATE_ID,
        11: v.DUPLICATE_TEXT,
        12: v.DUPLICATE_TEXT,
    }
    details = {r["line"]: r["detail"] for r in result.rejected}
    assert details[5] == "text has 1,001 characters, more than the limit of 1,000"
    assert details[10] == "id 'ok' repeats line 1"
    assert details[11] == "text repeats line 1"
    assert details[12] == "text is that of a review already in the data"
    assert result.rejected[1]["text"] is None
    assert result.reasons == {
        "empty_text": 3,
        "too_long": 1,
        "unknown_label": 1,
        "bad_rating": 1,
        "test_leak": 1,
        "duplicate_id": 2,
        "duplicate_text": 2,
    }


def test_first_failing_check_wins() -> None:
    leak = "leaked review text"
    result = check(
        raw_table(
            {"text": "", "label": "maybe"},  # empty before unknown label
            {"text": "y" * 2000, "label": "maybe"},  # too long before unknown label
            {"text": leak, "label": "maybe"},  # unknown label before test leak
            {"text": leak, "label": "pos", "id": "dup"},  # test leak before duplicate id
            {"text": "fine", "label": "pos", "id": "dup"},
            {"text": "FINE", "label": "pos", "id": "dup"},  # duplicate id before duplicate text
        ),
        leak_keys=frozenset(text_keys([leak])),
    )
    assert reasons_by_line(result) == {
        1: "empty_text",
        2: "too_long",
        3: "unknown_label",
        4: "test_leak",
        6: "duplicate_id",
    }


def test_a_rejected_row_does_not_make_a_later_one_a_duplicate() -> None:
    # Given a row rejected for its label, then the same text and id with a good label
    result = check(
        raw_table(
            {"id": "a", "text": "Same text", "label": "maybe"},
            {"id": "a", "text": "same TEXT", "label": "pos"},
        )
    )
    # Then the second row is accepted
    assert reasons_by_line(result) == {1: "unknown_label"}
    assert result.accepted.column("line").to_pylist() == [2]


def test_accepted_table_schema_and_values() -> None:
    result = check(
        raw_table(
            {"id": "r1", "text": "Good<br />film", "label": "pos", "rating": "9", "line": 3},
            {"text": "Bad film", "label": "negative", "movie": "tt0000042", "line": 4},
        )
    )
    assert result.accepted.schema == ACCEPTED_SCHEMA
    assert result.accepted.to_pylist() == [
        {
            "id": "r1",
            "text": "Good<br />film",
            "label": 1,
            "movie": None,
            "rating": 9,
            "text_key": text_keys(["good film"])[0],
            "line": 3,
        },
        {
            "id": f"{SHA[:12]}-4",
            "text": "Bad film",
            "label": 0,
            "movie": "tt0000042",
            "rating": None,
            "text_key": text_keys(["bad film"])[0],
            "line": 4,
        },
    ]


def test_empty_table_gives_empty_results() -> None:
    result = check(raw_table())
    assert result.accepted.num_rows == 0 and result.accepted.schema == ACCEPTED_SCHEMA
    assert result.rejected == [] and result.reasons == {}


def test_25000_rows_validate_in_a_few_seconds() -> None:
    # Given 25,000 reviews of about 1,300 characters, every tenth one a duplicate
    words = ["great", "awful", "film", "plot", "actor", "scene", "<br />", "story", "it", "was"]
    texts = [
        " ".join(words[(i * 7 + j * (i % 13 + 1)) % len(words)] for j in range(250)) + f" r{i}"
        for i in range(25_000)
    ]
    for i in range(0, 25_000, 10):
        texts[i] = texts[i + 1].upper()
    table = raw_table(
        *({"text": t, "label": "pos" if i % 2 else "neg"} for i, t in enumerate(texts))
    )

    # When it is validated
    start = time.perf_counter()
    result = check(table, max_chars=100_000)
    elapsed = time.perf_counter() - start

    # Then it takes seconds, and exactly the duplicates are rejected
    assert elapsed < 8, f"validation took {elapsed:.1f}s"
    assert result.reasons == {"duplicate_text": 2_500}
    assert result.accepted.num_rows == 22_500
