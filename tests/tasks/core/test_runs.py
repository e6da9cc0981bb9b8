"""Tests of run folders: creation, lookup and retention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.config import PipelineConfig
from tasks.core import runs
from tasks.core.run_folder import RunError, RunFolder
from tasks.data.processed import ProcessedData

CONFIG = PipelineConfig(source="unused.tar.gz", sha256=None, epochs=2, lstm_units=8)
DATA = ProcessedData(Path("/data/processed/f00d"), "f" * 16)


def make_run(
    artifacts: Path,
    run_id: str,
    status: str = "completed",
    created_at: str | None = None,
    flow_run_ids: list[str] | None = None,
) -> Path:
    """A run folder with the given status; created_at fixes its place in the run order."""
    run_dir = runs.create_run(artifacts, CONFIG, DATA, run_id)
    changes: dict = {"status": status}
    if created_at is not None:
        changes["created_at"] = created_at
    if flow_run_ids is not None:
        changes["flow_run_ids"] = flow_run_ids
    RunFolder(run_dir).update_info(**changes)
    return run_dir


def test_create_run_writes_run_json(tmp_path: Path) -> None:
    # Given / when a run is created for a flow run
    run_dir = runs.create_run(tmp_path, CONFIG, DATA, "run-1", flow_run_id="flow-a")

    # Then its folder holds run.json recording status, config, data and flow run
    assert run_dir == tmp_path / "runs" / "run-1"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["run_id"] == "run-1"
    assert info["status"] == "running"
    assert info["config"] == CONFIG.model_dump(mode="json")
    assert info["config_digest"] == CONFIG.digest()
    assert info["data_fingerprint"] == DATA.fingerprint
    assert info["data_path"] == str(DATA.path)
    assert info["flow_run_ids"] == ["flow-a"]
    assert info["automatic_resumes"] == 0
    assert info["resumes"] == []
    assert RunFolder(run_dir).read_info() == info


def test_create_run_without_an_id_makes_a_unique_timestamped_one(tmp_path: Path) -> None:
    # Given / when two runs are created without an id
    first = runs.create_run(tmp_path, CONFIG, DATA)
    second = runs.create_run(tmp_path, CONFIG, DATA)

    # Then each got its own folder, named by UTC time and a random suffix
    assert first != second
    assert first.name[8] == "T" and first.name[15] == "Z"
    assert RunFolder(first).read_info()["flow_run_ids"] == []


def test_create_run_refuses_an_existing_folder(tmp_path: Path) -> None:
    # Given an existing run
    run_dir = make_run(tmp_path, "run-1", status="failed")
    before = (run_dir / "run.json").read_bytes()

    # When / then creating a run with the same id fails and leaves the old run as it was
    with pytest.raises(RunError, match="already exists; runs never share one"):
        runs.create_run(tmp_path, CONFIG, DATA, "run-1")
    assert (run_dir / "run.json").read_bytes() == before


@pytest.mark.parametrize("bad", ["../escape", "a/b", "run 1", "..", "-", "run;rm"])
def test_create_run_refuses_bad_ids(tmp_path: Path, bad: str) -> None:
    # Given / when / then an id that is not a plain folder name is refused before anything
    with pytest.raises(RunError, match="may hold only letters, digits"):
        runs.create_run(tmp_path, CONFIG, DATA, bad)
    assert not (tmp_path / "runs").exists()


def test_read_run_info_of_a_folder_without_run_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="is not a run folder"):
        RunFolder(tmp_path).read_info()


def test_list_runs_orders_by_creation_and_skips_broken_folders(tmp_path: Path) -> None:
    # Given runs created out of name order, a folder without run.json, a corrupt run.json
    make_run(tmp_path, "b", created_at="2024-01-02T00:00:00+00:00")
    make_run(tmp_path, "a", created_at="2024-01-03T00:00:00+00:00")
    make_run(tmp_path, "c", created_at="2024-01-01T00:00:00+00:00")
    (tmp_path / "runs" / "no-json").mkdir()
    (tmp_path / "runs" / "corrupt").mkdir()
    (tmp_path / "runs" / "corrupt" / "run.json").write_text("{not json")

    # When / then only the valid runs are listed, oldest first
    assert [p.name for p, _ in runs.list_runs(tmp_path)] == ["c", "b", "a"]
    assert runs.list_runs(tmp_path / "nothing-here") == []


def test_find_run_by_id_flow_run_or_newest_unfinished(tmp_path: Path) -> None:
    # Given failed, completed, abandoned and running runs, oldest first
    make_run(tmp_path, "r1", "failed", "2024-01-01T00:00:00+00:00", ["f1"])
    make_run(tmp_path, "r2", "failed", "2024-01-02T00:00:00+00:00", ["f2", "f2-resume"])
    make_run(tmp_path, "r3", "completed", "2024-01-03T00:00:00+00:00", ["f3"])

    # Then an id names its folder
    assert runs.find_run(tmp_path, run_id="r3") == tmp_path / "runs" / "r3"
    # And a flow run id finds the run it worked on, the first or a later (resume) one
    assert runs.find_run(tmp_path, flow_run_id="f1").name == "r1"
    assert runs.find_run(tmp_path, flow_run_id="f2-resume").name == "r2"
    # And by default the newest unfinished run is chosen (never a completed one)
    assert runs.find_run(tmp_path).name == "r2"
    # And the run id takes precedence over a flow run id
    assert runs.find_run(tmp_path, run_id="r1", flow_run_id="f3").name == "r1"


def test_find_run_errors_name_what_is_missing(tmp_path: Path) -> None:
    # Given only a completed run and a folder that is not a run
    make_run(tmp_path, "done", "completed", flow_run_ids=["f1"])
    (tmp_path / "runs" / "stray").mkdir()

    # When / then each lookup that cannot succeed says why
    with pytest.raises(RunError, match="no run 'nope' under"):
        runs.find_run(tmp_path, run_id="nope")
    with pytest.raises(RunError, match="no run 'stray' under"):
        runs.find_run(tmp_path, run_id="stray")
    with pytest.raises(RunError, match="no run folder records flow run f-unknown"):
        runs.find_run(tmp_path, flow_run_id="f-unknown")
    with pytest.raises(RunError, match="no unfinished run under"):
        runs.find_run(tmp_path)
    with pytest.raises(RunError, match="no unfinished run under"):
        runs.find_run(tmp_path / "empty")


def _models(tmp_path: Path, *names: str) -> None:
    for name in names:
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "model.keras").write_bytes(b"m")


def test_prune_runs_keeps_newest_finished_protected_and_unfinished_runs(tmp_path: Path) -> None:
    # Given runs oldest first: the champion's, finished ones, and unfinished ones
    statuses = {
        "r1": "completed",  # the champion's run
        "r2": "completed",
        "r3": "failed",  # may still be resumed
        "r4": "abandoned",
        "r5": "running",
        "r6": "completed",
        "r7": "completed",
        "r8": "failed",  # newest, unfinished
    }
    for i, (name, status) in enumerate(statuses.items(), 1):
        make_run(tmp_path, name, status, f"2024-01-0{i}T00:00:00+00:00")
    _models(tmp_path, "r1", "r2", "r4", "r6", "r7", "other")

    # When all but the 2 newest finished runs are pruned, protecting the champion's
    removed = runs.prune_runs(tmp_path, keep=2, protect={"r1"})

    # Then the older finished runs and their exported models are gone, oldest first
    assert removed == ["r2", "r4"]
    left = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert left == ["r1", "r3", "r5", "r6", "r7", "r8"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["other", "r1", "r6", "r7"]

    # When pruning again with nothing to keep but the champion
    assert runs.prune_runs(tmp_path, keep=0, protect={"r1"}) == ["r6", "r7"]

    # Then unfinished runs are never pruned, the protected one stays
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r1", "r3", "r5", "r8"]
    assert runs.prune_runs(tmp_path, keep=0, protect=set()) == ["r1"]
    assert runs.prune_runs(tmp_path / "no-runs-yet", keep=1, protect=set()) == []
