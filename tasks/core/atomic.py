"""Atomic file writes (temporary name in the same folder, fsync, rename) and their checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def fsync_dir(path: Path) -> None:
    """Persist a rename inside `path` (POSIX needs the directory itself synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling, fsync it, then rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, content: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(content, encoding="utf-8"))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, int | str]:
    """The manifest entry of a written file: its sha256 and size (`verify_files` checks both)."""
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def verify_files(folder: Path, files: dict[str, dict]) -> str:
    """ "" if every file of a manifest's `files` matches its record, else what does not.

    Sizes are compared first, so a truncated file is named without being hashed.
    """
    for name, record in files.items():
        f = folder / name
        if not f.exists():
            return f"{name} is missing"
        if f.stat().st_size != record["bytes"]:
            return f"{name} has {f.stat().st_size} bytes, expected {record['bytes']}"
        if file_sha256(f) != record["sha256"]:
            return f"{name} does not match its checksum"
    return ""


def verified_manifest(folder: Path, name: str = "manifest.json") -> tuple[dict | None, str]:
    """(the folder's manifest, "") if it reads and every file it lists verifies, else (None,
    what is wrong): the manifest missing (an incomplete folder), unreadable, or a file damaged."""
    try:
        manifest = json.loads((folder / name).read_text())
        damage = verify_files(folder, manifest["files"])
    except FileNotFoundError:
        return None, f"{name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{name} is unreadable ({exc})"
    return (None, damage) if damage else (manifest, "")


def reuse_verified(
    folder: Path, load: Callable[[Path], T | None], what: str, progress: Callable[[str], None]
) -> T | None:
    """`load(folder)` (None unless the folder is complete and verifies), saying when it is
    reused: content-addressed folders are the pipeline's caches, rebuilt only when needed."""
    existing = load(folder)
    if existing is not None:
        progress(f"reusing {what} {folder}")
    return existing


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `dest` to fill; then fsync it and rename it onto `dest`.

    On any error the temporary folder is removed and `dest` is left as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        # Every file and folder inside (a SavedModel has subfolders), deepest first.
        for path in sorted(tmp.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                fsync_dir(path)
            else:
                with path.open("rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, dest: Path) -> None:
    """Rename the finished folder `tmp` onto `dest`, replacing an older `dest` if present.

    POSIX cannot rename over a non-empty folder, so the old one is moved aside first and put
    back if the second rename fails.
    """
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except BaseException:
            os.rename(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, dest)
    fsync_dir(dest.parent)
