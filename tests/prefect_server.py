"""A real Prefect server and process worker on 127.0.0.1 for end-to-end deployment tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPrefect:
    """Handles to a running server; `cli` runs prefect commands against it."""

    home: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cli(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        out = subprocess.run(
            [PREFECT, "--no-prompt", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout + out.stderr

    def api(self, path: str, body: dict | None = None) -> object:
        """The server's REST API read directly (no `prefect` process to start): GET `path`, or
        POST `body` as JSON to it (the `/filter` endpoints); the decoded JSON answer."""
        request = urllib.request.Request(
            self.env["PREFECT_API_URL"] + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def start(self, name: str, *args: str) -> subprocess.Popen:
        # Own session: stopping it by PID also stops whatever it started; default SIGINT
        # handling so it shuts down cleanly. The log stays open in the process only.
        with (self.home / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(
                [PREFECT, *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text() if path.exists() else ""


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM a process started in its own session (its group), SIGKILL if it lingers; reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def local_prefect(
    home: Path, extra_env: dict[str, str] | None = None, database_url: str | None = None
) -> Iterator[LocalPrefect]:
    """Start `prefect server start` on a free port with its own PREFECT_HOME (and its database
    in it, or at `database_url`, e.g. `postgresql+asyncpg://...`); stop it after."""
    home.mkdir(parents=True, exist_ok=True)
    database = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    port = free_port()
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        | {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "2",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "250",  # rich tables would otherwise wrap names
        }
        | database
        | (extra_env or {})
    )
    server = LocalPrefect(home, env)
    try:
        server.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.procs[0].poll() is not None:
                    raise AssertionError(
                        "Prefect server did not start:\n" + server.log("server")
                    ) from None
                time.sleep(0.5)
        yield server
    finally:
        for proc in reversed(server.procs):
            stop_process(proc)
