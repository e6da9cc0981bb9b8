"""Alerts from the flows and commands: a failed run, a crashed one (reported by its automatic
resume), and the champion moved by hand, each received by a real local HTTP receiver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Crashed, Failed

from flows.cli import main
from flows.pipeline import pipeline
from flows.resume import report_crash
from tests.alert_receiver import Receiver
from tests.imdb_fixtures import tiny_config
from tests.tasks.serving.test_moves import export, night_promotes

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Receiver:
    server = Receiver()
    request.addfinalizer(server.stop)
    return server


def test_a_failed_pipeline_run_sends_failed(receiver: Receiver, tmp_path: Path) -> None:
    # Given a run whose archive does not exist, alerting to the receiver
    config = tiny_config(tmp_path, source=str(tmp_path / "missing.tar.gz"), notify_url=receiver.url)

    # When it runs and fails
    state = pipeline(config, return_state=True)

    # Then one `failed` alert names the flow, its flow run and the cause
    assert state.is_failed()
    (body,) = receiver.received()
    assert (body["event"], body["flow"], body["state"]) == ("failed", "imdb-pipeline", "Failed")
    assert body["flow_run_id"] == str(state.state_details.flow_run_id)
    assert "missing.tar.gz" in body["message"]


@flow(name="imdb-pipeline")
def _stand_in() -> None:
    """Only to own flow runs whose state the test sets."""


@pytest.mark.parametrize(("state", "alerts"), [(Crashed, 1), (Failed, 0)])
def test_the_automatic_resume_reports_a_crash_once(
    receiver: Receiver, tmp_path: Path, state, alerts: int
) -> None:
    # Given a run folder alerting to the receiver, and a flow run of it that crashed (a SIGKILL
    # sends nothing itself) or failed (its own hook has sent the alert)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_stand_in, state=state(message="worker lost"))
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"config": {"notify_url": receiver.url}}))

    # When the automatic resume begins
    report_crash(run_dir, str(run.id))

    # Then a crash is reported as `failed`, once; a failure is not reported again
    bodies = receiver.received()
    assert len(bodies) == alerts
    if alerts:
        assert (bodies[0]["event"], bodies[0]["state"], bodies[0]["run_id"]) == (
            "failed",
            "Crashed",
            "r1",
        )
        assert "worker lost" in bodies[0]["message"]


def test_moving_the_champion_by_hand_sends_promoted_and_rolled_back(
    receiver: Receiver, tmp_path: Path
) -> None:
    # Given two exports, a the champion
    models = tmp_path / "artifacts" / "models"
    export(models, "a")
    export(models, "b")
    night_promotes(models, "a")
    flags = ["--artifacts-dir", str(tmp_path / "artifacts"), "--notify-url", receiver.url]

    # When an operator promotes b, then rolls back
    assert main(["champion", "promote", "b", "--reason", "try it", *flags]) == 0
    assert main(["champion", "rollback", *flags]) == 0

    # Then each move is one alert with the old and the new model
    promoted, rolled_back = receiver.received()
    assert (promoted["event"], promoted["new_model"], promoted["old_model"]) == (
        "promoted",
        "b",
        "a",
    )
    assert "try it" in promoted["message"]
    assert (rolled_back["event"], rolled_back["new_model"], rolled_back["old_model"]) == (
        "rolled_back",
        "a",
        "b",
    )


def test_a_malformed_notify_url_stops_the_command_before_any_move(tmp_path: Path) -> None:
    models = tmp_path / "artifacts" / "models"
    export(models, "a")
    flags = ["--artifacts-dir", str(tmp_path / "artifacts"), "--notify-url", "nowhere"]
    assert main(["champion", "promote", "a", *flags]) == 2
    assert not (models / "champion").exists()
