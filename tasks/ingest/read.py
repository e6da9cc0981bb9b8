"""Read one incoming labelled-review file (.jsonl, .csv or .parquet) into a table of raw rows.

Every value comes back as text, exactly as given (validation decides what it means), with the
line it came from so that a rejected row can be found in the file:

| column | type   | what                                                                  |
|--------|--------|-----------------------------------------------------------------------|
| line   | int64  | JSONL: the line number; CSV: the physical line where the row starts    |
|        |        | (the header is line 1); parquet: the row number. All from 1.          |
| id     | string | optional review id                                                    |
| text   | string | the review (required column)                                          |
| label  | string | the label as written: "pos", "1", "Negative"... (required column)     |
| movie  | string | optional movie (an IMDb title id such as tt0111161, or any text)      |
| rating | string | optional 1..10 rating as written                                      |

Other columns are ignored. A file that cannot be parsed at all (bytes that are not UTF-8 text,
NUL bytes, a line that is not a JSON object, broken CSV quoting, not a parquet file, no `text`
or `label` column) raises `IncomingFileError` naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SUPPORTED = (".jsonl", ".csv", ".parquet")
FIELDS = ("id", "text", "label", "movie", "rating")
REQUIRED = ("text", "label")
READ_SCHEMA = pa.schema(
    [pa.field("line", pa.int64(), nullable=False)] + [pa.field(f, pa.string()) for f in FIELDS]
)


class IncomingFileError(ValueError):
    """A file that cannot be parsed at all; the message names the file and the line."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path.name}:{line}" if line is not None else path.name
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line


def read_incoming(path: Path) -> pa.Table:
    """The rows of `path` as a READ_SCHEMA table (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix not in SUPPORTED:
        raise IncomingFileError(path, None, "unsupported file type; use .jsonl, .csv or .parquet")
    content = _decode(path, path.read_bytes())
    if suffix == ".jsonl":
        return _read_jsonl(path, content)
    return _read_csv(path, content)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(path: Path, data: bytes) -> str:
    """The file's text; IncomingFileError for bytes that are not UTF-8 text (a binary file)."""
    try:
        content = data.decode("utf-8")
        bad = len(data)
    except UnicodeDecodeError as exc:
        content, bad = "", exc.start
    nul = data.find(b"\x00", 0, bad)  # NUL is valid UTF-8, but no text has it: a binary file
    if nul >= 0:  # whichever comes first is named
        raise IncomingFileError(
            path, _line_of(data, nul), f"binary data, not text (NUL byte at offset {nul})"
        )
    if bad < len(data):
        raise IncomingFileError(
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


def _table(path: Path, lines: list[int], columns: dict[str, list[str | None]]) -> pa.Table:
    data: dict[str, Any] = {"line": pa.array(lines, pa.int64())}
    for name in FIELDS:
        data[name] = pa.array(columns.get(name) or [None] * len(lines), pa.string())
    return pa.table(data, schema=READ_SCHEMA)


def _missing(path: Path, present: Iterable[str]) -> None:
    """IncomingFileError unless every REQUIRED column is among `present`."""
    present = list(present)
    for name in REQUIRED:
        if name not in present:
            kind = "field" if path.suffix.lower() == ".jsonl" else "column"
            raise IncomingFileError(
                path, None, f"no `{name}` {kind} ({kind}s: {', '.join(present) or 'none'})"
            )


def _read_jsonl(path: Path, content: str) -> pa.Table:
    """One JSON object per line; blank lines skipped. A field missing from a line is null
    (that row is then rejected), but a file where no line has `text`/`label` is unreadable."""
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
            raise IncomingFileError(
                path, n, f"not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise IncomingFileError(path, n, f"not a JSON object (a {type(record).__name__})")
        seen.update(record)
        lines.append(n)
        for name in FIELDS:
            columns[name].append(_as_text(record.get(name)))
    if lines:
        _missing(path, [f for f in FIELDS if f in seen] + sorted(seen - set(FIELDS)))
    return _table(path, lines, columns)


def _read_csv(path: Path, content: str) -> pa.Table:
    """A header row naming the columns (case and surrounding blanks ignored), then one row per
    review; quoted fields may hold commas and line breaks. Blank lines are skipped."""
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
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
                raise IncomingFileError(path, start, "unterminated quoted field") from None
            raise IncomingFileError(path, reader.line_num, f"broken CSV ({exc})") from None
        end = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            _missing(path, header)
            continue
        lines.append(start)
        rows.append(row)
    if header is None:
        return _table(path, [], {})
    columns: dict[str, list[str | None]] = {}
    for name in FIELDS:
        if name in header:
            i = header.index(name)
            columns[name] = [r[i] if i < len(r) else None for r in rows]
    return _table(path, lines, columns)


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise IncomingFileError(path, None, f"not a parquet file ({exc})") from None
    _missing(path, table.column_names)
    data: dict[str, Any] = {"line": pa.array(range(1, table.num_rows + 1), pa.int64())}
    for name in FIELDS:
        if name not in table.column_names:
            data[name] = pa.nulls(table.num_rows, pa.string())
            continue
        column = table.column(name)
        try:
            data[name] = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise IncomingFileError(
                path, None, f"column `{name}` of type {column.type} cannot be read as text ({exc})"
            ) from None
    return pa.table(data, schema=READ_SCHEMA)
