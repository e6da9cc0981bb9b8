"""Read one review file (.txt, .jsonl, .csv or .parquet) into a table of raw rows: the one reader
of review files, with a strict mode for incoming labelled files and a lenient one for scoring.

Every value comes back as text, exactly as given, with the line it came from so that a bad row
can be found in the file:

| column | type   | what                                                                  |
|--------|--------|-----------------------------------------------------------------------|
| line   | int64  | .txt/.jsonl: the line number; .csv: the physical line where the row   |
|        |        | starts (the header is line 1); .parquet: the row number. All from 1.  |
| id     | string | optional review id                                                    |
| text   | string | the review (required column)                                          |
| label  | string | the label as written: "pos", "1", "Negative"... (required by STRICT)  |
| movie  | string | optional movie (an IMDb title id such as tt0111161, or any text)      |
| rating | string | optional 1..10 rating as written                                      |

Other columns are ignored. The two modes differ in what they forgive:

- `STRICT` (ingest): the bytes must be UTF-8 text without NUL, CSV quoting must be exact, and
  `text` and `label` columns must exist. A row's own problems (a missing value, a short CSV
  row) come back as nulls, because validation judges each row next and quarantines only it.
- `LENIENT` (predict, score): bytes that are not UTF-8 become U+FFFD and `.txt` (one review per
  line, blank lines kept) is accepted, but nothing judges the rows afterwards, so a row that
  cannot be scored (no text, a CSV row without one value per column) is an error naming its line.

A file that cannot be read raises `ReviewFileError` naming the file and, where known, the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FIELDS = ("id", "text", "label", "movie", "rating")
READ_SCHEMA = pa.schema(
    [pa.field("line", pa.int64(), nullable=False)] + [pa.field(f, pa.string()) for f in FIELDS]
)
JSONL = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class ReadMode:
    """What a reader accepts: file types, required columns, and how strict it is."""

    suffixes: tuple[str, ...]
    required: tuple[str, ...]
    strict: bool


STRICT = ReadMode(suffixes=(".jsonl", ".csv", ".parquet"), required=("text", "label"), strict=True)
LENIENT = ReadMode(
    suffixes=(".txt", ".jsonl", ".ndjson", ".csv", ".parquet"), required=("text",), strict=False
)


class ReviewFileError(ValueError):
    """A file that cannot be read; the message names the file and, where known, the line."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path.name}:{line}" if line is not None else path.name
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line


def is_review_file(path: Path, mode: ReadMode) -> bool:
    """Whether `path` has one of the file types `mode` reads."""
    return path.suffix.lower() in mode.suffixes


def read_reviews(path: Path, mode: ReadMode) -> pa.Table:
    """The rows of `path` as a READ_SCHEMA table, read as `mode` says (see the module
    docstring). FileNotFoundError when there is no such file."""
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in mode.suffixes:
        raise ReviewFileError(path, None, f"unsupported file type; use {_listed(mode.suffixes)}")
    if suffix == ".parquet":
        table = _read_parquet(path, mode)
    else:
        content = _decode(path, path.read_bytes(), mode)
        if suffix in JSONL:
            table = _read_jsonl(path, content, mode)
        elif suffix == ".csv":
            table = _read_csv(path, content, mode)
        else:
            table = _read_txt(path, content)
    if not mode.strict:
        _every_row_has_text(path, table)
    return table


def _listed(suffixes: tuple[str, ...]) -> str:
    return ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}"


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(path: Path, data: bytes, mode: ReadMode) -> str:
    """The file's text. STRICT: ReviewFileError for bytes that are not UTF-8 text (a binary
    file); LENIENT: such bytes become U+FFFD."""
    if not mode.strict:
        return data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    try:
        content = data.decode("utf-8")
        bad = len(data)
    except UnicodeDecodeError as exc:
        content, bad = "", exc.start
    nul = data.find(b"\x00", 0, bad)  # NUL is valid UTF-8, but no text has it: a binary file
    if nul >= 0:  # whichever comes first is named
        raise ReviewFileError(
            path, _line_of(data, nul), f"binary data, not text (NUL byte at offset {nul})"
        )
    if bad < len(data):
        raise ReviewFileError(
            path, _line_of(data, bad), f"not UTF-8 text (byte 0x{data[bad]:02x} at offset {bad})"
        )
    return content.removeprefix("\ufeff")  # a byte-order mark, as spreadsheets write


