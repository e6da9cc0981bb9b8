"""Ingest a folder of new labelled-review files: accept the good rows, quarantine the rest.

Each file is ingested once, by the checksum of its content (whatever its name): its rows are
read (`review_files.read_reviews`, STRICT), checked (`validate`) against the test split's
texts, the archive's labelled training reviews and every row accepted before, and then

- the accepted rows go to data/accepted/<sha16>/ (`accepted.write_accepted`);
- the rejected rows go to data/quarantine/<name>.<sha12>.jsonl, one JSON object per row (line,
  id, reason, detail, the first 200 characters of the text);
- a file that cannot be read at all is copied whole to data/quarantine/<name>.<sha12>.file;
- data/quarantine/<name>.<sha12>.summary.json, written last for every file, is its entry in
  the ledger of ingested files (`ledger`): a file whose checksum has one is "already ingested"
  and nothing is written for it again.

A new file whose rows pass the row checks then goes through the batch checks (`batch`, when a
`judge` is given): a file that fails one is held, its rows in data/held/<sha16>/ and in no
data version, until an operator releases or rejects it (`held`). Held rows count as known (a
later file repeating them is a duplicate); rejected ones do not.

The files in the incoming folder are never changed or deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from tasks.core.atomic import atomic_write, atomic_write_text, file_sha256
from tasks.data.accepted import (
    AcceptedFile,
    load_accepted,
    read_accepted,
    write_accepted,
)
from tasks.data.review_files import STRICT, ReviewFileError, read_reviews
from tasks.ingest import ledger
from tasks.ingest.batch import Check
from tasks.ingest.held import ledger_locked, settle
from tasks.ingest.known import KnownRows, Reference
from tasks.ingest.validate import UNREADABLE
from tasks.layout import DataLayout

log = logging.getLogger(__name__)

Status = Literal["accepted", "quarantined", "held", "rejected", "already ingested", "unreadable"]
NO_ROWS = "no rows"
# The batch checks of a file's accepted rows (ACCEPTED_SCHEMA): every check, passed or not.
Judge = Callable[[pa.Table], list[Check]]


@dataclass(frozen=True)
class IngestedFile:
    """What one ingest did with one incoming file.

    status: "accepted" (every row accepted), "quarantined" (some or all rows rejected, or no
    rows at all), "held" (its rows failed a batch check: `checks` says which, `held_rows` how
    many wait; also for a file held before and still waiting), "rejected" (held, then rejected
    by an operator), "already ingested" (its content was ingested before: nothing done) or
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
    held_rows: int = 0
    checks: tuple[dict[str, Any], ...] = ()  # the batch checks (Check.as_dict), if it had them
    waiting: bool = False  # held by an earlier ingest, still waiting for an operator


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


def _counts(reasons: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in reasons.items())


