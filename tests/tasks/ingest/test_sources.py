"""Tests of fetching incoming review files from paths, file:// URLs and a local HTTP server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.data.download import FetchError
from tasks.ingest.sources import fetch_incoming
from tests.tasks.data.test_fetch import FakeServer, serving

BODY = b'{"text": "A fine film", "label": "pos"}\n{"text": "Dull", "label": "neg"}\n'
FAST = {"backoff_s": 0.01, "timeout_s": 5.0}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "provider" / "reviews-2026-11-26.jsonl"
    path.parent.mkdir()
    path.write_bytes(BODY)
    return path


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """The data tests' scriptable HTTP server on 127.0.0.1, serving BODY at any path."""
    with serving(BODY) as state:
        yield state


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("form", ["path", "file-url", "pinned"])
def test_local_source_is_copied_into_incoming(tmp_path: Path, user_file: Path, form: str) -> None:
    # Given a local file named by path or file:// URL, optionally with its checksum
    source = {
        "path": str(user_file),
        "file-url": user_file.as_uri(),
        "pinned": f"{user_file}#sha256={sha(BODY).upper()}",
    }[form]
    incoming = tmp_path / "incoming"
    lines: list[str] = []

    # When it is fetched
    paths = fetch_incoming([source], incoming, log=lines.append)

    # Then a copy lies in incoming under its name, and the original is untouched
    assert paths == [incoming / user_file.name]
    assert paths[0].read_bytes() == BODY and user_file.read_bytes() == BODY
    assert names(incoming) == [user_file.name]
    assert any("fetched" in line and sha(BODY) in line for line in lines)


def test_checksum_mismatch_leaves_nothing_in_incoming(tmp_path: Path, user_file: Path) -> None:
    incoming = tmp_path / "incoming"
    wrong = "0" * 64
    with pytest.raises(FetchError) as info:
        fetch_incoming([f"{user_file}#sha256={wrong}"], incoming, log=print)
    message = str(info.value)
    assert str(user_file) in message and wrong in message and sha(BODY) in message
    assert names(incoming) == []


def test_file_already_there_with_the_checksum_is_not_fetched_again(
    tmp_path: Path, user_file: Path
) -> None:
    # Given the file already fetched
    incoming = tmp_path / "incoming"
    source = f"{user_file}#sha256={sha(BODY)}"
    [path] = fetch_incoming([source], incoming, log=print)
    mtime = path.stat().st_mtime_ns

    # When it is fetched again, even with its source gone
    user_file.unlink()
    lines: list[str] = []
    assert fetch_incoming([source], incoming, log=lines.append) == [path]

    # Then the file there is kept as it was
    assert path.stat().st_mtime_ns == mtime and path.read_bytes() == BODY
    assert any("already there" in line for line in lines)


def test_without_a_checksum_the_file_is_fetched_again(tmp_path: Path, user_file: Path) -> None:
    incoming = tmp_path / "incoming"
    fetch_incoming([str(user_file)], incoming, log=print)
    user_file.write_bytes(b'{"text": "new", "label": "pos"}\n')
    [path] = fetch_incoming([str(user_file)], incoming, log=print)
    assert path.read_bytes() == b'{"text": "new", "label": "pos"}\n'


def test_http_source_is_downloaded(tmp_path: Path, server: FakeServer) -> None:
    # Given a URL on a local HTTP server, pinned by its checksum, and a server error first
    server.actions = ["500"]
    url = f"{server.base_url}/exports/day%201.jsonl"
    incoming = tmp_path / "incoming"

    # When it is fetched
    paths = fetch_incoming([f"{url}#sha256={sha(BODY)}"], incoming, log=print, **FAST)

    # Then it lands under the URL's file name, after a retry, with no .part left
    assert paths == [incoming / "day 1.jsonl"]
    assert paths[0].read_bytes() == BODY
    assert names(incoming) == ["day 1.jsonl"]
    assert len(server.requests) == 2


def test_http_checksum_mismatch_leaves_nothing(tmp_path: Path, server: FakeServer) -> None:
    incoming = tmp_path / "incoming"
    url = f"{server.base_url}/r.jsonl"
    with pytest.raises(FetchError, match="checksum mismatch for http://127.0.0.1"):
        fetch_incoming([f"{url}#sha256={'1' * 64}"], incoming, log=print, **FAST)
    assert names(incoming) == []


def test_http_not_found_fails(tmp_path: Path, server: FakeServer) -> None:
    server.actions = ["404"]
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_incoming([f"{server.base_url}/gone.jsonl"], tmp_path / "in", log=print, **FAST)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("ftp://example.com/r.jsonl", "unsupported source scheme 'ftp'"),
        ("{missing}", "incoming source not found"),
        ("{dir}", "not a regular file"),
        ("{missing}#md5=abc", "expected '#sha256=<hex>'"),
        ("{missing}#sha256=abc", "not a valid sha256"),
        ("https://example.com/", "no file name"),
        ("file://remote-host/r.jsonl", "remote host"),
    ],
)
def test_bad_sources_are_named(tmp_path: Path, source: str, message: str) -> None:
    source = source.format(missing=tmp_path / "missing.jsonl", dir=tmp_path)
    with pytest.raises(FetchError, match=message):
        fetch_incoming([source], tmp_path / "incoming", log=print)
    assert not (tmp_path / "incoming").exists() or names(tmp_path / "incoming") == []


def test_two_sources_with_the_same_name_are_refused(tmp_path: Path, user_file: Path) -> None:
    other = tmp_path / "elsewhere" / user_file.name
    other.parent.mkdir()
    other.write_bytes(b"")
    with pytest.raises(FetchError, match="would both be saved as reviews-2026-11-26.jsonl"):
        fetch_incoming([str(user_file), str(other)], tmp_path / "incoming", log=print)
    assert not (tmp_path / "incoming").exists()


def test_no_sources_fetch_nothing(tmp_path: Path) -> None:
    assert fetch_incoming([], tmp_path / "incoming", log=print) == []


def test_with_on_error_a_failing_source_is_reported_and_the_others_fetched(
    tmp_path: Path, user_file: Path
) -> None:
    # Given a source that is missing and one that is fine
    incoming = tmp_path / "incoming"
    failures: list[FetchError] = []

    # When they are fetched with an error handler (what the nightly does)
    fetched = fetch_incoming(
        [str(tmp_path / "gone.jsonl"), str(user_file)],
        incoming,
        log=lambda _: None,
        on_error=failures.append,
    )

    # Then the missing one is reported, not raised, and the good one is fetched
    assert [p.name for p in fetched] == [user_file.name]
    assert len(failures) == 1 and "gone.jsonl" in str(failures[0])
    assert sorted(p.name for p in incoming.iterdir()) == [user_file.name]
