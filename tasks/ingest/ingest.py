"""Ingest a folder of new labelled-review files: accept the good rows, quarantine the rest.

Each file is ingested once, by the checksum of its content (whatever its name): its rows are
read (`read`), checked (`validate`) against the test split's texts, the archive's labelled
training reviews and every row accepted before, and then

- the accepted rows go to data/accepted/<sha16>/ (`accepted.write_accepted`);
- the rejected rows go to data/quarantine/<name>.<sha12>.jsonl, one JSON object per row (line,
  id, reason, detail, the first 200 characters of the text);
- a file that cannot be read at all is copied whole to data/quarantine/<name>.<sha12>.file;
- data/quarantine/<name>.<sha12>.summary.json, written last for every file (rows, accepted,
  rejected, reasons, error), is the ledger of ingested files: a file whose checksum has a
  summary is "already ingested" and nothing is written for it again.

The files in the incoming folder are never changed or deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tasks.core.atomic import atomic_write, atomic_write_text, file_sha256
from tasks.ingest.accepted import (
    ACCEPTED_DIR,
    QUARANTINE_DIR,
    AcceptedFile,
    load_accepted,
    read_accepted,
    write_accepted,
)
from tasks.ingest.read import IncomingFileError, read_incoming
from tasks.ingest.validate import UNREADABLE, Validated, validate_rows

log = logging.getLogger(__name__)

Status = Literal["accepted", "quarantined", "already ingested", "unreadable"]
SUMMARY_SUFFIX = ".summary.json"
NO_ROWS = "no rows"


@dataclass(frozen=True)
class IngestedFile:
    """What one ingest did with one incoming file.

    status: "accepted" (every row accepted), "quarantined" (some or all rows rejected, or no
    rows at all), "already ingested" (its content was ingested before: nothing done) or
    "unreadable" (the whole file quarantined; `error` says where it failed. A file that could
    not even be opened has no report, and is tried again next time)."""

    name: str
    sha256: str
    status: Status
    accepted_rows: int
    rejected_rows: int
    reasons: dict[str, int]
    error: str | None
    report: Path | None  # its summary.json


@dataclass(frozen=True)
class IngestReport:
    """The incoming files seen, in name order, and ALL accepted files in the data folder after
    this ingest (old and new), sorted by sha256: what the next data version is made of."""

    files: tuple[IngestedFile, ...]
    accepted: tuple[AcceptedFile, ...]


def incoming_files(incoming: Path) -> list[Path]:
    """The files waiting in `incoming` (not its subfolders; hidden and `*.part` files, which
    are being written, skipped), sorted by name; none if the folder does not exist."""
    if not incoming.is_dir():
        return []
    return sorted(
        (
            p
            for p in incoming.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".part")
        ),
        key=lambda p: p.name,
    )


def _ledger(quarantine: Path, warn: Callable[[str], None]) -> dict[str, tuple[Path, dict]]:
    """sha256 -> (summary path, summary) of every file ingested before."""
    ledger: dict[str, tuple[Path, dict]] = {}
    if not quarantine.is_dir():
        return ledger
    for path in sorted(quarantine.glob(f"*{SUMMARY_SUFFIX}")):
        if path.name.startswith("."):
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            ledger[summary["sha256"]] = (path, summary)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"ingest summary {path} is unreadable ({exc}); ignored")
    return ledger


def _counts(reasons: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in reasons.items())


class _Ingest:
    """One call of `ingest_folder`: the known ids and text keys grow as files are accepted."""

    def __init__(
        self,
        data_dir: Path,
        reference: Callable[[], tuple[frozenset[str], frozenset[str]]],
        max_chars: int,
        progress: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self.accepted_root = data_dir / ACCEPTED_DIR
        self.quarantine = data_dir / QUARANTINE_DIR
        self.reference = reference
        self.max_chars = max_chars
        self.progress = progress
        self.warn = warn
        self.accepted = {f.sha256: f for f in load_accepted(self.accepted_root, warn=warn)}
        self.ledger = _ledger(self.quarantine, warn)
        self.known: tuple[frozenset[str], frozenset[str], set[str], set[str]] | None = None

    def _known(self) -> tuple[frozenset[str], frozenset[str], set[str], set[str]]:
        """(leak keys, archive keys, known ids, known keys), built when a file is first
        validated: a night whose files were all ingested before never needs them."""
        if self.known is None:
            leak_keys, archive_keys = self.reference()
            prior = read_accepted(list(self.accepted.values()))
            ids = set(prior.column("id").to_pylist())
            keys = set(archive_keys) | set(prior.column("text_key").to_pylist())
            self.known = (leak_keys, archive_keys, ids, keys)
        return self.known

    def ingest(self, path: Path) -> IngestedFile:
        name = path.name
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            return self._not_read(path, exc)
        seen = self.ledger.get(sha256)
        if seen is not None:
            summary_path, summary = seen
            if not summary.get("accepted") or sha256 in self.accepted:
                self.progress(f"{name}: already ingested (sha256 {sha256[:12]}…)")
                return IngestedFile(name, sha256, "already ingested", 0, 0, {}, None, summary_path)
            self.warn(
                f"{name}: ingested before, but its accepted rows are missing or damaged; "
                "ingesting it again"
            )
        stem = self.quarantine / f"{name}.{sha256[:12]}"
        try:
            table = read_incoming(path)
        except IncomingFileError as exc:
            return self._unreadable(path, sha256, stem, exc)
        except OSError as exc:
            return self._not_read(path, exc, sha256)
        if table.num_rows == 0:
            summary = self._summary(stem, name, sha256, 0, 0, 0, {}, NO_ROWS)
            self.warn(f"{name}: {NO_ROWS}; nothing accepted (summary {summary})")
            return IngestedFile(name, sha256, "quarantined", 0, 0, {}, NO_ROWS, summary)

        validated, folder = self._validate(table, sha256, name)
        reasons = validated.reasons
        n_acc, n_rej = validated.accepted.num_rows, len(validated.rejected)
        where = folder.path if folder is not None else None
        if validated.rejected:
            where = stem.with_name(stem.name + ".jsonl")
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in validated.rejected)
            atomic_write_text(where, lines)
        summary = self._summary(stem, name, sha256, table.num_rows, n_acc, n_rej, reasons, None)
        status: Status = "quarantined" if n_rej else "accepted"
        rejected = f"{n_rej} rejected" + (f" ({_counts(reasons)})" if reasons else "")
        self.progress(f"{name}: {n_acc} accepted, {rejected} -> {where}")
        return IngestedFile(name, sha256, status, n_acc, n_rej, reasons, None, summary)

    def _validate(
        self, table: pa.Table, sha256: str, name: str
    ) -> tuple[Validated, AcceptedFile | None]:
        """Validate against everything known; publish the accepted rows (reusing the folder an
        interrupted ingest of the same file left, if it holds the same rows)."""
        leak_keys, archive_keys, known_ids, known_keys = self._known()
        ids, keys = known_ids, known_keys
        own = self.accepted.get(sha256)
        own_ids = None
        if own is not None:  # its own rows are no duplicates of it: compare with the rest
            rows = read_accepted([own])
            own_ids = rows.column("id")
            own_keys = set(rows.column("text_key").to_pylist())
            ids = ids - set(own_ids.to_pylist())
            keys = (keys - own_keys) | (own_keys & archive_keys)
        validated = validate_rows(
            table,
            sha256,
            known_ids=ids,
            known_keys=keys,
            leak_keys=leak_keys,
            max_chars=self.max_chars,
        )
        accepted = validated.accepted
        if accepted.num_rows == 0:
            return validated, None
        if own is not None and own_ids is not None and own_ids.equals(accepted.column("id")):
            self.progress(f"{name}: reusing its accepted rows {own.path} (an interrupted ingest)")
            folder = own
        else:
            folder = write_accepted(self.accepted_root, sha256, name, accepted)
        self.accepted[sha256] = folder
        known_ids.update(accepted.column("id").to_pylist())
        known_keys.update(accepted.column("text_key").to_pylist())
        return validated, folder

    def _unreadable(
        self, path: Path, sha256: str, stem: Path, exc: IncomingFileError
    ) -> IngestedFile:
        """Quarantine the whole file: a byte copy beside its summary, which names the error."""
        copy = stem.with_name(stem.name + ".file")
        atomic_write(copy, lambda tmp: shutil.copyfile(path, tmp))
        error = str(exc)
        reasons = {UNREADABLE: 1}
        summary = self._summary(stem, path.name, sha256, None, 0, 0, reasons, error)
        self.warn(f"unreadable file {error}; quarantined whole as {copy}")
        return IngestedFile(path.name, sha256, "unreadable", 0, 0, reasons, error, summary)

    def _not_read(self, path: Path, exc: OSError, sha256: str = "") -> IngestedFile:
        """A file that could not be opened: not quarantined, so the next ingest tries again."""
        self.warn(f"{path.name} could not be read ({exc}); it will be tried again next time")
        return IngestedFile(path.name, sha256, "unreadable", 0, 0, {}, str(exc), None)

    def _summary(
        self,
        stem: Path,
        name: str,
        sha256: str,
        rows: int | None,
        accepted: int,
        rejected: int,
        reasons: dict[str, int],
        error: str | None,
    ) -> Path:
        """Write the file's summary, the ledger entry that makes it "ingested", last."""
        summary = {
            "file": name,
            "sha256": sha256,
            "rows": rows,
            "accepted": accepted,
            "rejected": rejected,
            "reasons": reasons,
            "error": error,
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = stem.with_name(stem.name + SUMMARY_SUFFIX)
        atomic_write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        self.ledger[sha256] = (path, summary)
        return path


def ingest_folder(
    incoming: Path,
    data_dir: Path,
    *,
    leak_keys: frozenset[str] | None = None,
    known_keys: frozenset[str] = frozenset(),
    reference: Callable[[], tuple[frozenset[str], frozenset[str]]] | None = None,
    max_chars: int,
    progress: Callable[[str], None] = log.info,
    warn: Callable[[str], None] = log.warning,
) -> IngestReport:
    """Ingest every new file of `incoming` into `data_dir` (see the module docstring).

    `leak_keys` are the text keys of the test split (`validate.split_keys`), `known_keys` those
    of the archive's labelled training reviews; or `reference()` gives both, called only if a
    file needs validating. `max_chars` is the longest review accepted. An unreadable file is
    quarantined, named by `warn`, and the other files go on.
    """
    if reference is None:
        if leak_keys is None:
            raise TypeError("ingest_folder needs the test split's keys: leak_keys or reference")
        given = (leak_keys, known_keys)

        def reference() -> tuple[frozenset[str], frozenset[str]]:
            return given

    run = _Ingest(data_dir, reference, max_chars, progress, warn)
    files = tuple(run.ingest(path) for path in incoming_files(incoming))
    return IngestReport(files, tuple(sorted(run.accepted.values(), key=lambda f: f.sha256)))
