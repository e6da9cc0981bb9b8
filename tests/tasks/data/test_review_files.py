"""Tests of the one reader of review files: STRICT (incoming labelled files) and LENIENT
(scoring), each on .txt, .jsonl, .csv and .parquet, and of unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data.review_files import LENIENT, STRICT, ReviewFileError, read_reviews

COLUMNS = ["line", "id", "text", "label", "movie", "rating"]


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def test_supported_formats() -> None:
    assert STRICT.suffixes == (".jsonl", ".csv", ".parquet")
    assert LENIENT.suffixes == (".txt", ".jsonl", ".ndjson", ".csv", ".parquet")


# --- STRICT: JSONL --------------------------------------------------------------------------------


def test_jsonl_rows_keep_their_line_numbers_and_raw_values(tmp_path: Path) -> None:
    # Given JSON lines with and without ids, labels as text and numbers, a blank line between,
    # an extra field and a text with an unescaped line separator (U+2028)
    path = tmp_path / "reviews.jsonl"
    lines = [
        json.dumps({"id": "r1", "text": "Great film", "label": "pos", "rating": 9, "x": 1}),
        "",
        "   ",
        json.dumps({"text": "Awful\u2028plot", "label": 0, "movie": "tt0111161"}),
        json.dumps({"id": 7, "text": "ok", "label": "Negative", "rating": None}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # When it is read
    table = read_reviews(path, STRICT)

    # Then every object is a row, on its own line, its values as text, missing ones null
    assert table.column_names == COLUMNS
    assert table.schema.field("line").type == pa.int64()
    assert rows(table) == [
        {"line": 1, "id": "r1", "text": "Great film", "label": "pos", "movie": None, "rating": "9"},
        {
            "line": 4,
            "id": None,
            "text": "Awful\u2028plot",
            "label": "0",
            "movie": "tt0111161",
            "rating": None,
        },
        {"line": 5, "id": "7", "text": "ok", "label": "Negative", "movie": None, "rating": None},
    ]


def test_jsonl_object_missing_a_label_gives_a_null_label(tmp_path: Path) -> None:
    # Given a file where only the second object lacks its label
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n{"text": "b"}\n', encoding="utf-8")

    # When / then that row is read with a null label (validation rejects it, not the reader)
    assert read_reviews(path, STRICT).column("label").to_pylist() == ["pos", None]


def test_empty_jsonl_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    table = read_reviews(path, STRICT)
    assert table.num_rows == 0 and table.column_names == COLUMNS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"text": "a", "label": "pos"}\n\n{"text": "b", "label": \n',
            r"x\.jsonl:3: not valid JSON",
        ),
        ('{"text": "a", "label": "pos"}\n["b", "neg"]\n', r"x\.jsonl:2: not a JSON object"),
        ('{"text": "a"}\n{"text": "b"}\n', r"x\.jsonl: no `label` field \(fields: text\)"),
        ('{"review": "a", "label": 1}\n', r"x\.jsonl: no `text` field \(fields: label, review\)"),
    ],
    ids=["bad-json", "not-object", "no-label", "no-text"],
)
def test_unparseable_jsonl_names_the_file_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReviewFileError, match=message) as info:
        read_reviews(path, STRICT)
    assert info.value.path == path


def test_error_line_attribute(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\nnope\n', encoding="utf-8")
    with pytest.raises(ReviewFileError) as info:
        read_reviews(path, STRICT)
    assert info.value.line == 2


# --- STRICT: binary and non-UTF-8 files --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "message", "line"),
    [
        (
            "b.jsonl",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            r"b\.jsonl:1: not UTF-8 text \(byte 0x89 at offset 0\)",
            1,
        ),
        (
            "b.csv",
            b"text,label\nfine,pos\ncaf\xe9 au lait,neg\n",
            r"b\.csv:3: not UTF-8 text \(byte 0xe9 at offset 23\)",
            3,
        ),
        (
            "b.jsonl",
            b'{"text": "a", "label": "pos"}\nab\x00cd\n',
            r"b\.jsonl:2: binary data, not text \(NUL byte at offset 32\)",
            2,
        ),
    ],
    ids=["png-header", "latin-1-csv", "nul-byte"],
)
def test_bytes_that_are_not_utf8_text_make_the_file_unreadable(
    tmp_path: Path, name: str, data: bytes, message: str, line: int
) -> None:
    # Given a file whose bytes are not UTF-8 text somewhere
    path = tmp_path / name
    path.write_bytes(data)

    # When / then it is unreadable, the error naming the file, the line and the byte
    with pytest.raises(ReviewFileError, match=message) as info:
        read_reviews(path, STRICT)
    assert info.value.line == line


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    # Given a CSV saved by a spreadsheet, with a byte-order mark before the header
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,label\nnice,pos\n".encode())

    # When / then the first column is still `text`
    assert rows(read_reviews(path, STRICT))[0]["text"] == "nice"


# --- STRICT: CSV ----------------------------------------------------------------------------------


def test_csv_with_quoted_commas_and_newlines(tmp_path: Path) -> None:
    # Given a CSV with upper-case headers, an extra column, a quoted comma, a quoted line
    # break, an escaped quote, a blank line, and a row shorter than the header
    path = tmp_path / "reviews.csv"
    path.write_text(
        "ID, Text ,Label,extra,rating,movie\n"
        'a1,"Loved it, truly",positive,x,10,\n'
        '"","Two\nlines, ""quoted""",0,y,,tt0000001\n'
        "\n"
        "a3,short row,neg\n",
        encoding="utf-8",
    )

    # When it is read
    table = read_reviews(path, STRICT)

    # Then each row starts on its physical line (header = line 1), values as written
    assert rows(table) == [
        {
            "line": 2,
            "id": "a1",
            "text": "Loved it, truly",
            "label": "positive",
            "movie": "",
            "rating": "10",
        },
        {
            "line": 3,
            "id": "",
            "text": 'Two\nlines, "quoted"',
            "label": "0",
            "movie": "tt0000001",
            "rating": "",
        },
        {"line": 6, "id": "a3", "text": "short row", "label": "neg", "movie": None, "rating": None},
    ]


