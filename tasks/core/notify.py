"""Alerts: one JSON POST per event to the configured `notify_url` (env IMDB_NOTIFY_URL).

Events: `failed` (a pipeline or nightly flow run that fails, or crashes: reported by the
automatic resume that the Crashed trigger starts), `abandoned` (a run whose automatic resumes
are used up), `promoted` and `rolled_back` (the champion changed, by a night or by hand),
`held` (a new incoming file failed a batch check and waits for an operator).
A notification that cannot be delivered never fails the run: it is retried, then logged as a
warning naming the event and the URL.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

ATTEMPTS = 3
TIMEOUT_S = 5.0
BACKOFF_S = 1.0  # before the 2nd attempt; doubled before each later one


def message_body(event: str, message: str, **fields: Any) -> dict[str, Any]:
    """The JSON body: `event`, `message`, `time` (UTC), and `flow`, `run_id`, `flow_run_id`
    (null where unknown) plus any other `fields`."""
    return {
        "event": event,
        "flow": fields.pop("flow", None),
        "run_id": fields.pop("run_id", None),
        "flow_run_id": fields.pop("flow_run_id", None),
        "message": message,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
    }


def notify(url: str | None, event: str, message: str, **fields: Any) -> bool:
    """POST the event to `url` (nothing without one); True if a 2xx answer came back. Never
    raises: after `ATTEMPTS` tries it logs a warning and returns False."""
    if not url:
        return False
    data = json.dumps(message_body(event, message, **fields), default=str).encode()
    error = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                if 200 <= answer.status < 300:
                    return True
                error = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(getattr(exc, "reason", exc))
    log.warning("alert %r not delivered to %s after %d attempts: %s", event, url, ATTEMPTS, error)
    return False


def run_notify_url(info: dict[str, Any]) -> str | None:
    """The alert URL of a run, from its run.json (`info`); IMDB_NOTIFY_URL for a run recorded
    before the setting existed."""
    config = info.get("config") or {}
    if "notify_url" in config:
        return config["notify_url"]
    return os.environ.get("IMDB_NOTIFY_URL") or None


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect `on_failure` hook of the pipeline and nightly flows: a `failed` alert, to the
    URL of the run's config (its `config` parameter, else the default's, which reads
    IMDB_NOTIFY_URL)."""
    from tasks.config import PipelineConfig

    params = getattr(flow_run, "parameters", None) or {}
    try:
        config = params.get("config")
        if not isinstance(config, PipelineConfig):
            config = PipelineConfig.model_validate(config or {})
    except Exception:  # a config that did not validate: the failure itself
        config = PipelineConfig()
    run_id = params.get("run_id")
    if run_id is None:  # named by the flow: the run folder that records this flow run
        from tasks.core.run_folder import RunError
        from tasks.core.runs import find_run

        try:
            run_id = find_run(config.artifacts_dir.resolve(), None, str(flow_run.id)).name
        except (RunError, OSError):
            run_id = None  # it failed before creating one
    notify(
        config.notify_url,
        "failed",
        f"flow run {flow_run.name} failed: {state.message}",
        flow=flow.name,
        run_id=run_id,
        flow_run_id=str(flow_run.id),
        state=state.name,
    )
