"""Held files: out of every data version until an operator releases or rejects them; each
decision recorded in the ledger, carried out by one rename, and finished after a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from tasks.data.accepted import read_accepted
from tasks.ingest import held, ledger
from tasks.ingest.batch import Check
from tests.tasks.ingest.test_ingest import Log, good_rows, run, snapshot, write_jsonl


def all_positive_fails(rows: pa.Table) -> list[Check]:
    """A judge failing a file whose labels are all positive."""
    share = sum(rows.column("label").to_pylist()) / rows.num_rows
    ok = share < 1.0
    return [Check("label_balance", share, 0.5, 0.7, 0.0 if not ok else 1.0, ok, f"{share:.0%}")]


def one_sided(n: int, start: int) -> list[dict]:
    return [{**r, "label": "pos"} for r in good_rows(n, start=start, seed=start)]


@pytest.fixture
def night(tmp_path: Path) -> tuple[Path, Path]:
    """A first ingest of a good file and an all-positive one, which is held."""
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    write_jsonl(incoming / "good.jsonl", good_rows(6))
    write_jsonl(incoming / "skewed.jsonl", one_sided(4, start=100))
    report = run(incoming, data, judge=all_positive_fails)
    assert [f.status for f in report.files] == ["accepted", "held"]
    return incoming, data


def test_a_held_file_is_kept_out_of_the_data_and_its_checks_are_recorded(
    night: tuple[Path, Path],
) -> None:
    incoming, data = night
    # Then the held rows wait in held/, not among the accepted files, and the ledger says why
    entries = ledger.read_ledger(data / "quarantine")
    skewed = next(e for e in entries.values() if e.name == "skewed.jsonl")
    assert skewed.status == "held" and skewed.summary["checks"][0]["passed"] is False
    assert (data / "held" / skewed.sha256[:16] / "rows.parquet").is_file()
    assert not (data / "accepted" / skewed.sha256[:16]).exists()

    # When the next ingest sees the same files
    log = Log()
    report = run(incoming, data, log, judge=all_positive_fails)

    # Then the held file is still held (waiting, not judged again), and only good.jsonl is data
    good, still = report.files
    assert good.status == "already ingested"
    assert (still.status, still.waiting, still.held_rows) == ("held", True, 4)
    assert [f.name for f in report.accepted] == ["good.jsonl"]
    assert any("still held" in line for line in log.progress)


def test_held_rows_count_as_known_so_a_copy_of_them_is_a_duplicate(
    night: tuple[Path, Path],
) -> None:
    incoming, data = night
    # Given a new file repeating a held review
    copy = one_sided(4, start=100)[:1] + good_rows(2, start=200, seed=3)
    write_jsonl(incoming / "copy.jsonl", copy)

    # When it is ingested, then that row is a duplicate of the held one
    files = run(incoming, data, judge=all_positive_fails).files
    new = next(f for f in files if f.name == "copy.jsonl")
    assert new.reasons == {"duplicate_text": 1} and new.accepted_rows == 2


def test_release_puts_the_rows_in_the_next_data_version_and_records_who(
    night: tuple[Path, Path],
) -> None:
    incoming, data = night
    # When an operator releases the held file by name, with a reason
    entry = held.decide(data, "skewed.jsonl", ledger.RELEASE, "all-positive batch is genuine")

    # Then it is released, the decision names who, when and why, and its rows are accepted
    assert entry["status"] == "released"
    (decision,) = entry["decisions"]
    assert decision["action"] == "release" and decision["reason"].startswith("all-positive")
    assert decision["user"] and decision["host"] and decision["at"]
    report = run(incoming, data, judge=all_positive_fails)
    assert sorted(f.name for f in report.accepted) == ["good.jsonl", "skewed.jsonl"]
    assert read_accepted(report.accepted).num_rows == 10
    assert report.files[1].status == "already ingested"
    # And the list shows it as released
    (listed,) = held.list_incoming(data, "released")
    assert listed["file"] == "skewed.jsonl" and listed["decisions"] == [decision]


def test_reject_keeps_the_rows_out_for_ever(night: tuple[Path, Path]) -> None:
    incoming, data = night
    sha = held.list_incoming(data, "held")[0]["sha256"]

    # When an operator rejects it by the start of its sha256
    entry = held.decide(data, sha[:8], ledger.REJECT, None)

    # Then it is rejected, its rows kept in rejected/, and no later ingest uses them
    assert entry["status"] == "rejected"
    assert (data / "rejected" / sha[:16] / "rows.parquet").is_file()
    report = run(incoming, data, judge=all_positive_fails)
    assert [f.name for f in report.accepted] == ["good.jsonl"]
    assert report.files[1].status == "rejected"


def test_a_decision_on_a_file_that_is_not_held_changes_nothing(
    night: tuple[Path, Path],
) -> None:
    _, data = night
    before = snapshot(data)
    with pytest.raises(held.IncomingError, match="good.jsonl .* is not held: it is accepted"):
        held.decide(data, "good.jsonl", ledger.RELEASE, None)
    with pytest.raises(held.IncomingError, match="no ingested file named 'nope.jsonl'"):
        held.decide(data, "nope.jsonl", ledger.REJECT, None)
    with pytest.raises(held.IncomingError, match="unknown status 'waiting'"):
        held.list_incoming(data, "waiting")
    # And releasing twice is refused the second time
    held.decide(data, "skewed.jsonl", ledger.RELEASE, None)
    with pytest.raises(held.IncomingError, match="is not held: it is released"):
        held.decide(data, "skewed.jsonl", ledger.RELEASE, None)
    assert {k for k in snapshot(data) if k.startswith("accepted/")} > {
        k for k in before if k.startswith("accepted/")
    }


def test_two_files_matching_a_name_must_be_told_apart_by_sha256(
    night: tuple[Path, Path],
) -> None:
    incoming, data = night
    # Given a second, different file ingested under the same name
    (incoming / "skewed.jsonl").unlink()
    write_jsonl(incoming / "skewed.jsonl", one_sided(3, start=300))
    run(incoming, data, judge=all_positive_fails)

    # Then the name alone is ambiguous, and the message lists both checksums
    with pytest.raises(held.IncomingError, match="matches 2 files"):
        held.decide(data, "skewed.jsonl", ledger.REJECT, None)


def test_a_release_killed_before_its_rename_is_finished_by_the_next_ingest(
    night: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    incoming, data = night
    # Given a release killed after its ledger record, before the folder moved
    real_replace = os.replace

    def killed(src, dst, *args, **kwargs):
        if str(src).startswith(str(data / "held")):
            raise OSError("killed")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(held.os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        held.decide(data, "skewed.jsonl", ledger.RELEASE, "ok")
    monkeypatch.undo()
    sha = next(
        e.sha256
        for e in ledger.read_ledger(data / "quarantine").values()
        if e.name == "skewed.jsonl"
    )
    assert (data / "held" / sha[:16]).is_dir()

    # When the next ingest runs
    log = Log()
    report = run(incoming, data, log, judge=all_positive_fails)

    # Then it carried the release out first: the rows are data, recorded once
    assert "skewed.jsonl" in [f.name for f in report.accepted]
    assert any("carried out the operator's recorded decision" in line for line in log.progress)
    summary = json.loads(
        next((data / "quarantine").glob("skewed.jsonl.*.summary.json")).read_text()
    )
    assert [d["action"] for d in summary["decisions"]] == ["release"]


def test_the_incoming_commands_print_json_and_exit_non_zero_on_errors(
    night: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    _, data = night
    flags = ["--data-dir", str(data), "--json"]
    # When the operator lists the held files
    assert main(["incoming", "list", "--status", "held", *flags]) == 0
    captured = capsys.readouterr()
    (listed,) = json.loads(captured.out.splitlines()[-1])["files"]
    # Then the held file is there with its failed check, also in the printed line
    assert (listed["file"], listed["failed_checks"]) == ("skewed.jsonl", ["label_balance"])
    assert "held" in captured.err and "failed: label_balance" in captured.err

    # When they reject it with a reason, then the JSON line is the ledger's record
    assert main(["incoming", "reject", "skewed.jsonl", "--reason", "labels flipped", *flags]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (out["ok"], out["status"], out["decisions"][0]["reason"]) == (
        True,
        "rejected",
        "labels flipped",
    )

    # When a release names a file that is not held, then one clear line and exit 1
    assert main(["incoming", "release", "skewed.jsonl", *flags]) == 1
    captured = capsys.readouterr()
    assert "is not held: it is rejected" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["ok"] is False
