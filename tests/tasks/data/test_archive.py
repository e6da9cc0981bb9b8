"""Behaviour tests for tasks.data.archive.iter_members on real gzip tar files."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path

import pytest

from tasks.data.archive import ArchiveError, iter_members


def _everything(_: str) -> bool:
    return True


def _tar_bytes(
    members: dict[str, bytes],
    fmt: int = tarfile.GNU_FORMAT,
    dirs: tuple[str, ...] = (),
    links: dict[str, str] | None = None,
) -> bytes:
    """An uncompressed tar holding `members` (in order), plus directories and symlinks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_gz(path: Path, raw: bytes, level: int = 6) -> Path:
    path.write_bytes(gzip.compress(raw, compresslevel=level))
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A .tar.gz with several members of various sizes (enough to cut and corrupt)."""
    rng = random.Random(7)
    members = {
        f"aclImdb/train/pos/{i}_9.txt": " ".join(
            rng.choice(["great", "film", "the", "plot"]) for _ in range(200 + i)
        ).encode()
        for i in range(40)
    }
    return _write_gz(tmp_path / "a.tar.gz", _tar_bytes(members))


# --- reading ---------------------------------------------------------------------------------


def test_yields_only_wanted_regular_files_with_their_contents(tmp_path: Path) -> None:
    # Given an archive with directories, a symlink and files of awkward sizes
    members = {
        "top/a.txt": b"alpha",
        "top/empty.txt": b"",
        "top/skip.bin": b"\x00" * 700,
        "top/block.txt": b"b" * 512,
        "top/block_plus_one.txt": b"c" * 513,
        "top/sub/z.txt": "zé\n".encode(),
    }
    raw = _tar_bytes(members, dirs=("top", "top/sub"), links={"top/link.txt": "a.txt"})
    path = _write_gz(tmp_path / "m.tar.gz", raw)

    # When only the .txt names are wanted
    got = list(iter_members(path, lambda name: name.endswith(".txt")))

    # Then exactly the regular .txt files come back, in archive order, byte for byte
    expected = [(n, d) for n, d in members.items() if n.endswith(".txt")]
    assert got == expected


def test_want_is_asked_about_every_member_name(tmp_path: Path) -> None:
    # Given an archive with two files
    path = _write_gz(tmp_path / "m.tar.gz", _tar_bytes({"x/1.txt": b"1", "x/2.txt": b"2"}))
    asked: list[str] = []

    # When nothing is wanted
    got = list(iter_members(path, lambda name: asked.append(name) or False))

    # Then nothing is yielded but every file name was offered
    assert got == []
    assert asked == ["x/1.txt", "x/2.txt"]


def test_large_members_across_read_chunks(tmp_path: Path) -> None:
    # Given a member several MiB long (incompressible) followed by a small one
    big = random.Random(0).randbytes(5 * (1 << 20) + 123)
    raw = _tar_bytes({"big.bin": big, "after.txt": b"still here"})
    path = _write_gz(tmp_path / "big.tar.gz", raw, level=1)

    # When both are read
    got = dict(iter_members(path, _everything))

    # Then both are complete and intact
    assert got["big.bin"] == big
    assert got["after.txt"] == b"still here"


def test_skipped_members_across_read_chunks(tmp_path: Path) -> None:
    # Given unwanted members several MiB long around small wanted ones
    rng = random.Random(1)
    members = {
        "skip/1.bin": rng.randbytes(3 * (1 << 20) + 5),
        "keep/a.txt": b"first",
        "skip/2.bin": rng.randbytes(6 * (1 << 20) + 511),
        "keep/b.txt": b"second",
    }
    path = _write_gz(tmp_path / "skips.tar.gz", _tar_bytes(members), level=1)

    # When only the small ones are wanted
    got = list(iter_members(path, lambda name: name.startswith("keep/")))

    # Then exactly they come back, intact
    assert got == [("keep/a.txt", b"first"), ("keep/b.txt", b"second")]


LONG_SPLITTABLE = "aclImdb/" + "d" * 120 + "/" + "f" * 60 + ".txt"  # fits ustar's prefix field
LONG_UNSPLITTABLE = "aclImdb/" + "x" * 300 + ".txt"
LONG_UNICODE = "aclImdb/" + "é" * 80 + "/review.txt"  # > 100 bytes once UTF-8 encoded


@pytest.mark.parametrize(
    ("fmt", "names"),
    [
        (tarfile.GNU_FORMAT, [LONG_SPLITTABLE, LONG_UNSPLITTABLE, LONG_UNICODE]),
        (tarfile.PAX_FORMAT, [LONG_SPLITTABLE, LONG_UNSPLITTABLE, LONG_UNICODE]),
        (tarfile.USTAR_FORMAT, [LONG_SPLITTABLE]),
    ],
    ids=["gnu", "pax", "ustar-prefix"],
)
def test_long_names(tmp_path: Path, fmt: int, names: list[str]) -> None:
    # Given members with names longer than the 100-byte header field, mixed with short ones
    members: dict[str, bytes] = {}
    for i, name in enumerate(names):
        members[name] = f"long {i}".encode()
        members[f"short/{i}.txt"] = f"short {i}".encode()
    path = _write_gz(tmp_path / "long.tar.gz", _tar_bytes(members, fmt=fmt))

    # When all members are read
    got = list(iter_members(path, _everything))

    # Then every name is complete, and a long name never sticks to the member after it
    assert got == list(members.items())


def test_long_name_of_an_unwanted_member_does_not_leak(tmp_path: Path) -> None:
    # Given an unwanted long-named member right before a wanted short one
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        members = {LONG_UNSPLITTABLE: b"skip me", "keep.txt": b"keep"}
        path = _write_gz(tmp_path / f"leak{fmt}.tar.gz", _tar_bytes(members, fmt=fmt))

        # When only keep.txt is wanted
        got = list(iter_members(path, lambda name: name == "keep.txt"))

        # Then it comes back under its own name
        assert got == [("keep.txt", b"keep")]


def test_pax_header_with_other_records(tmp_path: Path) -> None:
    # Given a pax archive whose extended header holds more than the path
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(LONG_UNSPLITTABLE)
        info.size = 4
        info.pax_headers = {"comment": "a = b with spaces", "mtime": "1.5"}
        tar.addfile(info, io.BytesIO(b"data"))
    path = _write_gz(tmp_path / "pax.tar.gz", buffer.getvalue())

    # When read
    # Then the path record is found among the others
    assert list(iter_members(path, _everything)) == [(LONG_UNSPLITTABLE, b"data")]


# --- damaged or foreign files ------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.9, -1, -8], ids=str)
def test_truncated_archive(tmp_path: Path, archive: Path, keep: float) -> None:
    # Given the archive cut short (a fraction of it, or its last bytes missing)
    data = archive.read_bytes()
    cut = int(len(data) * keep) if keep > 0 else len(data) + int(keep)
    archive.write_bytes(data[:cut])

    # When it is read to the end
    # Then a clear ArchiveError says it is truncated and names the file
    with pytest.raises(ArchiveError, match="truncated") as info:
        list(iter_members(archive, _everything))
    assert str(archive) in str(info.value)


@pytest.mark.parametrize("wanted", [True, False], ids=["wanted", "skipped"])
@pytest.mark.parametrize("where", ["inside-member", "between-members"])
def test_tar_cut_short_inside_a_complete_gzip(tmp_path: Path, where: str, wanted: bool) -> None:
    # Given a complete gzip stream whose tar content stops early
    raw = _tar_bytes({"a.txt": b"a" * 2000, "b.txt": b"b" * 10})
    cut = 512 + 1000 if where == "inside-member" else 512 + 2048
    path = _write_gz(tmp_path / "short.tar.gz", raw[:cut])

    # When it is read, the members wanted or passed over
    # Then it is reported as truncated either way
    with pytest.raises(ArchiveError, match="truncated"):
        list(iter_members(path, lambda _: wanted))


def test_corrupt_bytes_in_the_middle(tmp_path: Path, archive: Path) -> None:
    # Given the archive with a run of bytes overwritten halfway through
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 32] = bytes(b ^ 0x5A for b in data[middle : middle + 32])
    archive.write_bytes(bytes(data))

    # When / then reading it fails with an ArchiveError naming the file
    with pytest.raises(ArchiveError, match="corrupt") as info:
        list(iter_members(archive, _everything))
    assert str(archive) in str(info.value)


def test_damaged_checksum_trailer_is_detected(tmp_path: Path, archive: Path) -> None:
    # Given an archive whose content is intact but whose gzip CRC no longer matches
    data = bytearray(archive.read_bytes())
    data[-8] ^= 0xFF
    archive.write_bytes(bytes(data))

    # When / then reading all of it fails, even though every member decompressed
    with pytest.raises(ArchiveError, match="corrupt"):
        list(iter_members(archive, _everything))


@pytest.mark.parametrize("field", ["size", "magic"])
def test_damaged_tar_header(tmp_path: Path, field: str) -> None:
    # Given a valid gzip stream whose second tar header is garbled
    raw = bytearray(_tar_bytes({"a.txt": b"a" * 10, "b.txt": b"b" * 10}))
    second = 1024  # header 512 + one padded block of content
    if field == "size":
        raw[second + 124 : second + 136] = b"12x\xff45670000"
    else:
        raw[second + 257 : second + 262] = b"XXXXX"
    path = _write_gz(tmp_path / "hdr.tar.gz", bytes(raw))

    # When / then it is an ArchiveError about a damaged header, not a stray ValueError
    with pytest.raises(ArchiveError, match="damaged tar header"):
        list(iter_members(path, _everything))


@pytest.mark.parametrize("size", [20, 5000], ids=["shorter-than-a-block", "several-blocks"])
def test_gzip_of_non_tar_data(tmp_path: Path, size: int) -> None:
    # Given gzip-compressed text that is not a tar archive
    path = _write_gz(tmp_path / "text.tar.gz", (b"plain words " * size)[:size])

    # When / then it is rejected as not a tar archive
    with pytest.raises(ArchiveError, match="not a tar archive"):
        list(iter_members(path, _everything))


def test_plain_file_that_is_not_gzip(tmp_path: Path) -> None:
    # Given an uncompressed file (here an HTML error page saved under the archive's name)
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(b"<html><body>302 Found</body></html>\n" * 50)

    # When / then it is a clear ArchiveError naming the file
    with pytest.raises(ArchiveError, match="not a gzip-compressed file") as info:
        list(iter_members(path, _everything))
    assert str(path) in str(info.value)


def test_uncompressed_tar_is_not_accepted_as_gzip(tmp_path: Path) -> None:
    # Given a valid but uncompressed tar file
    path = tmp_path / "plain.tar.gz"
    path.write_bytes(_tar_bytes({"a.txt": b"a"}))

    # When / then it is rejected as not gzip-compressed
    with pytest.raises(ArchiveError, match="not a gzip-compressed file"):
        list(iter_members(path, _everything))


def test_empty_file(tmp_path: Path) -> None:
    # Given an empty file (an interrupted download)
    path = tmp_path / "empty.tar.gz"
    path.write_bytes(b"")

    # When / then it is an ArchiveError, which is also a ValueError for generic callers
    with pytest.raises(ArchiveError, match="truncated") as info:
        list(iter_members(path, _everything))
    assert isinstance(info.value, ValueError)
