"""A real local HTTP receiver for alert tests: collects each POSTed JSON body."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Listens on 127.0.0.1 (a free port) until `stop`; `fail_first` answers 500 that many
    times before accepting."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: queue.Queue[dict] = queue.Queue()
        self.attempts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.attempts += 1
                if owner.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                owner.bodies.put(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[dict]:
        """Every body received so far (alerts are sent before the call that sends them returns)."""
        out = []
        while not self.bodies.empty():
            out.append(self.bodies.get())
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