def _as_text(value: Any) -> str | None:
    """A JSON value as the text it was written as (null stays None)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return json.dumps(value)
    return str(value)


def _table(lines: list[int], columns: dict[str, list[str | None]]) -> pa.Table:
    data: dict[str, Any] = {"line": pa.array(lines, pa.int64())}
    for name in FIELDS:
        data[name] = pa.array(columns.get(name) or [None] * len(lines), pa.string())
    return pa.table(data, schema=READ_SCHEMA)


def _missing(path: Path, present: Iterable[str], mode: ReadMode) -> None:
    """ReviewFileError unless every column `mode` requires is among `present`."""
    present = list(present)
    for name in mode.required:
        if name not in present:
            kind = "field" if path.suffix.lower() in JSONL else "column"
            raise ReviewFileError(
                path, None, f"no `{name}` {kind} ({kind}s: {', '.join(present) or 'none'})"
            )


def _every_row_has_text(path: Path, table: pa.Table) -> None:
    """LENIENT: ReviewFileError at the first row without a text (missing or null)."""
    nulls = pc.is_null(table.column("text"))
    if pc.any(nulls).as_py():
        first = pc.index(nulls, True).as_py()
        line = table.column("line")[first].as_py()
        raise ReviewFileError(path, line, "the review has no text (`text` is missing or null)")


def _read_txt(path: Path, content: str) -> pa.Table:
    """One review per line, every line kept (a blank one too); any line ending ends a line."""
    texts = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if texts[-1] == "":  # the file's last line break ends the last review, not a new one
        texts.pop()
    return _table(list(range(1, len(texts) + 1)), {"text": texts})


def _read_jsonl(path: Path, content: str, mode: ReadMode) -> pa.Table:
    """One JSON object per line; blank lines skipped. A field missing from a line is null, but
    a file where no line has a required field is unreadable."""
    lines: list[int] = []
    columns: dict[str, list[str | None]] = {name: [] for name in FIELDS}
    seen: set[str] = set()
    # Only "\n" ends a JSON line: U+2028 and the like may stand unescaped inside strings.
    for n, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReviewFileError(
                path, n, f"not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise ReviewFileError(path, n, f"not a JSON object (a {type(record).__name__})")
        seen.update(record)
        lines.append(n)
        for name in FIELDS:
            columns[name].append(_as_text(record.get(name)))
    if lines:
        _missing(path, [f for f in FIELDS if f in seen] + sorted(seen - set(FIELDS)), mode)
    return _table(lines, columns)


def _read_csv(path: Path, content: str, mode: ReadMode) -> pa.Table:
    """A header row naming the columns (case and surrounding blanks ignored), then one row per
    review; quoted fields may hold commas and line breaks. Blank lines are skipped."""
    reader = csv.reader(io.StringIO(content, newline=""), strict=mode.strict)
    header: list[str] | None = None
    lines: list[int] = []
    rows: list[list[str]] = []
    end = 0  # the last physical line read so far
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):  # EOF inside quotes: name where they open
                raise ReviewFileError(path, start, "unterminated quoted field") from None
            raise ReviewFileError(path, reader.line_num, f"broken CSV ({exc})") from None
        end = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            _missing(path, header, mode)
            continue
        if not mode.strict and len(row) != len(header):
            raise ReviewFileError(
                path,
                start,
                f"row does not have one value per column ({len(row)} for {len(header)})",
            )
        lines.append(start)
        rows.append(row)
    if header is None:
        return _table([], {})
    columns: dict[str, list[str | None]] = {}
    for name in FIELDS:
        if name in header:
            i = header.index(name)
            columns[name] = [r[i] if i < len(r) else None for r in rows]
    return _table(lines, columns)


def _read_parquet(path: Path, mode: ReadMode) -> pa.Table:
    try:
        names = pq.read_schema(path).names
        _missing(path, names, mode)
        table = pq.read_table(path, columns=[f for f in FIELDS if f in names])
    except (pa.ArrowException, OSError) as exc:
        raise ReviewFileError(path, None, f"not a parquet file ({exc})") from None
    data: dict[str, Any] = {"line": pa.array(range(1, table.num_rows + 1), pa.int64())}
    for name in FIELDS:
        if name not in table.column_names:
            data[name] = pa.nulls(table.num_rows, pa.string())
            continue
        column = table.column(name)
        try:
            data[name] = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ReviewFileError(
                path, None, f"column `{name}` of type {column.type} cannot be read as text ({exc})"
            ) from None
    return pa.table(data, schema=READ_SCHEMA)
