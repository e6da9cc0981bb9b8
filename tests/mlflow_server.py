"""A real MLflow tracking server on 127.0.0.1 (SQLite backend, local artifact store) for tests,
started and stopped by PID like the Prefect server of tests/prefect_server.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.prefect_server import free_port, stop_process


@dataclass
class LocalMlflow:
    """A server process: `uri` is its tracking URI, `root` holds its database, artifacts, log."""

    uri: str
    root: Path
    proc: subprocess.Popen
    ready: bool = False

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text() if path.exists() else ""

    def wait_ready(self, timeout_s: float = 120) -> LocalMlflow:
        """Block until the server answers /health (AssertionError with its log if it dies)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    self.ready = True
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("MLflow server did not start:\n" + self.log()) from None
                time.sleep(0.3)
        return self

    def stop(self) -> None:
        """SIGTERM the server's process group (SIGKILL if it lingers) and reap it."""
        stop_process(self.proc)


def server_env() -> dict[str, str]:
    """This process's environment without any MLflow setting (the server must not inherit a
    tracking URI, and the tests choose theirs), and without the server's job execution."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # MLflow 3's server otherwise starts a job runner and five huey consumer processes (for
    # its GenAI jobs, which tracking does not use): CPU-seconds on every start of a test.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def server_command() -> str:
    """The `mlflow` command of the tracking server's own environment (`make install` builds it
    in .venv/mlflow-server; IMDB_TEST_MLFLOW names another)."""
    command = os.environ.get("IMDB_TEST_MLFLOW") or str(
        Path(sys.executable).parent.parent / "mlflow-server" / "bin" / "mlflow"
    )
    if not Path(command).exists():
        raise AssertionError(
            f"no MLflow server at {command}: run `make install` (it installs one in "
            ".venv/mlflow-server) or set IMDB_TEST_MLFLOW to an `mlflow` command"
        )
    return command


def start_mlflow(root: Path, port: int | None = None) -> LocalMlflow:
    """Start `mlflow server` with `sqlite:///<root>/mlflow.db` and artifacts in
    `<root>/artifacts` on `port` (default: a free one); returns at once (see `wait_ready`)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [server_command(), "server"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with (root / "server.log").open("w") as log:
        # Own session: stopping it by PID also stops the workers it started.
        proc = subprocess.Popen(
            command,
            env=server_env(),
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return LocalMlflow(f"http://127.0.0.1:{port}", root, proc)


@contextlib.contextmanager
def local_mlflow(root: Path, port: int | None = None) -> Iterator[LocalMlflow]:
    """A started server for the block; stopped, with whatever it started, when it ends."""
    server = start_mlflow(root, port)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


_shared: dict[str, LocalMlflow] = {}


def boot_shared_mlflow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LocalMlflow:
    """Start the session's one server (if not yet started) without waiting for it, so that it
    boots while other fixtures start; it is stopped when the session ends."""
    if "server" not in _shared:
        server = _shared["server"] = start_mlflow(tmp_path_factory.mktemp("mlflow"))

        def stop() -> None:
            _shared.pop("server", None)
            server.stop()

        request.config.add_cleanup(stop)
    return _shared["server"]


def shared_mlflow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LocalMlflow:
    """The session's one server, whichever test module asks first, ready."""
    return boot_shared_mlflow(request, tmp_path_factory).wait_ready()


def dead_uri() -> str:
    """A tracking URI where nothing listens (a port that was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


class Relay:
    """A tracking URI whose server is down until `start`: from then on 127.0.0.1:<port> relays
    every connection to `target` (the server "comes back" at the address runs were given)."""

    def __init__(self, target: LocalMlflow) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._target = int(target.uri.rsplit(":", 1)[1])
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        """Stop relaying: the listener and every relayed connection are shut (which also wakes
        the threads that wait on them)."""
        for sock in [s for s in (self._listener,) if s] + self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # stopped
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