class _Ingest:
    """One call of `ingest_folder`: the known rows grow as files are accepted."""

    def __init__(
        self,
        data_dir: Path,
        reference: Reference,
        max_chars: int,
        judge: Judge | None,
        progress: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        layout = DataLayout(data_dir)
        self.accepted_root = layout.accepted
        self.held_root = layout.held
        self.quarantine = layout.quarantine
        self.max_chars = max_chars
        self.judge = judge
        self.progress = progress
        self.warn = warn
        self.accepted = {f.sha256: f for f in load_accepted(self.accepted_root, warn=warn)}
        self.held = {f.sha256: f for f in load_accepted(self.held_root, warn=warn)}
        self.ledger = ledger.read_ledger(self.quarantine, warn)
        self.known = KnownRows(
            reference, self.accepted, self.held, lambda sha: self._status(sha) == "held"
        )

    def _status(self, sha256: str) -> str | None:
        entry = self.ledger.get(sha256)
        return entry.status if entry is not None else None

    def _seen(self, name: str, sha256: str, entry: ledger.Entry) -> IngestedFile | None:
        """What to report for a file ingested before, or None to ingest it again (its rows are
        missing or damaged)."""
        status, summary = entry.status, entry.summary
        checks = tuple(summary.get("checks") or ())
        if status == "held" and sha256 in self.held:
            self.progress(
                f"{name}: still held since {summary.get('ingested_at')} (sha256 "
                f"{sha256[:12]}…): release or reject it with `imdb-pipeline incoming`"
            )
            rows = summary.get("accepted", 0)
            return IngestedFile(
                name, sha256, "held", 0, 0, {}, None, entry.path, rows, checks, waiting=True
            )
        if status == "rejected":
            self.progress(f"{name}: rejected by an operator (sha256 {sha256[:12]}…); not used")
            return IngestedFile(name, sha256, "rejected", 0, 0, {}, None, entry.path, checks=checks)
        if status != "held" and (not summary.get("accepted") or sha256 in self.accepted):
            self.progress(f"{name}: already ingested (sha256 {sha256[:12]}…)")
            return IngestedFile(name, sha256, "already ingested", 0, 0, {}, None, entry.path)
        self.warn(
            f"{name}: ingested before, but its {'held' if status == 'held' else 'accepted'} "
            "rows are missing or damaged; ingesting it again"
        )
        return None

    def ingest(self, path: Path) -> IngestedFile:
        name = path.name
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            return self._not_read(path, exc)
        entry = self.ledger.get(sha256)
        if entry is not None:
            seen = self._seen(name, sha256, entry)
            if seen is not None:
                return seen
        # Judged once: a file accepted before (whose rows are re-made here) is not judged again.
        judge = self.judge if entry is None or entry.status == "held" else None
        stem = self.quarantine / f"{name}.{sha256[:12]}"
        try:
            table = read_reviews(path, STRICT)
        except ReviewFileError as exc:
            return self._unreadable(path, sha256, stem, exc)
        except OSError as exc:
            return self._not_read(path, exc, sha256)
        if table.num_rows == 0:
            summary = self._summary(name, sha256, 0, 0, 0, {}, NO_ROWS)
            self.warn(f"{name}: {NO_ROWS}; nothing accepted (summary {summary})")
            return IngestedFile(name, sha256, "quarantined", 0, 0, {}, NO_ROWS, summary)

        validated = self.known.validate(table, sha256, self.max_chars)
        accepted = validated.accepted
        checks = judge(accepted) if judge is not None and accepted.num_rows else []
        failed = [c for c in checks if not c.passed]
        folder = self._publish(accepted, sha256, name, held=bool(failed))
        reasons = validated.reasons
        n_acc, n_rej = accepted.num_rows, len(validated.rejected)
        where = folder.path if folder is not None else None
        if validated.rejected:
            where = stem.with_name(stem.name + ".jsonl")
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in validated.rejected)
            atomic_write_text(where, lines)
        records = tuple(c.as_dict() for c in checks)
        summary = self._summary(
            name, sha256, table.num_rows, n_acc, n_rej, reasons, None, records, bool(failed)
        )
        for check in checks:
            verdict = "skipped" if check.value is None else "passed" if check.passed else "FAILED"
            self.progress(f"{name}: {check.name} {verdict}: {check.detail}")
        rejected = f"{n_rej} rejected" + (f" ({_counts(reasons)})" if reasons else "")
        if failed:
            self.warn(
                f"{name}: held, {n_acc} row(s) in {where} wait for an operator "
                f"(failed: {', '.join(c.name for c in failed)}); {rejected}"
            )
            return IngestedFile(
                name, sha256, "held", 0, n_rej, reasons, None, summary, n_acc, records
            )
        status: Status = "quarantined" if n_rej else "accepted"
        self.progress(f"{name}: {n_acc} accepted, {rejected} -> {where}")
        return IngestedFile(name, sha256, status, n_acc, n_rej, reasons, None, summary, 0, records)

    def _publish(
        self, accepted: pa.Table, sha256: str, name: str, *, held: bool
    ) -> AcceptedFile | None:
        """Publish the accepted rows under accepted/ or held/ (reusing the folder an
        interrupted ingest of the same file left, if it holds the same rows there)."""
        if accepted.num_rows == 0:
            return None
        mine, other = (self.held, self.accepted) if held else (self.accepted, self.held)
        root = self.held_root if held else self.accepted_root
        own = mine.get(sha256)
        if own is not None and read_accepted([own]).column("id").equals(accepted.column("id")):
            self.progress(f"{name}: reusing its rows {own.path} (an interrupted ingest)")
            folder = own
        else:
            folder = write_accepted(root, sha256, name, accepted)
        stale = other.pop(sha256, None)
        if stale is not None:  # left by an interrupted ingest judged otherwise
            shutil.rmtree(stale.path, ignore_errors=True)
        mine[sha256] = folder
        self.known.add(accepted)
        return folder

    def _unreadable(
        self, path: Path, sha256: str, stem: Path, exc: ReviewFileError
    ) -> IngestedFile:
        """Quarantine the whole file: a byte copy beside its summary, which names the error."""
        copy = stem.with_name(stem.name + ".file")
        atomic_write(copy, lambda tmp: shutil.copyfile(path, tmp))
        error = str(exc)
        reasons = {UNREADABLE: 1}
        summary = self._summary(path.name, sha256, None, 0, 0, reasons, error)
        self.warn(f"unreadable file {error}; quarantined whole as {copy}")
        return IngestedFile(path.name, sha256, "unreadable", 0, 0, reasons, error, summary)

    def _not_read(self, path: Path, exc: OSError, sha256: str = "") -> IngestedFile:
        """A file that could not be opened: not quarantined, so the next ingest tries again."""
        self.warn(f"{path.name} could not be read ({exc}); it will be tried again next time")
        return IngestedFile(path.name, sha256, "unreadable", 0, 0, {}, str(exc), None)

    def _summary(
        self,
        name: str,
        sha256: str,
        rows: int | None,
        accepted: int,
        rejected: int,
        reasons: dict[str, int],
        error: str | None,
        checks: tuple[dict[str, Any], ...] = (),
        held: bool = False,
    ) -> Path:
        """Write the file's ledger entry, which makes it "ingested", last."""
        entry = ledger.write_entry(
            self.quarantine,
            name,
            sha256,
            rows=rows,
            accepted=accepted,
            rejected=rejected,
            reasons=reasons,
            error=error,
            checks=list(checks),
            held=held,
        )
        self.ledger[sha256] = entry
        return entry.path


