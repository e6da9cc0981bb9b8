"""End-to-end tests of the `resume` flow and `imdb-pipeline resume`."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.cli import main
from flows.pipeline import pipeline
from flows.resume import resume
from tasks.config import PipelineConfig
from tasks.core.run_folder import RunError, RunFolder
from tasks.core.runs import create_run
from tasks.data.processed import load_processed
from tasks.training import checkpoint as ckpt
from tests.imdb_fixtures import pipeline_config

pytestmark = pytest.mark.usefixtures("prefect_server")


@dataclass
class Finished:
    """A completed 2-epoch pipeline run "done"; tests work on copies of its artifacts."""

    config: PipelineConfig
    summary: dict

    @property
    def artifacts(self) -> Path:
        return self.config.artifacts_dir

    def copy(self, tmp_path: Path, status: str | None = "failed", export: bool = False) -> Path:
        """A copy of the artifacts folder; the run set to `status`, its export removed."""
        art = tmp_path / "art"
        shutil.copytree(self.artifacts, art, symlinks=True)
        if status is not None:
            RunFolder(art / "runs" / "done").update_info(status=status)
        if not export:
            shutil.rmtree(art / "models" / "done")
        return art


@pytest.fixture(scope="module")
def finished(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    tmp = tmp_path_factory.mktemp("resume")
    config = pipeline_config(small_archive, tmp, early_stopping=False)
    return Finished(config, pipeline(config, run_id="done"))


def checkpoint_manifests(run_dir: Path) -> list[dict]:
    return [c.manifest for c in ckpt.list_checkpoints(run_dir / "checkpoints")]


def test_resume_without_a_checkpoint_picks_the_newest_unfinished_run_and_trains_it(
    finished: Finished, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an older failed run, the completed run "done", and a newer run that died before
    # its first checkpoint
    art = finished.copy(tmp_path, status=None, export=True)
    config = finished.config.model_copy(update={"artifacts_dir": art})
    data = load_processed(Path(RunFolder(art / "runs" / "done").read_info()["data_path"]))
    assert data is not None
    older = create_run(art, config, data, "older")
    RunFolder(older).update_info(status="failed", created_at="2000-01-01T00:00:00+00:00")
    fresh = create_run(art, config, data, "fresh")
    RunFolder(fresh).update_info(status="failed")

    # When the resume flow runs without naming a run
    with caplog.at_level(logging.INFO):
        summary = resume(artifacts_dir=art)

    # Then it took the newest unfinished run and trained it from epoch 0 to the end
    assert summary["flow"] == "resume"
    assert summary["run_id"] == "fresh"
    assert summary["resumed_from_epoch"] == 0
    assert summary["epochs_completed"] == 2
    assert [c["epoch"] for c in checkpoint_manifests(fresh)] == [1, 2]
    assert "has no valid checkpoint yet: training starts at epoch 0" in caplog.text
    assert "another environment" not in caplog.text  # the same packages, lock and commit
    # And evaluated and exported it, and recorded the resume in run.json
    assert Path(summary["model_dir"]) == art.resolve() / "models" / "fresh"
    assert (Path(summary["model_dir"]) / "model.keras").is_file()
    info = RunFolder(fresh).read_info()
    assert info["status"] == "completed"
    assert info["model_dir"] == summary["model_dir"]
    assert len(info["flow_run_ids"]) == 1
    assert info["resumes"] == [{"flow_run_id": info["flow_run_ids"][0], "from_epoch": 0}]
    assert info["automatic_resumes"] == 0
    # And the other runs were left alone
    assert RunFolder(older).read_info()["status"] == "failed"
    assert RunFolder(art / "runs" / "done").read_info()["status"] == "completed"


def test_resume_of_a_run_that_finished_training_only_evaluates_and_exports(
    finished: Finished, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the run failed after its last epoch was checkpointed, before its export, and it
    # started under another Keras and another commit
    art = finished.copy(tmp_path)
    run_dir = art / "runs" / "done"
    manifests = checkpoint_manifests(run_dir)
    history = (run_dir / "history.csv").read_text()
    env = RunFolder(run_dir).read_info()["environment"]
    started = {**env, "git_commit": "0" * 40, "packages": {**env["packages"], "keras": "3.0.0"}}
    RunFolder(run_dir).update_info(environment=started)

    # When it is resumed by id
    with caplog.at_level(logging.WARNING):
        summary = resume(run_id="done", artifacts_dir=art)

    # Then a warning names what differs: the run is no longer bit-identical
    (warning,) = [r.getMessage() for r in caplog.records if "another environment" in r.getMessage()]
    assert f"keras 3.0.0 -> {env['packages']['keras']}" in warning
    assert f"git_commit {'0' * 40} -> {env['git_commit']}" in warning

    # Then no epoch was trained again: same checkpoints, same history
    assert summary["resumed_from_epoch"] == 2
    assert summary["epochs_completed"] == 2
    assert checkpoint_manifests(run_dir) == manifests
    assert (run_dir / "history.csv").read_text() == history
    # And it was evaluated like the original run and exported again
    assert summary["test_metrics"] == finished.summary["test_metrics"]
    assert summary["selected_epoch"] == finished.summary["selected_epoch"]
    model_dir = art.resolve() / "models" / "done"
    assert summary["model_dir"] == str(model_dir)
    assert (model_dir / "sentiment-lstm.h5").is_file()
    card = json.loads((model_dir / "model-card.json").read_text())
    assert card["environment"]["packages"] == env["packages"]  # the exporting process's
    assert "## Environment" in (model_dir / "model-card.md").read_text()
    info = RunFolder(run_dir).read_info()
    assert info["status"] == "completed"
    assert info["model_dir"] == str(model_dir)
    assert [r["from_epoch"] for r in info["resumes"]] == [2]


def _edit_run_json(run_dir: Path, **config_changes) -> None:
    info = RunFolder(run_dir).read_info()
    RunFolder(run_dir).update_info(config={**info["config"], **config_changes})


def test_resume_refuses_changed_settings_or_data(finished: Finished, tmp_path: Path) -> None:
    art = finished.copy(tmp_path)
    run_dir = art / "runs" / "done"
    original = RunFolder(run_dir).read_info()
    latest = ckpt.find_latest_checkpoint(run_dir)
    assert latest is not None

    # Given run.json's config was edited after the checkpoints were written
    _edit_run_json(run_dir, lstm_units=16)
    # When / then the resume refuses, naming the checkpoint and both config digests
    with pytest.raises(RunError, match="the run's settings were changed") as exc:
        resume(run_id="done", artifacts_dir=art)
    assert str(latest.path) in str(exc.value)
    assert latest.manifest["config_digest"] in str(exc.value)
    # And the run is marked failed again, not left "running"
    assert RunFolder(run_dir).read_info()["status"] == "failed"

    # Given run.json records other data than the archive and settings now give
    RunFolder(run_dir).update_info(config=original["config"], data_fingerprint="0" * 16)
    # When / then the resume refuses, naming both fingerprints
    with pytest.raises(RunError, match="was trained on data 0{16}, but the archive") as exc:
        resume(run_id="done", artifacts_dir=art)
    assert original["data_fingerprint"] in str(exc.value)

    # Given the newest checkpoint records other data than run.json
    RunFolder(run_dir).update_info(data_fingerprint=original["data_fingerprint"])
    manifest = json.loads((latest.path / ckpt.MANIFEST_FILE).read_text())
    (latest.path / ckpt.MANIFEST_FILE).write_text(json.dumps({**manifest, "data_fingerprint": "x"}))
    # When / then the resume refuses too
    with pytest.raises(RunError, match=f"checkpoint {latest.path} was trained on data x, not"):
        resume(run_id="done", artifacts_dir=art)
    # And nothing was trained or exported meanwhile
    assert not (art / "models" / "done").exists()
    assert [c.epoch for c in ckpt.list_checkpoints(run_dir / "checkpoints")] == [1, 2]


def test_resume_by_flow_run_id_finds_the_run_and_a_completed_run_is_a_no_op(
    finished: Finished,
) -> None:
    # Given the completed run and the id of the pipeline flow run that made it
    run_dir = finished.artifacts / "runs" / "done"
    before = (run_dir / "run.json").read_bytes()
    (flow_run_id,) = json.loads(before)["flow_run_ids"]

    # When it is resumed by flow run id alone (the artifacts folder comes from the server)
    summary = resume(flow_run_id=flow_run_id)

    # Then nothing is done and the summary says the run is complete
    assert summary == {
        "flow": "resume",
        "run_id": "done",
        "status": "completed",
        "model_dir": finished.summary["model_dir"],
    }
    assert (run_dir / "run.json").read_bytes() == before


def test_resume_of_a_missing_run_is_a_clear_error(finished: Finished, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no run 'nope' under"):
        resume(run_id="nope", artifacts_dir=finished.artifacts)
    with pytest.raises(RunError, match="no run folder records flow run"):
        resume(flow_run_id="00000000-0000-0000-0000-000000000000", artifacts_dir=tmp_path)
    with pytest.raises(RunError, match="no unfinished run under"):
        resume(artifacts_dir=finished.artifacts)


def test_automatic_resumes_stop_at_the_limit(finished: Finished, tmp_path: Path) -> None:
    # Given a failed run allowed one automatic resume
    art = finished.copy(tmp_path)
    run_dir = art / "runs" / "done"

    # When it is resumed automatically, then the resume proceeds and completes the run
    summary = resume(run_id="done", artifacts_dir=art, automatic=True, max_automatic_resumes=1)
    assert summary["run_id"] == "done"
    info = RunFolder(run_dir).read_info()
    assert (info["status"], info["automatic_resumes"]) == ("completed", 1)

    # When it fails again and is resumed automatically a second time
    RunFolder(run_dir).update_info(status="failed")
    with pytest.raises(RunError, match=r"resumed automatically 1 times \(limit 1\)") as exc:
        resume(run_id="done", artifacts_dir=art, automatic=True, max_automatic_resumes=1)

    # Then it is refused with the command to resume by hand, and the run is abandoned
    assert "imdb-pipeline resume --run-id done" in str(exc.value)
    info = RunFolder(run_dir).read_info()
    assert (info["status"], info["automatic_resumes"]) == ("abandoned", 1)
    assert len(info["resumes"]) == 1


def test_cli_resume_prints_a_json_summary(
    finished: Finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a failed run whose training finished
    art = finished.copy(tmp_path)

    # When `imdb-pipeline resume --run-id done --json` runs
    code = main(["resume", "--run-id", "done", "--artifacts-dir", str(art), "--json"])

    # Then it succeeds and the last stdout line is the JSON summary
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert (summary["flow"], summary["run_id"], summary["resumed_from_epoch"]) == (
        "resume",
        "done",
        2,
    )
    assert (Path(summary["model_dir"]) / "model.keras").is_file()

    # When a run that does not exist is named
    code = main(["resume", "--run-id", "nope", "--artifacts-dir", str(art), "--json"])

    # Then it fails with the reason on stderr and in the JSON line
    out, err = capsys.readouterr()
    assert code == 1
    assert "no run 'nope'" in err
    failure = json.loads(out.strip().splitlines()[-1])
    assert failure["ok"] is False and "no run 'nope'" in failure["error"]
