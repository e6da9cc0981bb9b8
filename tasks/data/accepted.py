"""Accepted incoming rows on disk: one folder per source file, named by its content checksum.
(Held and rejected rows use the same layout under held/ and rejected/.)

`data/accepted/<first 16 hex digits of the file's sha256>/` holds rows.parquet (the accepted
rows, `ACCEPTED_SCHEMA`) and manifest.json (sha256, name, rows, ingested_at and the
file record of rows.parquet), written last and the folder published atomically: a folder
either verifies whole or is not data. The set of accepted files is part of the data version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.atomic import atomic_dir, atomic_write_text, file_record, verified_manifest
from tasks.data.reviews import DataError
from tasks.layout import DataLayout

ROWS = "rows.parquet"
MANIFEST = "manifest.json"
# The accepted rows of an incoming file (tasks.ingest.validate checks them).
ACCEPTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),  # 1 positive, 0 negative
        pa.field("movie", pa.string()),
        pa.field("rating", pa.int8()),  # 1..10
        pa.field("text_key", pa.string(), nullable=False),  # see text_keys
        pa.field("line", pa.int64(), nullable=False),  # where the row is in its source file
    ]
)
# What read_accepted returns: the accepted rows and the checksum of the file each came from.
ROWS_SCHEMA = ACCEPTED_SCHEMA.append(pa.field("source_sha256", pa.string(), nullable=False))

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptedFile:
    """The accepted rows of one incoming file."""

    sha256: str  # of the source file's bytes
    name: str  # the source file's name when it was ingested
    path: Path  # its folder
    rows: int

    @property
    def rows_path(self) -> Path:
        return self.path / ROWS


def write_accepted(root: Path, sha256: str, name: str, table: pa.Table) -> AcceptedFile:
    """Publish `table` (ACCEPTED_SCHEMA) as the accepted rows of the file `sha256` under
    `root` (an older folder of the same checksum is replaced)."""
    dest = root / sha256[:16]
    table = table.select(ACCEPTED_SCHEMA.names).cast(ACCEPTED_SCHEMA)
    with atomic_dir(dest) as tmp:
        pq.write_table(table, tmp / ROWS, compression="zstd")
        manifest = {
            "sha256": sha256,
            "name": name,
            "rows": table.num_rows,
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": {ROWS: file_record(tmp / ROWS)},
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return AcceptedFile(sha256=sha256, name=name, path=dest, rows=table.num_rows)


def load_one(folder: Path) -> tuple[AcceptedFile | None, str]:
    """(the accepted file in `folder`, "") if it verifies, else (None, what is wrong)."""
    manifest, damage = verified_manifest(folder, MANIFEST)
    if manifest is None:
        return None, damage
    try:
        sha256, name, rows = manifest["sha256"], manifest["name"], int(manifest["rows"])
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"{MANIFEST} is unreadable ({exc!r})"
    if not isinstance(sha256, str) or sha256[:16] != folder.name:
        return None, f"{MANIFEST} names sha256 {sha256!r}, not that of the folder's name"
    return AcceptedFile(sha256=sha256, name=name, path=folder, rows=rows), ""


def load_accepted(root: Path, *, warn: Callable[[str], None] = log.warning) -> list[AcceptedFile]:
    """Every accepted file under `root` whose folder verifies, sorted by sha256; a damaged
    folder is named by `warn` and skipped (never half read). Hidden folders (temporaries of
    a write in progress or interrupted) are ignored."""
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        accepted, damage = load_one(folder)
        if accepted is None:
            warn(f"accepted data {folder} is damaged ({damage}); its rows are not used")
            continue
        found.append(accepted)
    return sorted(found, key=lambda f: f.sha256)


def read_accepted(files: Sequence[AcceptedFile]) -> pa.Table:
    """The rows of `files`, in that order (ROWS_SCHEMA: with the `source_sha256` of each)."""
    tables = []
    for f in files:
        rows = pq.read_table(f.rows_path).select(ACCEPTED_SCHEMA.names).cast(ACCEPTED_SCHEMA)
        source = pa.array([f.sha256] * rows.num_rows, pa.string())
        tables.append(rows.append_column(ROWS_SCHEMA.field("source_sha256"), source))
    if not tables:
        return ROWS_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def accepted_files(data_dir: Path, sha256s: Sequence[str]) -> tuple[AcceptedFile, ...]:
    """The verified accepted files with these checksums (those a run's data version holds),
    in that order; DataError naming any that is missing or damaged."""
    found = {f.sha256: f for f in load_accepted(DataLayout(data_dir).accepted)}
    missing = [sha[:12] for sha in sha256s if sha not in found]
    if missing:
        raise DataError(
            f"accepted incoming data {', '.join(missing)} is missing or damaged under "
            f"{DataLayout(data_dir).accepted}; the next nightly ingests its file again if it is "
            "still in the incoming folder"
        )
    return tuple(found[sha] for sha in sha256s)