def ingest_folder(
    incoming: Path,
    data_dir: Path,
    *,
    leak_keys: frozenset[str] | None = None,
    known_keys: frozenset[str] = frozenset(),
    reference: Reference | None = None,
    max_chars: int,
    judge: Judge | None = None,
    progress: Callable[[str], None] = log.info,
    warn: Callable[[str], None] = log.warning,
) -> IngestReport:
    """Ingest every new file of `incoming` into `data_dir` (see the module docstring).

    `leak_keys` are the text keys of the test split (`validate.split_keys`), `known_keys` those
    of the archive's labelled training reviews; or `reference()` gives both, called only if a
    file needs validating. `max_chars` is the longest review accepted; `judge` gives the batch
    checks of a new file's accepted rows (none without it). An unreadable file is quarantined,
    named by `warn`, and the other files go on.
    """
    if reference is None:
        if leak_keys is None:
            raise TypeError("ingest_folder needs the test split's keys: leak_keys or reference")
        given = (leak_keys, known_keys)

        def reference() -> tuple[frozenset[str], frozenset[str]]:
            return given

    with ledger_locked(data_dir):
        for moved in settle(data_dir):
            progress(f"{moved}: carried out the operator's recorded decision")
        run = _Ingest(data_dir, reference, max_chars, judge, progress, warn)
        files = tuple(run.ingest(path) for path in incoming_files(incoming))
    return IngestReport(files, tuple(sorted(run.accepted.values(), key=lambda f: f.sha256)))
