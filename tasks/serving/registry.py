"""The model registry's lineage: artifacts/models/registry.jsonl, append-only.

One JSON object per line: every candidate the nightly trained, every decision about it, every
promotion, and every rollback (`tasks/serving/moves.py`). Lines are appended with one
`write` on an O_APPEND descriptor and fsynced, so a crash leaves at most a torn last line,
which readers skip with a warning; nothing is ever rewritten.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REGISTRY = "registry.jsonl"
CANDIDATE, DECISION, PROMOTION, ROLLBACK = "candidate", "decision", "promotion", "rollback"

log = logging.getLogger(__name__)


def append_event(models_dir: Path, event: str, run_id: str, **fields: Any) -> dict[str, Any]:
    """Append one `event` about run `run_id` (with a UTC timestamp) and return it."""
    record = {
        "event": event,
        "run_id": run_id,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
    }
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    models_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(models_dir / REGISTRY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return record


def read_events(models_dir: Path) -> list[dict[str, Any]]:
    """Every complete event, oldest first."""
    path = models_dir / REGISTRY
    if not path.exists():
        return []
    events = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s:%d is not a complete JSON line (a torn write?): skipped", path, n)
    return events


def reigns(events: list[dict[str, Any]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """From `events` (oldest first): the champions in the order they took over, and for each
    model rolled back and not made champion again since, the rollback that removed it."""
    order: list[str] = []
    rolled: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("event") in (PROMOTION, ROLLBACK):
            order.append(event["run_id"])
            rolled.pop(event["run_id"], None)
            if event["event"] == ROLLBACK and event.get("previous"):
                rolled[event["previous"]] = event
    return order, rolled


def find_event(models_dir: Path, event: str, run_id: str) -> dict[str, Any] | None:
    """The first `event` recorded for `run_id`, if any."""
    for record in read_events(models_dir):
        if record.get("event") == event and record.get("run_id") == run_id:
            return record
    return None
