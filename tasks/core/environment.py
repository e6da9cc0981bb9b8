"""What a run was computed with: Python, the packages that shape its numbers, the lock file,
the code commit and the platform. Recorded in run.json and every model card; a resume under a
different environment is warned about (it is then no longer bit-identical)."""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = ROOT / "requirements" / "dev.lock"  # what `make install` installs
# The packages whose versions change results or their reading back (either TF wheel).
PACKAGES = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "prefect",
    "pandas",
    "pyarrow",
    "gensim",
    "numpy",
    "pydantic",
)

# TensorFlow's threads per op. TensorFlow's own default is one per core: then the LSTM's
# thousands of small ops per step are each split over the cores, the threads' hand-offs cost
# more CPU time than they save (benchmarks/bench_threads.py, docs/model.md), and the float
# sums, so the weights, depend on the machine's core count. With one thread per op the ops
# still run side by side (the LSTM's two directions on two cores). A default: a value set
# beforehand (TF_NUM_INTRAOP_THREADS=0 is TensorFlow's own) is kept. TensorFlow reads it when
# it starts, so the package sets it when imported (tasks/__init__.py), before TF is.
INTRA_OP_THREADS_ENV = "TF_NUM_INTRAOP_THREADS"
INTRA_OP_THREADS_DEFAULT = "1"
_THREADS_KEY = "tf_intra_op_threads"  # in what `describe` records since 2026-12-02


def default_tensorflow_threads() -> None:
    """Set TF_NUM_INTRAOP_THREADS to 1 unless it is set already."""
    os.environ.setdefault(INTRA_OP_THREADS_ENV, INTRA_OP_THREADS_DEFAULT)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or not a checkout (an installed wheel)
    return out.stdout.strip() or None


def describe(lock_file: Path = LOCK_FILE, root: Path = ROOT) -> dict[str, Any]:
    """This process's environment, as run.json and the model card record it."""
    packages = {name: v for name in PACKAGES if (v := _version(name)) is not None}
    try:
        lock_sha256 = hashlib.sha256(lock_file.read_bytes()).hexdigest()
    except OSError:
        lock_sha256 = None
    return {
        "python": platform.python_version(),
        "packages": packages,
        "lock_sha256": lock_sha256,
        "git_commit": _git_commit(root),
        "platform": platform.platform(),
        "executable": sys.executable,
        _THREADS_KEY: os.environ.get(INTRA_OP_THREADS_ENV),
    }


def differences(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What changed from `recorded` to `current`, one phrase each (none for a run recorded
    before environments were; the interpreter's path is not a difference)."""
    if not recorded:
        return []
    found = []
    for key in ("python", "lock_sha256", "git_commit", "platform"):
        if recorded.get(key) != current.get(key):
            found.append(f"{key} {recorded.get(key)} -> {current.get(key)}")
    if _THREADS_KEY in recorded and recorded[_THREADS_KEY] != current.get(_THREADS_KEY):
        found.append(
            f"{INTRA_OP_THREADS_ENV} {recorded[_THREADS_KEY]} -> {current.get(_THREADS_KEY)}"
        )
    old, new = recorded.get("packages") or {}, current.get("packages") or {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            found.append(f"{name} {old.get(name)} -> {new.get(name)}")
    return found


def who() -> dict[str, str]:
    """The operator of a command by hand (user and host), as registry and ledger lines record
    them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return {"user": user, "host": socket.gethostname()}
