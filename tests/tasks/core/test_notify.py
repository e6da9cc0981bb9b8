"""Alerts: delivery to a real local receiver, retries, a receiver that is down, and the
`abandoned` alert of a run whose automatic resumes are used up."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tasks.config import ConfigError, load_config
from tasks.core import notify
from tasks.core.run_folder import RunError
from tasks.core.runs import begin_resume
from tests.alert_receiver import Receiver


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Receiver:
    server = Receiver(fail_first=getattr(request, "param", 0))
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF_S", 0.0)


def test_an_alert_is_one_json_post_with_the_event_and_its_context(receiver: Receiver) -> None:
    # When an event is sent
    sent = notify.notify(receiver.url, "promoted", "b is the champion", run_id="b", old_model="a")

    # Then the receiver got one body with the required fields
    assert sent is True
    (body,) = receiver.received()
    assert body["event"] == "promoted" and body["message"] == "b is the champion"
    assert (body["run_id"], body["old_model"], body["flow"], body["flow_run_id"]) == (
        "b",
        "a",
        None,
        None,
    )
    assert body["time"].endswith("+00:00")


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_an_alert_is_retried_until_the_receiver_takes_it(receiver: Receiver) -> None:
    # Given a receiver that answers 500 twice, when an event is sent, then the third try lands
    assert notify.notify(receiver.url, "failed", "boom") is True
    assert receiver.attempts == 3 and len(receiver.received()) == 1


def test_an_alert_that_cannot_be_delivered_is_a_warning_not_an_error(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a receiver that is down
    url = receiver.url
    receiver.stop()

    # When an event is sent, then it returns False and a warning names the event and the URL
    with caplog.at_level(logging.WARNING):
        assert notify.notify(url, "failed", "boom") is False
    assert any("'failed' not delivered to " + url in r.getMessage() for r in caplog.records)


def test_a_malformed_notify_url_is_refused_by_the_config() -> None:
    for bad in ("not a url", "ftp://host/x", "http://"):
        with pytest.raises(ConfigError, match="notify_url"):
            load_config(notify_url=bad)


def test_the_notify_url_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMDB_NOTIFY_URL", "https://alerts.example/hook")
    assert load_config().notify_url == "https://alerts.example/hook"


def test_a_run_whose_automatic_resumes_are_used_up_sends_abandoned(
    receiver: Receiver, tmp_path: Path
) -> None:
    # Given a run already resumed automatically three times, alerting to the receiver
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    info = {"run_id": "r1", "config": {"notify_url": receiver.url}, "automatic_resumes": 3}
    (run_dir / "run.json").write_text(json.dumps(info))

    # When a fourth automatic resume begins, then it is refused and the alert says so
    with pytest.raises(RunError, match="resumed automatically 3 times"):
        begin_resume(run_dir, "flow-run-4", 2, automatic=True, max_automatic_resumes=3)
    (body,) = receiver.received()
    assert (body["event"], body["run_id"], body["flow_run_id"]) == ("abandoned", "r1", "flow-run-4")
    assert "imdb-pipeline resume --run-id r1" in body["message"]