def test_csv_with_only_the_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "min.csv"
    path.write_text("text,label\nfine,1\n", encoding="utf-8")
    assert rows(read_reviews(path, STRICT)) == [
        {"line": 2, "id": None, "text": "fine", "label": "1", "movie": None, "rating": None}
    ]


def test_csv_unterminated_quote_names_the_line_where_it_opens(tmp_path: Path) -> None:
    # Given a CSV whose row on line 7 opens a quote that is never closed
    lines = ["text,label"] + [f"review {i},pos" for i in range(5)] + ['"never closed,neg', "x,pos"]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # When / then it is unreadable at line 7
    with pytest.raises(ReviewFileError, match=r"^reviews\.csv:7: unterminated quoted field$"):
        read_reviews(path, STRICT)


def test_csv_broken_quoting_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('text,label\nok,pos\n"a"b,neg\n', encoding="utf-8")
    with pytest.raises(ReviewFileError, match=r"^q\.csv:3: broken CSV") as info:
        read_reviews(path, STRICT)
    assert info.value.line == 3


def test_csv_without_text_column(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ReviewFileError, match=r"^f\.csv: no `text` column \(columns: a, b\)$"):
        read_reviews(path, STRICT)


def test_csv_without_label_column(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("text,stars\nnice,9\n", encoding="utf-8")
    with pytest.raises(ReviewFileError, match=r"no `label` column"):
        read_reviews(path, STRICT)


# --- STRICT: parquet ------------------------------------------------------------------------------


def test_parquet_rows_are_numbered_and_values_read_as_text(tmp_path: Path) -> None:
    # Given a parquet file with integer labels and ratings, no id column and an extra column
    path = tmp_path / "r.parquet"
    pq.write_table(
        pa.table(
            {
                "text": ["good", "bad"],
                "label": pa.array([1, 0], pa.int64()),
                "rating": pa.array([8, None], pa.int8()),
                "other": [1.5, 2.5],
            }
        ),
        path,
    )

    # When / then rows are numbered from 1, values as text, absent columns null
    assert rows(read_reviews(path, STRICT)) == [
        {"line": 1, "id": None, "text": "good", "label": "1", "movie": None, "rating": "8"},
        {"line": 2, "id": None, "text": "bad", "label": "0", "movie": None, "rating": None},
    ]


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    path.write_bytes(b"text,label\nnope,pos\n")
    with pytest.raises(ReviewFileError, match=r"^f\.parquet: not a parquet file \(") as info:
        read_reviews(path, STRICT)
    assert info.value.line is None


def test_parquet_without_label_column(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"text": ["a"], "stars": [3]}), path)
    with pytest.raises(ReviewFileError, match=r"no `label` column \(columns: text, stars\)"):
        read_reviews(path, STRICT)


