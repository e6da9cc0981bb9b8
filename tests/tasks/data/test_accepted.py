"""Tests of the accepted-rows folders: atomic publication, verified loading, reading back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data.accepted import (
    ROWS_SCHEMA,
    AcceptedFile,
    load_accepted,
    read_accepted,
    write_accepted,
)
from tasks.ingest.validate import ACCEPTED_SCHEMA, text_keys
from tasks.layout import DataLayout
from tests.imdb_fixtures import fail_temp_folder_renames

SHA_A = "a" * 64
SHA_B = "b" * 64


def rows(*texts: str, prefix: str = "r") -> pa.Table:
    return pa.table(
        {
            "id": [f"{prefix}{i}" for i in range(len(texts))],
            "text": list(texts),
            "label": pa.array([i % 2 for i in range(len(texts))], pa.int8()),
            "movie": [None] * len(texts),
            "rating": pa.array([None] * len(texts), pa.int8()),
            "text_key": text_keys(texts),
            "line": pa.array(range(1, len(texts) + 1), pa.int64()),
        },
        schema=ACCEPTED_SCHEMA,
    )


def test_folder_names() -> None:
    layout = DataLayout(Path("data"))
    assert (layout.accepted.name, layout.quarantine.name) == ("accepted", "quarantine")


def test_written_folder_loads_and_reads_back(tmp_path: Path) -> None:
    # Given the accepted rows of two files, written in reverse checksum order
    root = tmp_path / "accepted"
    b = write_accepted(root, SHA_B, "b.csv", rows("third", prefix="b"))
    a = write_accepted(root, SHA_A, "a.jsonl", rows("first", "second"))

    # Then each is a folder named by its checksum, with its rows and a manifest
    assert a == AcceptedFile(sha256=SHA_A, name="a.jsonl", path=root / SHA_A[:16], rows=2)
    assert a.rows_path == root / SHA_A[:16] / "rows.parquet"
    assert sorted(p.name for p in a.path.iterdir()) == ["manifest.json", "rows.parquet"]
    manifest = json.loads((a.path / "manifest.json").read_text())
    assert (manifest["sha256"], manifest["name"], manifest["rows"]) == (SHA_A, "a.jsonl", 2)
    assert "ingested_at" in manifest and set(manifest["files"]) == {"rows.parquet"}
    assert pq.ParquetFile(a.rows_path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []

    # When they are loaded and read
    loaded = load_accepted(root)
    table = read_accepted(loaded)

    # Then they come sorted by checksum, their rows in that order with their source's checksum
    assert loaded == [a, b]
    assert table.schema == ROWS_SCHEMA
    assert table.column("text").to_pylist() == ["first", "second", "third"]
    assert table.column("source_sha256").to_pylist() == [SHA_A, SHA_A, SHA_B]
    # And in the order given, when given another
    assert read_accepted([b, a]).column("text").to_pylist() == ["third", "first", "second"]


def test_nothing_accepted_yet(tmp_path: Path) -> None:
    assert load_accepted(tmp_path / "accepted") == []
    empty = read_accepted([])
    assert empty.num_rows == 0 and empty.schema == ROWS_SCHEMA


def test_damaged_folder_is_not_loaded(tmp_path: Path) -> None:
    # Given two accepted folders, one of them edited after it was written
    root = tmp_path / "accepted"
    good = write_accepted(root, SHA_A, "a.jsonl", rows("first"))
    bad = write_accepted(root, SHA_B, "b.jsonl", rows("second", prefix="b"))
    pq.write_table(rows("tampered", "rows", prefix="b"), bad.rows_path)

    # When they are loaded
    warnings: list[str] = []
    loaded = load_accepted(root, warn=warnings.append)

    # Then only the intact one is, and the damaged one is named in a warning
    assert loaded == [good]
    assert len(warnings) == 1 and str(bad.path) in warnings[0] and "damaged" in warnings[0]


def test_folder_without_manifest_or_with_a_foreign_one_is_not_loaded(tmp_path: Path) -> None:
    # Given a folder without a manifest, and a folder holding another folder's manifest
    root = tmp_path / "accepted"
    a = write_accepted(root, SHA_A, "a.jsonl", rows("first"))
    (root / "0123456789abcdef").mkdir()
    (root / "0123456789abcdef" / "rows.parquet").write_bytes(a.rows_path.read_bytes())
    moved = root / ("c" * 16)
    moved.mkdir()
    for f in a.path.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())

    # When / then neither is loaded
    warnings: list[str] = []
    assert load_accepted(root, warn=warnings.append) == [a]
    assert len(warnings) == 2


def test_interrupted_write_leaves_nothing_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a write whose final rename is killed
    root = tmp_path / "accepted"
    fail_temp_folder_renames(monkeypatch)
    with pytest.raises(OSError, match="killed"):
        write_accepted(root, SHA_A, "a.jsonl", rows("first"))
    monkeypatch.undo()

    # Then no folder (or temporary) is left, and nothing loads
    assert list(root.iterdir()) == []
    assert load_accepted(root) == []


def test_hidden_temporary_folders_are_ignored(tmp_path: Path) -> None:
    root = tmp_path / "accepted"
    write_accepted(root, SHA_A, "a.jsonl", rows("first"))
    (root / f".{SHA_B[:16]}.x.tmp").mkdir()
    warnings: list[str] = []
    assert [f.sha256 for f in load_accepted(root, warn=warnings.append)] == [SHA_A]
    assert warnings == []


def test_rewriting_a_folder_replaces_it(tmp_path: Path) -> None:
    root = tmp_path / "accepted"
    write_accepted(root, SHA_A, "a.jsonl", rows("first", "second"))
    again = write_accepted(root, SHA_A, "a.jsonl", rows("first"))
    assert load_accepted(root) == [again]
    assert read_accepted([again]).column("text").to_pylist() == ["first"]
