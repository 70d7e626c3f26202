"""A socketserver run on a background daemon thread: start, stop, and `with`.

The health/metrics HTTP service (`priorwatch.metrics.HttpService`) and the HL7 MLLP listener
(`monitoring.hl7.MLLPListener`) both serve on a thread beside the process's main work; the
start/stop lifecycle is written once here. A subclass builds its server in `make_server`.
"""

from __future__ import annotations

import socketserver
import threading
from typing import Any

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Runs `make_server()`'s server on a daemon thread named `thread_name`.

    After `start()`, `port` is the port bound (0 asks for any free one). `stop()` shuts the
    server down, closes its socket and joins the thread (at most 5 s); it is safe to call twice.
    """

    thread_name = "server"
    port: int

    def __init__(self) -> None:
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    def make_server(self) -> socketserver.BaseServer:
        """The bound, not yet serving, server (raise to refuse the start)."""
        raise NotImplementedError

    def started(self) -> None:
        """Called once the thread serves (a subclass logs where it listens)."""

    def start(self) -> Any:
        srv = self.make_server()
        self._server = srv
        self.port = srv.server_address[1]  # type: ignore[index]
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        self.started()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
