"""Tests of atomic writes (files and folders) and of checking files against their records."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.core.atomic import (
    atomic_dir,
    atomic_write,
    atomic_write_text,
    file_record,
    file_sha256,
    verify_files,
)


class Killed(Exception):
    """What a writer raises to stand for a failure in the middle of a write."""


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- atomic_write / atomic_write_text -------------------------------------------------------


def test_atomic_write_writes_the_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    # Given a target in a folder that does not exist yet
    target = tmp_path / "sub" / "data.bin"
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"\x00\x01payload")

    # When it is written atomically
    returned = atomic_write(target, write)

    # Then the content is in place, written through a hidden sibling that is gone now
    assert returned == target
    assert target.read_bytes() == b"\x00\x01payload"
    assert seen[0].parent == target.parent
    assert seen[0].name.startswith(".data.bin.") and seen[0].name.endswith(".tmp")
    assert _names(target.parent) == ["data.bin"]


def test_atomic_write_text_replaces_an_existing_file(tmp_path: Path) -> None:
    # Given an existing file
    target = tmp_path / "notes.txt"
    target.write_text("old", encoding="utf-8")

    # When new text (not ASCII) is written over it
    atomic_write_text(target, "new: café ✓\n")

    # Then the file holds exactly the new UTF-8 text, and nothing else is in the folder
    assert target.read_bytes() == "new: café ✓\n".encode()
    assert _names(tmp_path) == ["notes.txt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    # Given an existing file
    target = tmp_path / "state.json"
    target.write_text('{"epoch": 1}', encoding="utf-8")

    def half_write(tmp: Path) -> None:
        tmp.write_text('{"epo', encoding="utf-8")
        raise Killed

    # When a writer fails half way
    with pytest.raises(Killed):
        atomic_write(target, half_write)

    # Then the old content is untouched and the temporary file was removed
    assert target.read_text(encoding="utf-8") == '{"epoch": 1}'
    assert _names(tmp_path) == ["state.json"]


def test_a_failing_first_write_creates_no_file(tmp_path: Path) -> None:
    # Given no file yet / When the writer fails before writing anything
    def fail(tmp: Path) -> None:
        raise Killed

    with pytest.raises(Killed):
        atomic_write(tmp_path / "new.txt", fail)

    # Then there is no file, not even an empty one or a temporary one
    assert _names(tmp_path) == []


# --- atomic_dir --------------------------------------------------------------------------------


def test_atomic_dir_creates_a_folder(tmp_path: Path) -> None:
    # Given no folder yet
    dest = tmp_path / "models" / "run-1"

    # When it is filled through atomic_dir
    with atomic_dir(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".run-1.")
        (tmp / "a.txt").write_text("a")

    # Then the folder holds the files, and no temporary folder is left
    assert (dest / "a.txt").read_text() == "a"
    assert _names(dest.parent) == ["run-1"]


def test_atomic_dir_replaces_an_existing_folder_whole(tmp_path: Path) -> None:
    # Given a folder with two files
    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    (dest / "kept-name.txt").write_text("old version")

    # When it is rebuilt with other files
    with atomic_dir(dest) as tmp:
        (tmp / "kept-name.txt").write_text("new version")
        (tmp / "new.txt").write_text("new")

    # Then the old folder was replaced whole: no old file survives, no temp or old folder is left
    assert _names(dest) == ["kept-name.txt", "new.txt"]
    assert (dest / "kept-name.txt").read_text() == "new version"
    assert _names(tmp_path) == ["export"]


def test_an_exception_inside_atomic_dir_leaves_the_old_folder(tmp_path: Path) -> None:
    # Given a folder with a file
    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "model.keras").write_text("the old model")

    # When a rebuild fails after writing part of the new folder
    with pytest.raises(Killed), atomic_dir(dest) as tmp:
        (tmp / "model.keras").write_text("half a new model")
        raise Killed

    # Then the old folder is untouched and the temporary folder was removed
    assert _names(dest) == ["model.keras"]
    assert (dest / "model.keras").read_text() == "the old model"
    assert _names(tmp_path) == ["export"]


# --- file_record / verify_files ----------------------------------------------------------------


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """A folder with two files and their manifest records."""
    (tmp_path / "a.bin").write_bytes(b"first file")
    (tmp_path / "b.bin").write_bytes(b"second")
    return tmp_path, {name: file_record(tmp_path / name) for name in ("a.bin", "b.bin")}


def test_file_record_is_the_size_and_sha256(recorded: tuple[Path, dict[str, dict]]) -> None:
    # Given the record of a file / Then it holds its byte count and hex sha256
    folder, files = recorded
    assert files["a.bin"] == {
        "sha256": hashlib.sha256(b"first file").hexdigest(),
        "bytes": len(b"first file"),
    }
    assert files["a.bin"]["sha256"] == file_sha256(folder / "a.bin")


def test_verify_files_of_intact_files_is_empty(recorded: tuple[Path, dict[str, dict]]) -> None:
    # Given files as recorded / When / Then nothing is reported
    folder, files = recorded
    assert verify_files(folder, files) == ""
    assert verify_files(folder, {}) == ""


def _delete(folder: Path) -> None:
    (folder / "b.bin").unlink()


def _truncate(folder: Path) -> None:
    (folder / "a.bin").write_bytes(b"first")


def _change_in_place(folder: Path) -> None:
    (folder / "b.bin").write_bytes(b"SECOND")  # same size, other bytes


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_delete, "b.bin is missing"),
        (_truncate, "a.bin has 5 bytes, expected 10"),
        (_change_in_place, "b.bin does not match its checksum"),
    ],
    ids=["missing", "wrong-size", "wrong-checksum"],
)
def test_verify_files_names_the_damaged_file(
    recorded: tuple[Path, dict[str, dict]], damage: Callable[[Path], None], reason: str
) -> None:
    # Given a recorded file deleted, truncated, or changed without changing its size
    folder, files = recorded
    damage(folder)

    # When / then the reason names the file and what is wrong with it
    assert verify_files(folder, files) == reason
