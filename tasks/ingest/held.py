"""What an operator does with incoming files: list them, release or reject a held one.

A held file's rows wait in data/held/<sha16>/. A decision is first appended to the file's
ledger entry (with the user, host, time and an optional reason), then carried out by one rename
of that folder: to data/accepted/ (released: the next data version has its rows) or to
data/rejected/ (never used, but kept). A decision whose rename did not happen (a process killed
between the two) is carried out by the next `settle`, which every ingest and every command here
runs first: the ledger is the record, the folder follows it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.atomic import fsync_dir
from tasks.core.environment import who
from tasks.core.lock import exclusive
from tasks.data.accepted import load_one
from tasks.ingest import ledger
from tasks.layout import DataLayout

LOCK = ".ledger.lock"  # in the quarantine folder: one ingest or decision at a time


class IncomingError(ValueError):
    """An incoming command that cannot be carried out; nothing was changed."""


@contextmanager
def ledger_locked(data_dir: Path) -> Iterator[None]:
    """The ledger and the row folders for this block alone (an ingest, or a decision)."""
    quarantine = DataLayout(data_dir).quarantine
    quarantine.mkdir(parents=True, exist_ok=True)
    with exclusive(quarantine / LOCK):
        yield


def settle(data_dir: Path) -> list[str]:
    """Carry out every recorded decision whose folder has not moved yet; the names moved.
    (Call it holding `ledger_locked`.)"""
    layout = DataLayout(data_dir)
    moved = []
    for entry in ledger.read_ledger(layout.quarantine).values():
        decisions = entry.summary.get("decisions") or []
        if not entry.summary.get("held") or not decisions:
            continue
        source = layout.held / entry.sha256[:16]
        if source.is_dir():
            _move(source, _destination(layout, decisions[-1]["action"]))
            moved.append(entry.name)
    return moved


def _destination(layout: DataLayout, action: str) -> Path:
    """Where a decision moves a held file's rows."""
    return layout.accepted if action == ledger.RELEASE else layout.rejected


def _move(source: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    dest = root / source.name
    if dest.exists():  # left by an earlier life of the same file: the held rows are newer
        shutil.rmtree(dest)
    os.replace(source, dest)
    fsync_dir(root)
    fsync_dir(source.parent)


def describe(entry: ledger.Entry) -> dict[str, Any]:
    """One file as `incoming list` shows it."""
    s = entry.summary
    checks = s.get("checks") or []
    return {
        "file": entry.name,
        "sha256": entry.sha256,
        "status": entry.status,
        "rows": s.get("rows"),
        "accepted": s.get("accepted", 0),
        "rejected": s.get("rejected", 0),
        "ingested_at": s.get("ingested_at"),
        "failed_checks": [c["name"] for c in checks if not c.get("passed", True)],
        "checks": checks,
        "decisions": s.get("decisions") or [],
        "error": s.get("error"),
    }


def list_incoming(data_dir: Path, status: str | None = None) -> list[dict[str, Any]]:
    """Every ingested file, newest first (optionally only those with `status`)."""
    if status is not None and status not in ledger.STATUSES:
        raise IncomingError(f"unknown status {status!r}: one of {', '.join(ledger.STATUSES)}")
    with ledger_locked(data_dir):
        settle(data_dir)
        entries = ledger.read_ledger(DataLayout(data_dir).quarantine).values()
    rows = [describe(e) for e in entries if status is None or e.status == status]
    return sorted(rows, key=lambda r: (r["ingested_at"] or "", r["file"]), reverse=True)


def find(entries: dict[str, ledger.Entry], name_or_sha: str) -> ledger.Entry:
    """The one entry whose file name is `name_or_sha` or whose sha256 starts with it (at least
    6 hex digits); IncomingError naming the candidates otherwise."""
    key = name_or_sha.strip()
    if not key:
        raise IncomingError("give a file name or the start of its sha256")
    by_name = [e for e in entries.values() if e.name == key]
    by_sha = (
        [e for e in entries.values() if e.sha256.startswith(key.lower())] if len(key) >= 6 else []
    )
    found = {e.sha256: e for e in by_name + by_sha}
    if not found:
        raise IncomingError(
            f"no ingested file named {key!r} or with a sha256 starting {key!r} "
            "(see imdb-pipeline incoming list)"
        )
    if len(found) > 1:
        names = ", ".join(f"{e.name} ({e.sha256[:12]})" for e in found.values())
        raise IncomingError(f"{key!r} matches {len(found)} files: {names}; give more of a sha256")
    return next(iter(found.values()))


def decide(data_dir: Path, name_or_sha: str, action: str, reason: str | None) -> dict[str, Any]:
    """Release or reject a held file (see the module docstring); the file as listed after.
    IncomingError, with nothing changed, for a file that is not held or whose rows are
    damaged."""
    if action not in (ledger.RELEASE, ledger.REJECT):
        raise IncomingError(f"unknown action {action!r}")
    with ledger_locked(data_dir):
        settle(data_dir)
        layout = DataLayout(data_dir)
        entry = find(ledger.read_ledger(layout.quarantine), name_or_sha)
        if entry.status != "held":
            raise IncomingError(
                f"{entry.name} ({entry.sha256[:12]}) is not held: it is {entry.status}; only a "
                "held file can be released or rejected"
            )
        folder = layout.held / entry.sha256[:16]
        rows, damage = load_one(folder)
        if rows is None:
            raise IncomingError(
                f"the held rows of {entry.name} in {folder} are missing or damaged ({damage}); "
                "put the file in the incoming folder again to ingest it anew"
            )
        decision = {
            "action": action,
            **who(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "reason": reason,
        }
        entry = entry.decided(decision)
        _move(folder, _destination(layout, action))
    return describe(entry)
