"""The ledger of ingested files: data/quarantine/<name>.<sha12>.summary.json, one per file.

A file whose checksum has a summary is ingested: the next ingest does nothing for it again.
Each summary says what the ingest did (rows, accepted, rejected, reasons, error, the batch
`checks` and whether the file is `held`) and, for a held file, the operator's `decisions`
(release or reject, with who, when and why), appended in order. It is rewritten atomically,
and written last when a file is ingested.

A file's status follows from its summary (`status`):
- `unreadable`: the whole file was quarantined (`error` says why);
- `quarantined`: some or all of its rows were rejected, or it had none;
- `accepted`: every row accepted;
- `held`: its rows passed the row checks but not the batch checks; they wait, out of every
  data version, for an operator;
- `released` / `rejected`: a held file after the operator's decision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.atomic import atomic_write_text

log = logging.getLogger(__name__)

SUFFIX = ".summary.json"
RELEASE, REJECT = "release", "reject"
DECIDED = {RELEASE: "released", REJECT: "rejected"}
STATUSES = ("accepted", "quarantined", "unreadable", "held", "released", "rejected")


@dataclass(frozen=True)
class Entry:
    """One ingested file's summary and where it is."""

    path: Path
    summary: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.summary["sha256"]

    @property
    def name(self) -> str:
        return self.summary.get("file", "")

    @property
    def status(self) -> str:
        s = self.summary
        if s.get("held"):
            decisions = s.get("decisions") or []
            return DECIDED[decisions[-1]["action"]] if decisions else "held"
        if s.get("rows") is None:
            return "unreadable"
        if s.get("rejected") or not s.get("accepted"):
            return "quarantined"
        return "accepted"

    def decided(self, decision: dict[str, Any]) -> Entry:
        """This entry with `decision` appended, written back atomically."""
        summary = {**self.summary, "decisions": [*self.summary.get("decisions", []), decision]}
        _write(self.path, summary)
        return Entry(self.path, summary)


def summary_path(quarantine: Path, name: str, sha256: str) -> Path:
    return quarantine / f"{name}.{sha256[:12]}{SUFFIX}"


def read_ledger(quarantine: Path, warn: Callable[[str], None] = log.warning) -> dict[str, Entry]:
    """sha256 -> entry of every file ingested before (an unreadable summary is named by `warn`
    and left out)."""
    ledger: dict[str, Entry] = {}
    if not quarantine.is_dir():
        return ledger
    for path in sorted(quarantine.glob(f"*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            entry = Entry(path, summary)
            _ = entry.sha256, entry.status
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            warn(f"ingest summary {path} is unreadable ({exc!r}); ignored")
            continue
        ledger[entry.sha256] = entry
    return ledger


def write_entry(quarantine: Path, name: str, sha256: str, **fields: Any) -> Entry:
    """Write a file's summary (`fields`: rows, accepted, rejected, reasons, error, checks,
    held), the entry that makes it ingested."""
    summary = {
        "file": name,
        "sha256": sha256,
        **fields,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = summary_path(quarantine, name, sha256)
    _write(path, summary)
    return Entry(path, summary)


def _write(path: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
