"""Row checks of incoming labelled reviews: which rows are accepted, which rejected and why.

Each row of a file (as `review_files.read_reviews` gives it, STRICT) goes through these checks
in this order; the first that fails is the row's one reason, and the row is rejected:

1. `empty_text`      the text is missing, blank, or has no words once HTML tags and
                     punctuation are removed;
2. `too_long`        the text has more than `max_chars` characters (`max_review_chars`);
3. `unknown_label`   the label is not one of pos/positive/1 (-> 1) or neg/negative/0 (-> 0),
                     compared case-insensitively, surrounding blanks ignored;
4. `bad_rating`      a rating is given but is not a whole number from 1 to 10;
5. `test_leak`       the normalised text is that of a review of the archive's test split (it
                     would leak the test set into training);
6. `duplicate_id`    the id (when given) was already ingested, or an earlier accepted row of
                     the same file has it;
7. `duplicate_text`  the normalised text is that of a known review (the archive's labelled
                     training reviews, every row accepted so far) or of an earlier accepted
                     row of the same file.

The normalised text is the tokenizer's tokens (`tasks.data.text`: lower-cased, HTML tags
removed, punctuation split off) joined by single spaces: texts that differ only in case,
spacing, punctuation spacing or tags such as `<br />` are the same review. Its key
(`text_keys`) is the first 32 hex digits of its sha256.

Accepted rows get the id `<first 12 hex digits of the file's sha256>-<line>` when they have
none; a movie holding an IMDb title id (tt0111161, or a URL with one) is stored as that id, so
that it matches the archive's movies. Only accepted rows count as "earlier in the file".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.data import text
from tasks.data.accepted import ACCEPTED_SCHEMA
from tasks.data.processed import ProcessedData

EMPTY = "empty_text"
TOO_LONG = "too_long"
UNKNOWN_LABEL = "unknown_label"
BAD_RATING = "bad_rating"
TEST_LEAK = "test_leak"
DUPLICATE_ID = "duplicate_id"
DUPLICATE_TEXT = "duplicate_text"
UNREADABLE = "unreadable"  # a whole file that cannot be parsed (see review_files.ReviewFileError)
REASONS = (EMPTY, TOO_LONG, UNKNOWN_LABEL, BAD_RATING, TEST_LEAK, DUPLICATE_ID, DUPLICATE_TEXT)

LABELS: dict[str, int] = {"pos": 1, "positive": 1, "1": 1, "neg": 0, "negative": 0, "0": 0}
_LABEL_CHOICES = "pos/neg/positive/negative/1/0"
TEXT_EXCERPT = 200  # characters of a rejected row's text kept in the quarantine file
_MOVIE = re.compile(r"tt\d+")


@dataclass(frozen=True)
class Validated:
    """A file's rows split in two: accepted (ACCEPTED_SCHEMA) and rejected (one dict per row:
    line, id, reason, detail, text excerpt), both in file order."""

    accepted: pa.Table
    rejected: list[dict]

    @property
    def reasons(self) -> dict[str, int]:
        """How many rows were rejected for each reason (in the order of the checks)."""
        counts = {r: 0 for r in REASONS}
        for row in self.rejected:
            counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        return {r: n for r, n in counts.items() if n}


def _normalised(texts: pa.Array | Sequence[str]) -> tuple[list[str], list[int]]:
    """The normalised text of each text (tokens joined by a space) and its number of tokens."""
    arr = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    tokens = text.tokenize(arr.fill_null(""))
    joined = pc.binary_join(tokens, " ").to_pylist()
    return joined, pc.list_value_length(tokens).to_pylist()


def _key(normalised: str) -> str:
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:32]


def text_keys(texts: pa.Array | Sequence[str]) -> list[str]:
    """The normalised-text key of each text (see the module docstring)."""
    return [_key(t) for t in _normalised(texts)[0]]


def split_keys(split_parquet: Path) -> frozenset[str]:
    """The keys of every `text` of a tokenised split (e.g. the archive's test.parquet)."""
    return frozenset(text_keys(pq.read_table(split_parquet, columns=["text"]).column("text")))


def _strip(value: str | None) -> str | None:
    """`value` without surrounding blanks; None for a missing or blank value."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _rating(raw: str) -> int | None:
    """The rating as an int 1..10, None if it is not one ("9" and "9.0" are 9)."""
    try:
        number = float(raw)
    except ValueError:
        return None
    return int(number) if number.is_integer() and 1 <= number <= 10 else None


def _movie(raw: str | None) -> str | None:
    value = _strip(raw)
    if value is None:
        return None
    match = _MOVIE.search(value)
    return match.group(0) if match else value


def validate_rows(
    table: pa.Table,
    source_sha256: str,
    *,
    known_ids: set[str] | frozenset[str],
    known_keys: set[str] | frozenset[str],
    leak_keys: frozenset[str],
    max_chars: int,
) -> Validated:
    """Check each row of `table` (review_files.READ_SCHEMA) in order (see the module docstring);
    `known_ids`/`known_keys` are those already in the data, `leak_keys` the test split's."""
    texts = table.column("text").combine_chunks()
    normalised, token_counts = _normalised(texts)
    lengths = pc.utf8_length(texts.fill_null("")).to_pylist()
    text_values = texts.to_pylist()
    lines = table.column("line").to_pylist()
    ids = table.column("id").to_pylist()
    labels = table.column("label").to_pylist()
    movies = table.column("movie").to_pylist()
    ratings = table.column("rating").to_pylist()

    seen_ids: dict[str, int] = {}  # id -> line of the accepted row that has it
    seen_keys: dict[str, int] = {}  # key -> line
    keep: list[int] = []
    out_ids: list[str] = []
    out_labels: list[int] = []
    out_ratings: list[int | None] = []
    out_keys: list[str] = []
    rejected: list[dict] = []
    prefix = source_sha256[:12]

    for i, line in enumerate(lines):
        body = text_values[i]
        given_id = _strip(ids[i])
        key = _key(normalised[i])
        label_raw = labels[i]
        label = LABELS.get(label_raw.strip().lower()) if label_raw is not None else None
        rating_raw = _strip(ratings[i])
        rating = _rating(rating_raw) if rating_raw is not None else None
        reason = detail = None
        if body is None or not body.strip():
            reason, detail = EMPTY, "text is missing" if body is None else "text is blank"
        elif token_counts[i] == 0:
            reason, detail = EMPTY, "text has no words (only markup or punctuation)"
        elif lengths[i] > max_chars:
            reason = TOO_LONG
            detail = f"text has {lengths[i]:,} characters, more than the limit of {max_chars:,}"
        elif label is None:
            reason = UNKNOWN_LABEL
            detail = (
                f"label is missing (use one of {_LABEL_CHOICES})"
                if label_raw is None
                else f"label {label_raw!r} is not one of {_LABEL_CHOICES}"
            )
        elif rating_raw is not None and rating is None:
            reason, detail = BAD_RATING, f"rating {rating_raw!r} is not a whole number from 1 to 10"
        elif key in leak_keys:
            reason, detail = TEST_LEAK, "text is that of a review of the test split"
        elif given_id is not None and (given_id in known_ids or given_id in seen_ids):
            reason = DUPLICATE_ID
            detail = (
                f"id {given_id!r} is already in the data"
                if given_id in known_ids
                else f"id {given_id!r} repeats line {seen_ids[given_id]}"
            )
        elif key in known_keys or key in seen_keys:
            reason = DUPLICATE_TEXT
            detail = (
                "text is that of a review already in the data"
                if key in known_keys
                else f"text repeats line {seen_keys[key]}"
            )
        if reason is not None:
            excerpt = body[:TEXT_EXCERPT] if body is not None else None
            rejected.append(
                {"line": line, "id": given_id, "reason": reason, "detail": detail, "text": excerpt}
            )
            continue
        row_id = given_id if given_id is not None else f"{prefix}-{line}"
        seen_ids[row_id] = line
        seen_keys[key] = line
        keep.append(i)
        out_ids.append(row_id)
        out_labels.append(label)  # type: ignore[arg-type]  # not None: checked above
        out_ratings.append(rating)
        out_keys.append(key)

    take = pa.array(keep, pa.int64())
    accepted = pa.table(
        {
            "id": pa.array(out_ids, pa.string()),
            "text": texts.take(take),
            "label": pa.array(out_labels, pa.int8()),
            "movie": pa.array([_movie(movies[i]) for i in keep], pa.string()),
            "rating": pa.array(out_ratings, pa.int8()),
            "text_key": pa.array(out_keys, pa.string()),
            "line": pa.array([lines[i] for i in keep], pa.int64()),
        },
        schema=ACCEPTED_SCHEMA,
    )
    return Validated(accepted, rejected)


def reference_keys(data: ProcessedData) -> tuple[frozenset[str], frozenset[str]]:
    """(test keys, labelled training keys) of a tokenised archive: what incoming rows must not
    leak, and what they must not duplicate."""
    known = split_keys(data.split_path("train")) | split_keys(data.split_path("validation"))
    return split_keys(data.split_path("test")), known
