"""Shared helpers for the benchmark scripts (each prints one JSON line)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = Path(os.environ.get("IMDB_SOURCE") or ROOT.parent / "shared/imdb/aclImdb_v1.tar.gz")
REAL_SHA256 = os.environ.get(
    "IMDB_SHA256", "c9c64a8c8c2c9012e75cd4de5d427bb34cd7bd4ce4a791eaf2543cf24ee217f5"
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(script: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run `script` in a fresh interpreter so times and peak memory are its own (with `env`
    added to this process's environment). A failed run raises with the end of its stderr:
    the output is captured, so its traceback would be lost otherwise."""
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if out.returncode:
        tail = "\n".join(out.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"{script.name} {' '.join(args)} exited {out.returncode}:\n{tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])
