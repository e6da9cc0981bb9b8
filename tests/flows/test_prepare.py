"""End-to-end tests of the `prepare` flow and its CLI against a temporary Prefect server."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

import flows.prepare
from flows.cli import main
from flows.prepare import prepare
from tasks.config import PipelineConfig
from tasks.core.atomic import file_sha256
from tasks.data.processed import load_processed
from tests.imdb_fixtures import build_archive, mtimes

pytestmark = pytest.mark.usefixtures("prefect_server")


def _tokenize_states(flow_run_id: UUID, expected: int, timeout_s: float = 30.0) -> list[str]:
    """State names of the flow run's tokenize_reviews task runs, oldest first.

    Task runs reach the server through events, so wait until `expected` of them are final.
    """
    deadline = time.monotonic() + timeout_s
    task_filter = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(task_run_filter=task_filter)
        runs = sorted(
            (r for r in runs if r.name.startswith("tokenize_reviews")),
            key=lambda r: r.expected_start_time or r.created,
        )
        final = [r for r in runs if r.state is not None and r.state.is_final()]
        if len(final) >= expected or time.monotonic() > deadline:
            return [r.state.name for r in runs if r.state is not None]
        time.sleep(0.2)


def _run(config: PipelineConfig) -> tuple[dict, UUID]:
    state = prepare(config, return_state=True)
    assert state.is_completed(), state
    return state.result(), state.state_details.flow_run_id


def test_prepare_runs_then_is_cached_then_rebuilds(small_archive: Path, tmp_path: Path) -> None:
    # Given a config pointing at the small archive and a fresh data folder
    data_dir = tmp_path / "data"
    config = PipelineConfig(
        source=str(small_archive),
        sha256=file_sha256(small_archive),
        data_dir=data_dir,
        vocab_size=500,
    )

    # When the flow runs for the first time
    summary, first_run = _run(config)

    # Then it tokenises the archive and reports what it wrote
    path = Path(summary["data_path"])
    assert path.parent == (data_dir / "processed").resolve()
    assert path.name == summary["fingerprint"]
    assert summary["flow"] == "prepare"
    assert summary["undecodable_bytes"] == 0
    counts = summary["counts"]
    assert counts["train"]["rows"] + counts["validation"]["rows"] == 80
    assert counts["test"] == {"rows": 80, "pos": 40, "neg": 40, "movies": 20}
    assert load_processed(path) is not None
    assert _tokenize_states(first_run, 1) == ["Completed"]
    # and the user's archive is used in place, not copied
    assert not any((data_dir / "raw").glob("*.tar.gz"))

    # When it runs again with the same config
    before = mtimes(path)
    folders = sorted((data_dir / "processed").iterdir())
    again, second_run = _run(config)

    # Then the tokenise task reuses the intact folder and nothing is rewritten
    assert again == summary
    assert _tokenize_states(second_run, 1) == ["Completed"]
    assert mtimes(path) == before
    assert sorted((data_dir / "processed").iterdir()) == folders

    # When the processed folder is deleted
    shutil.rmtree(path)
    rebuilt, third_run = _run(config)

    # Then one tokenise task run rebuilds it: no cache answers for data that is gone
    assert rebuilt == summary
    assert load_processed(path) is not None
    assert _tokenize_states(third_run, 1) == ["Completed"]

    # When a file in it is damaged
    train = path / "train.parquet"
    train.write_bytes(train.read_bytes()[:100])
    repaired, _ = _run(config)

    # Then it is rebuilt too, and nothing but the one folder is left in processed/
    assert repaired == summary
    assert load_processed(path) is not None
    assert [p.name for p in (data_dir / "processed").iterdir()] == [path.name]


# --- command line -------------------------------------------------------------------------------


def test_cli_prepare_prints_a_json_summary(
    small_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the small archive as source and an empty data folder
    data_dir = tmp_path / "data"

    # When `imdb-pipeline prepare --json` runs
    code = main(["prepare", "--source", str(small_archive), "--data-dir", str(data_dir), "--json"])

    # Then it succeeds and the last stdout line is a JSON summary of the data written
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["ok"] is True
    assert summary["flow"] == "prepare"
    assert summary["counts"]["test"]["rows"] == 80
    assert load_processed(Path(summary["data_path"])) is not None
    assert Path(summary["data_path"]).is_relative_to(data_dir.resolve())
    assert summary["cached"] is False  # the flow ran


def test_cli_prepare_of_cached_data_runs_no_flow_unless_it_is_damaged(
    small_archive: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given data prepared once by the CLI (through the flow)
    argv = ["prepare", "--source", str(small_archive), "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--json"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    path = Path(first["data_path"])
    before = mtimes(path)

    # When it runs again, with the flow made to fail if it is called
    def no_flow(config: PipelineConfig) -> dict:
        raise AssertionError("the prepare flow ran for cached data")

    monkeypatch.setattr(flows.prepare, "prepare", no_flow)
    assert main([*argv, "--json"]) == 0

    # Then it reports the same data, cached, says so, and rewrote nothing
    out, err = capsys.readouterr()
    again = json.loads(out.strip().splitlines()[-1])
    assert again == {**first, "cached": True}
    assert f"nothing to do, the data is cached: {path} (no flow run)" in err
    assert mtimes(path) == before

    # When a file of the data is damaged
    monkeypatch.undo()
    train = path / "train.parquet"
    train.write_bytes(train.read_bytes()[:100])
    assert main([*argv, "--json"]) == 0

    # Then the flow rebuilt it
    rebuilt = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rebuilt == first
    assert load_processed(path) is not None


def test_cli_reports_a_failed_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an archive missing its test/neg folder
    archive = build_archive(tmp_path / "aclImdb_v1.tar.gz", skip=["aclImdb/test/neg"])
    data_dir = tmp_path / "data"

    # When the CLI prepares it
    code = main(["prepare", "--source", str(archive), "--data-dir", str(data_dir), "--json"])

    # Then it exits with 1, says why on stderr, ends stdout with ok false, and writes no data
    out, err = capsys.readouterr()
    assert code == 1
    assert "aclImdb/test/neg/" in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] is False
    assert "aclImdb/test/neg/" in result["error"]
    processed = data_dir / "processed"
    assert not processed.exists() or list(processed.iterdir()) == []
