"""Tests of the ingest stage's Prefect task, run inside a tiny flow on the test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from tasks.core.atomic import file_sha256
from tasks.ingest.steps import ingest_incoming
from tasks.ingest.validate import text_keys
from tests.imdb_fixtures import run_in_flow, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_server")

LEAK = "A review of the test split."


def test_sources_are_fetched_and_ingested_and_the_files_published(tmp_path: Path) -> None:
    # Given a provider's file (one row of it a test review) as a pinned source, and a file
    # dropped straight into the incoming folder
    provider = tmp_path / "provider" / "day1.jsonl"
    provider.parent.mkdir()
    provider.write_text(
        json.dumps({"text": "Loved every minute", "label": "pos"})
        + "\n"
        + json.dumps({"text": LEAK, "label": "neg"})
        + "\n",
        encoding="utf-8",
    )
    config = tiny_config(tmp_path, incoming_sources=(f"{provider}#sha256={file_sha256(provider)}",))
    config.incoming_path.mkdir(parents=True)
    (config.incoming_path / "dropped.csv").write_text("text,label\nSo dull,neg\n")

    # When the task runs in a flow
    def reference() -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(text_keys([LEAK])), frozenset(text_keys(["known"]))

    report = run_in_flow(ingest_incoming, config, reference)

    # Then both files are ingested into the data folder
    assert [(f.name, f.status, f.accepted_rows, f.rejected_rows) for f in report.files] == [
        ("day1.jsonl", "quarantined", 1, 1),
        ("dropped.csv", "accepted", 1, 0),
    ]
    assert report.files[0].reasons == {"test_leak": 1}
    assert (config.incoming_path / "day1.jsonl").read_bytes() == provider.read_bytes()
    data_dir = config.data_dir.resolve()
    assert {f.path.parent for f in report.accepted} == {data_dir / "accepted"}
    # And a table artifact lists each file and what was done with it
    artifact = Artifact.get("incoming-data")
    assert artifact is not None
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [(r["file"], r["status"], r["accepted"], r["rejected"]) for r in rows] == [
        ("day1.jsonl", "quarantined", 1, 1),
        ("dropped.csv", "accepted", 1, 0),
    ]
    assert rows[0]["reasons"] == "test_leak 1"
    assert rows[0]["sha256"] == report.files[0].sha256[:12]

    # When it runs again
    def unused() -> tuple[frozenset[str], frozenset[str]]:
        raise AssertionError("keys are needed only when a file is new")

    again = run_in_flow(ingest_incoming, config, unused)

    # Then nothing is ingested twice, and the data is the same
    assert {f.status for f in again.files} == {"already ingested"}
    assert again.accepted == report.accepted


def test_missing_incoming_folder_is_no_new_files(tmp_path: Path) -> None:
    # Given a config whose incoming folder does not exist and no sources
    config = tiny_config(tmp_path, incoming_dir=tmp_path / "drop")

    # When the task runs
    report = run_in_flow(ingest_incoming, config, lambda: (frozenset(), frozenset()))

    # Then it finds no files, and the folder now exists, empty
    assert report.files == () and report.accepted == ()
    assert (tmp_path / "drop").is_dir() and list((tmp_path / "drop").iterdir()) == []