def test_parquet_text_column_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"text": [[1, 2]], "label": ["pos"]}), path)
    with pytest.raises(ReviewFileError, match=r"column `text` of type list"):
        read_reviews(path, STRICT)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(
        ReviewFileError, match=r"^notes\.txt: unsupported file type; use \.jsonl, \.csv or"
    ):
        read_reviews(path, STRICT)


# --- LENIENT --------------------------------------------------------------------------------------


def test_lenient_reads_every_format_alike(tmp_path: Path) -> None:
    # Given the same two reviews as .txt, .jsonl, .ndjson (with a blank line), .csv (with a
    # byte-order mark and a quoted comma) and .parquet, none with a label
    texts = ["great film", 'awful, "dull" plot']
    (tmp_path / "r.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    lines = [json.dumps({"id": i, "text": t}) for i, t in zip(["r1", "r2"], texts, strict=True)]
    for name in ("r.jsonl", "r.ndjson"):
        (tmp_path / name).write_text(lines[0] + "\n\n" + lines[1] + "\n", encoding="utf-8")
    (tmp_path / "r.csv").write_text(
        '\ufeffid,text\nr1,great film\nr2,"awful, ""dull"" plot"\n', encoding="utf-8"
    )
    pq.write_table(pa.table({"id": ["r1", "r2"], "text": texts}), tmp_path / "r.parquet")

    # When / then each gives the texts in order, on their lines, ids where the file has them
    expected_lines = {"r.txt": [1, 2], "r.jsonl": [1, 3], "r.ndjson": [1, 3], "r.csv": [2, 3]}
    for name in ("r.txt", "r.jsonl", "r.ndjson", "r.csv", "r.parquet"):
        table = read_reviews(tmp_path / name, LENIENT)
        assert table.column_names == COLUMNS, name
        assert table.column("text").to_pylist() == texts, name
        assert table.column("line").to_pylist() == expected_lines.get(name, [1, 2]), name
        ids = table.column("id").to_pylist()
        assert ids == ([None, None] if name == "r.txt" else ["r1", "r2"]), name


def test_lenient_txt_keeps_blank_lines_and_any_line_ending(tmp_path: Path) -> None:
    # Given a .txt with a blank line, Windows and old-Mac line endings and no final line break
    path = tmp_path / "r.txt"
    path.write_bytes(b"great film\r\n\r\nawful plot\rok")

    # When / then every line is a review, the blank one too
    table = read_reviews(path, LENIENT)
    assert table.column("text").to_pylist() == ["great film", "", "awful plot", "ok"]
    assert table.column("line").to_pylist() == [1, 2, 3, 4]


def test_lenient_forgives_bytes_that_strict_refuses(tmp_path: Path) -> None:
    # Given a CSV with a Latin-1 byte and a NUL byte, which STRICT refuses
    path = tmp_path / "b.csv"
    path.write_bytes(b"text,label\ncaf\xe9 au lait,neg\nab\x00cd,pos\n")
    with pytest.raises(ReviewFileError, match="not UTF-8 text"):
        read_reviews(path, STRICT)

    # When / then LENIENT reads it, the bad byte replaced
    assert read_reviews(path, LENIENT).column("text").to_pylist() == [
        "caf\ufffd au lait",
        "ab\x00cd",
    ]


def test_lenient_needs_no_label_but_strict_does(tmp_path: Path) -> None:
    # Given a CSV with a text column and no label
    path = tmp_path / "f.csv"
    path.write_text("text\nnice\n", encoding="utf-8")

    # When / then only STRICT refuses it
    assert read_reviews(path, LENIENT).column("text").to_pylist() == ["nice"]
    with pytest.raises(ReviewFileError, match=r"^f\.csv: no `label` column \(columns: text\)$"):
        read_reviews(path, STRICT)


def test_a_row_problem_is_a_null_for_strict_and_an_error_for_lenient(tmp_path: Path) -> None:
    # Given a JSONL line without a text and a CSV row shorter than its header
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"text": "ok", "label": "pos"}\n{"id": 1, "label": "neg"}\n')
    short = tmp_path / "r.csv"
    short.write_text("id,text,label\n1,great,pos\n2,fine\n", encoding="utf-8")

    # When / then STRICT reads nulls (validation rejects those rows alone)
    assert read_reviews(jsonl, STRICT).column("text").to_pylist() == ["ok", None]
    assert read_reviews(short, STRICT).column("label").to_pylist() == ["pos", None]

    # And LENIENT, with no row checks after it, names the row
    with pytest.raises(ReviewFileError, match=r"^r\.jsonl:2: the review has no text"):
        read_reviews(jsonl, LENIENT)
    with pytest.raises(ReviewFileError, match=r"^r\.csv:3: row does not have one value per"):
        read_reviews(short, LENIENT)


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("r.jsonl", '{"text": "ok"}\nnot json\n', ReviewFileError, r"^r\.jsonl:2: not valid JSON"),
        ("r.jsonl", '["text"]\n', ReviewFileError, r"^r\.jsonl:1: not a JSON object \(a list\)"),
        ("r.jsonl", '{"text": "ok"}\n{"text": null}\n', ReviewFileError, r"^r\.jsonl:2: .*no text"),
        (
            "r.jsonl",
            '{"body": "a"}\n',
            ReviewFileError,
            r"^r\.jsonl: no `text` field \(fields: body",
        ),
        ("r.csv", "id,body\n1,great\n", ReviewFileError, r"^r\.csv: no `text` column.*id, body"),
        ("r.csv", "id,text\n1,great,extra\n", ReviewFileError, r"^r\.csv:2: .*one value per"),
        ("r.csv", "text,id\ngreat,1\nfine\n", ReviewFileError, r"^r\.csv:3: .*one value per"),
        ("r.parquet", "review", ReviewFileError, r"^r\.parquet: no `text` column \(columns: rev"),
        ("r.parquet", "null", ReviewFileError, r"^r\.parquet:2: .*no text"),
        ("r.xml", "<review/>", ReviewFileError, r"^r\.xml: unsupported file type; use \.txt, "),
        ("missing.csv", None, FileNotFoundError, r"missing\.csv does not exist"),
    ],
)
def test_lenient_errors_name_the_file_and_line(
    tmp_path: Path, name: str, content: str | None, error: type, message: str
) -> None:
    # Given a bad review file (or none)
    path = tmp_path / name
    if name == "r.parquet":
        column = {"review": ["great"]} if content == "review" else {"text": ["great", None]}
        pq.write_table(pa.table(column), path)
    elif content is not None:
        path.write_text(content, encoding="utf-8")

    # When / then reading it fails, naming the file and the line or row
    with pytest.raises(error, match=message):
        read_reviews(path, LENIENT)
