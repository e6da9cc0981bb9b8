"""Tests of ingesting a folder of incoming labelled-review files into accepted and quarantine."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data.accepted import load_accepted, read_accepted
from tasks.ingest import ingest as ingest_module
from tasks.ingest import ledger as ledger_module
from tasks.ingest.ingest import IngestedFile, IngestReport, ingest_folder
from tasks.ingest.validate import text_keys
from tests.imdb_fixtures import review_text

LEAK = "This review is in the archive's test split, word for word."
MAX_CHARS = 2000


def good_rows(n: int, start: int = 0, seed: int = 0) -> list[dict]:
    """`n` distinct valid rows (labels alternate pos/neg)."""
    rng = random.Random(seed)
    return [
        {
            "text": f"Review {start + i}. " + review_text(rng, i % 2 == 0),
            "label": ("neg", "pos")[i % 2],
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file under `folder`: equal snapshots mean nothing written."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Log:
    """Collects progress and warning lines."""

    def __init__(self) -> None:
        self.progress: list[str] = []
        self.warnings: list[str] = []


def run(incoming: Path, data: Path, log: Log | None = None, **kwargs) -> IngestReport:
    log = log or Log()
    settings = {"leak_keys": frozenset(text_keys([LEAK])), "max_chars": MAX_CHARS, **kwargs}
    return ingest_folder(
        incoming, data, progress=log.progress.append, warn=log.warnings.append, **settings
    )


def quarantined(data: Path, name: str) -> list[dict]:
    [path] = (data / "quarantine").glob(f"{name}.*.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def summary(file: IngestedFile) -> dict:
    assert file.report is not None
    return json.loads(file.report.read_text(encoding="utf-8"))


# --- one file, five bad rows --------------------------------------------------------------------


def test_exactly_the_five_bad_rows_are_quarantined(tmp_path: Path) -> None:
    # Given a file of 20 good rows and five bad ones among them: an empty text, an unknown
    # label, a duplicate of an earlier row (differing in case, spacing and <br />), a text over
    # the size limit, and the text of a test review
    rows = good_rows(20)
    first = rows[0]["text"]
    bad = {
        4: {"id": "e1", "text": "  \n ", "label": "pos"},
        8: {"text": "An honest review", "label": "maybe"},
        12: {"text": "  " + first.upper().replace(" ", "  <br />", 3) + " ", "label": "neg"},
        16: {"text": "long " * 500, "label": "pos"},
        20: {"text": LEAK.lower(), "label": "neg"},
    }
    for line, row in bad.items():
        rows.insert(line - 1, row)
    incoming = tmp_path / "incoming"
    source = write_jsonl(incoming / "reviews-2026-11-26.jsonl", rows)
    before = source.read_bytes()
    data = tmp_path / "data"
    log = Log()

    # When the folder is ingested
    report = run(incoming, data, log)

    # Then exactly those five rows are quarantined, each with its reason
    [file] = report.files
    assert (file.name, file.status, file.accepted_rows, file.rejected_rows) == (
        "reviews-2026-11-26.jsonl",
        "quarantined",
        20,
        5,
    )
    assert file.reasons == {
        "empty_text": 1,
        "too_long": 1,
        "unknown_label": 1,
        "test_leak": 1,
        "duplicate_text": 1,
    }
    rejected = quarantined(data, "reviews-2026-11-26.jsonl")
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (4, "empty_text"),
        (8, "unknown_label"),
        (12, "duplicate_text"),
        (16, "too_long"),
        (20, "test_leak"),
    ]
    assert rejected[0]["id"] == "e1" and rejected[1]["id"] is None
    assert rejected[1]["detail"] == "label 'maybe' is not one of pos/neg/positive/negative/1/0"
    assert rejected[2]["detail"] == "text repeats line 1"
    assert rejected[3]["text"] == ("long " * 500)[:200]
    # And the 20 good rows are accepted, in a folder named by the file's checksum
    [accepted] = report.accepted
    assert accepted.sha256 == file.sha256 and accepted.rows == 20
    assert accepted.path == data / "accepted" / file.sha256[:16]
    table = read_accepted(report.accepted)
    assert table.column("text").to_pylist() == [r["text"] for r in good_rows(20)]
    assert table.column("line").to_pylist() == [n for n in range(1, 26) if n not in bad]
    # And the summary records the file as ingested
    assert (
        file.report
        == data / "quarantine" / f"reviews-2026-11-26.jsonl.{file.sha256[:12]}.summary.json"
    )
    record = summary(file)
    assert {k: record[k] for k in ("file", "sha256", "rows", "accepted", "rejected", "error")} == {
        "file": "reviews-2026-11-26.jsonl",
        "sha256": file.sha256,
        "rows": 25,
        "accepted": 20,
        "rejected": 5,
        "error": None,
    }
    assert record["reasons"] == file.reasons and record["ingested_at"]
    # And the log says what happened, and the incoming file is untouched
    assert log.progress == [
        "reviews-2026-11-26.jsonl: 20 accepted, 5 rejected (empty_text 1, too_long 1, "
        "unknown_label 1, test_leak 1, duplicate_text 1) -> "
        f"{data}/quarantine/reviews-2026-11-26.jsonl.{file.sha256[:12]}.jsonl"
    ]
    assert log.warnings == []
    assert source.read_bytes() == before and [p.name for p in incoming.iterdir()] == [source.name]


def test_files_of_every_format_are_accepted_in_name_order(tmp_path: Path) -> None:
    # Given a CSV, a JSONL and a parquet file, the parquet one repeating a review of the CSV
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.csv").write_text(
        'id,text,label,rating\nc1,"Fine, really\nfine",Positive,8\nc2,Dull,0,\n', encoding="utf-8"
    )
    write_jsonl(incoming / "b.jsonl", [{"text": "Superb acting", "label": 1, "movie": "tt0000007"}])
    pq.write_table(
        pa.table({"text": ["fine, REALLY fine", "Boring plot"], "label": ["pos", "NEG"]}),
        incoming / "c.parquet",
    )

    # When the folder is ingested
    report = run(incoming, tmp_path / "data")

    # Then every file is ingested in name order, and the repeat is found across files
    assert [(f.name, f.status, f.accepted_rows, f.rejected_rows) for f in report.files] == [
        ("a.csv", "accepted", 2, 0),
        ("b.jsonl", "accepted", 1, 0),
        ("c.parquet", "quarantined", 1, 1),
    ]
    assert report.files[2].reasons == {"duplicate_text": 1}
    assert [f.sha256 for f in report.accepted] == sorted(f.sha256 for f in report.files)
    table = read_accepted(report.accepted)
    by_text = {r["text"]: r for r in table.to_pylist()}
    assert (
        by_text["Fine, really\nfine"]["id"] == "c1" and by_text["Fine, really\nfine"]["rating"] == 8
    )
    assert by_text["Superb acting"]["movie"] == "tt0000007"
    assert by_text["Boring plot"]["label"] == 0
    # And an accepted file's summary is written too, with nothing rejected
    assert summary(report.files[0])["rejected"] == 0


# --- duplicates across ingests ------------------------------------------------------------------


def test_duplicates_of_earlier_ingests_and_of_known_reviews_are_rejected(tmp_path: Path) -> None:
    # Given a first file already ingested
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    first_rows = [{**r, "id": f"first-{i}"} for i, r in enumerate(good_rows(3))]
    write_jsonl(incoming / "day1.jsonl", first_rows)
    known_text = "A review from the archive's training set."
    known = frozenset(text_keys([known_text]))
    first = run(incoming, data, known_keys=known)

    # When a second file comes with a repeat of its text, one of its ids, a training review
    # of the archive and one new review
    write_jsonl(
        incoming / "day2.jsonl",
        [
            {"text": first_rows[1]["text"].upper(), "label": "pos"},
            {"id": "first-2", "text": "A brand new text", "label": "pos"},
            {"text": known_text, "label": "neg"},
            {"text": "Something nobody said before", "label": "neg"},
        ],
    )
    second = run(incoming, data, known_keys=known)

    # Then only the new review is accepted
    day1, day2 = second.files
    assert day1.status == "already ingested"
    assert (day2.status, day2.accepted_rows) == ("quarantined", 1)
    assert day2.reasons == {"duplicate_id": 1, "duplicate_text": 2}
    details = [r["detail"] for r in quarantined(data, "day2.jsonl")]
    assert details == [
        "text is that of a review already in the data",
        "id 'first-2' is already in the data",
        "text is that of a review already in the data",
    ]
    # And the report lists the old and the new accepted files, sorted by checksum
    assert len(second.accepted) == 2 and set(first.accepted) < set(second.accepted)
    assert list(second.accepted) == sorted(second.accepted, key=lambda f: f.sha256)
    assert read_accepted(second.accepted).num_rows == 4


# --- unreadable files ---------------------------------------------------------------------------


def test_unreadable_files_are_quarantined_whole_and_the_others_go_on(tmp_path: Path) -> None:
    # Given a PNG named .jsonl, a CSV in Latin-1, a CSV with broken quoting and a good file
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    incoming.mkdir()
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    (incoming / "x.jsonl").write_bytes(png)
    (incoming / "latin1.csv").write_bytes(b"text,label\nfine,pos\ncaf\xe9 cr\xe8me,neg\n")
    (incoming / "quotes.csv").write_text('text,label\nok,pos\n"never closed,neg\nz,pos\n')
    write_jsonl(incoming / "good.jsonl", good_rows(3))
    log = Log()

    # When the folder is ingested
    report = run(incoming, data, log)

    # Then each bad file is quarantined whole, its error naming the file and the line
    by_name = {f.name: f for f in report.files}
    assert {n: f.status for n, f in by_name.items()} == {
        "good.jsonl": "accepted",
        "latin1.csv": "unreadable",
        "quotes.csv": "unreadable",
        "x.jsonl": "unreadable",
    }
    assert by_name["x.jsonl"].error == "x.jsonl:1: not UTF-8 text (byte 0x89 at offset 0)"
    assert by_name["latin1.csv"].error == "latin1.csv:3: not UTF-8 text (byte 0xe9 at offset 23)"
    assert by_name["quotes.csv"].error == "quotes.csv:3: unterminated quoted field"
    for name, original in [("x.jsonl", png), ("latin1.csv", None), ("quotes.csv", None)]:
        f = by_name[name]
        assert f.reasons == {"unreadable": 1} and f.accepted_rows == 0
        copy = data / "quarantine" / f"{name}.{f.sha256[:12]}.file"
        assert copy.read_bytes() == (incoming / name).read_bytes()
        if original is not None:
            assert copy.read_bytes() == original
        record = summary(f)
        assert record["error"] == f.error and record["reasons"] == {"unreadable": 1}
        assert any(name in w and f.error in w for w in log.warnings)
    # And the good file in the same folder is accepted
    assert [a.sha256 for a in report.accepted] == [by_name["good.jsonl"].sha256]
    assert read_accepted(report.accepted).num_rows == 3

    # When the folder is ingested again, nothing is done twice
    assert {f.status for f in run(incoming, data).files} == {"already ingested"}


def test_file_without_rows_is_recorded_with_an_error(tmp_path: Path) -> None:
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    incoming.mkdir()
    (incoming / "empty.csv").write_text("text,label\n")
    log = Log()
    [file] = run(incoming, data, log).files
    assert (file.status, file.error, file.accepted_rows, file.rejected_rows) == (
        "quarantined",
        "no rows",
        0,
        0,
    )
    assert summary(file)["error"] == "no rows"
    assert not (data / "accepted").exists()
    assert log.warnings and "empty.csv" in log.warnings[0]


def test_hidden_and_partial_files_and_subfolders_are_skipped(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / ".hidden.jsonl", good_rows(1))
    write_jsonl(incoming / "late.jsonl.part", good_rows(1))
    write_jsonl(incoming / "sub" / "deep.jsonl", good_rows(1))
    report = run(incoming, tmp_path / "data")
    assert report.files == () and report.accepted == ()


def test_missing_incoming_folder_is_no_new_files(tmp_path: Path) -> None:
    report = run(tmp_path / "nowhere", tmp_path / "data")
    assert report == IngestReport(files=(), accepted=())
    assert not (tmp_path / "nowhere").exists()


# --- ingested once ------------------------------------------------------------------------------


def test_same_file_twice_even_renamed_is_ingested_once(tmp_path: Path) -> None:
    # Given a file already ingested
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    rows = good_rows(4) + [{"text": "", "label": "pos"}]
    write_jsonl(incoming / "monday.jsonl", rows)
    first = run(incoming, data)
    before = snapshot(data)

    # When it comes again under its own name and a new one
    shutil.copyfile(incoming / "monday.jsonl", incoming / "tuesday.jsonl")
    log = Log()
    again = run(incoming, data, log)

    # Then both are "already ingested", and nothing in the data folder is written
    sha = first.files[0].sha256
    assert [(f.name, f.status, f.sha256, f.accepted_rows) for f in again.files] == [
        ("monday.jsonl", "already ingested", sha, 0),
        ("tuesday.jsonl", "already ingested", sha, 0),
    ]
    assert again.files[1].report == first.files[0].report
    assert snapshot(data) == before
    assert again.accepted == first.accepted
    assert log.progress == [
        f"monday.jsonl: already ingested (sha256 {sha[:12]}…)",
        f"tuesday.jsonl: already ingested (sha256 {sha[:12]}…)",
    ]


def test_a_copy_in_the_same_call_is_ingested_once(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", good_rows(2))
    shutil.copyfile(incoming / "a.jsonl", incoming / "b.jsonl")
    report = run(incoming, tmp_path / "data")
    assert [f.status for f in report.files] == ["accepted", "already ingested"]
    assert read_accepted(report.accepted).num_rows == 2


def test_crash_after_the_accepted_folder_then_the_next_ingest_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an ingest killed after publishing a file's accepted rows, before its summary
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    write_jsonl(incoming / "a.jsonl", good_rows(5) + [{"text": "?", "label": "x"}])
    real_write = ledger_module.atomic_write_text

    def killed_at_summary(path: Path, content: str) -> Path:
        if path.name.endswith(".summary.json"):
            raise OSError("killed")
        return real_write(path, content)

    monkeypatch.setattr(ledger_module, "atomic_write_text", killed_at_summary)
    with pytest.raises(OSError, match="killed"):
        run(incoming, data)
    monkeypatch.undo()
    [folder] = load_accepted(data / "accepted")
    assert not list((data / "quarantine").glob("*.summary.json"))
    folder_files = snapshot(folder.path)

    # When the folder is ingested again
    log = Log()
    report = run(incoming, data, log)

    # Then the file is ingested, its accepted rows reused (not rewritten, not duplicated)
    [file] = report.files
    assert (file.status, file.accepted_rows, file.rejected_rows) == ("quarantined", 5, 1)
    assert report.accepted == (folder,)
    assert snapshot(folder.path) == folder_files
    assert read_accepted(report.accepted).num_rows == 5
    assert summary(file)["accepted"] == 5
    assert any("reusing" in line for line in log.progress)
    # And a third ingest finds it ingested
    assert run(incoming, data).files[0].status == "already ingested"


def test_damaged_accepted_rows_of_an_ingested_file_are_ingested_again(tmp_path: Path) -> None:
    # Given an ingested file whose accepted rows were later damaged
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    write_jsonl(incoming / "a.jsonl", good_rows(3))
    [folder] = run(incoming, data).accepted
    folder.rows_path.write_bytes(b"garbage")

    # When the folder is ingested again
    log = Log()
    report = run(incoming, data, log)

    # Then the damage is named, and the file's rows are accepted again from the source
    assert any("damaged" in w for w in log.warnings)
    assert report.files[0].status == "accepted"
    assert load_accepted(data / "accepted") == list(report.accepted)
    assert read_accepted(report.accepted).num_rows == 3


def test_file_that_cannot_be_opened_is_tried_again_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file whose reading fails with an OS error (not a problem of its content)
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    write_jsonl(incoming / "a.jsonl", good_rows(2))

    def denied(path: Path, mode: object) -> pa.Table:
        raise PermissionError(f"permission denied: {path}")

    monkeypatch.setattr(ingest_module, "read_reviews", denied)
    log = Log()
    [file] = run(incoming, data, log).files
    monkeypatch.undo()

    # Then it is named in a warning but not recorded as ingested, so the next ingest takes it
    assert (file.status, file.report) == ("unreadable", None)
    assert "permission denied" in (file.error or "") and "a.jsonl" in log.warnings[0]
    assert run(incoming, data).files[0].status == "accepted"
