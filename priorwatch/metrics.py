"""Health and Prometheus metrics over HTTP, for the node and the workers.

`HttpService` answers `/livez` (the process serves), `/readyz` (its dependencies answer) and
`/metrics` (Prometheus text); a room adds its own routes (the node's store for workers).
`DatabaseCollector` reads pipeline figures from the database at scrape time: state lives in
the database, so the figures are the same whichever process or machine is scraped, and the
node's several receiving processes need no shared counters.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, text
from sqlmodel import select

from priorwatch.models import Comparison, Instance, Job, JobState, Study, utcnow
from priorwatch.settings import Settings
from priorwatch.threaded import BackgroundServer

log = logging.getLogger(__name__)

__all__ = ["DatabaseCollector", "HttpService", "Route", "classify_failure", "database_ready", "tcp_ready"]

# Arrival -> result buckets (seconds): a chest X-ray pair takes seconds on CPU, minutes when
# priors come from a slow PACS or the queue is long.
LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LATENCY_WINDOW = timedelta(hours=24)  # the latency histogram covers results of the last day
READY_TIMEOUT_S = 2.0  # a dependency that does not answer within this is not ready

# Failure reasons by the words the pipeline writes into Job.error (bounded label values).
_FAILURE_REASONS: tuple[tuple[str, str], ...] = (
    ("comparison engine unavailable", "engine_unavailable"),
    ("comparison engine rejected", "engine_rejected"),
    ("holds no image", "no_image"),
    ("could not read image", "image_unreadable"),
    ("missing from the spool", "image_missing"),
    ("node store", "node_fetch"),
    ("pacs", "pacs"),
    ("prior retrieval", "pacs"),
    ("gave up", "gave_up"),
    ("unexpected error", "unexpected"),
)


def classify_failure(error: str | None) -> str:
    """A failed job's reason as one of a few label values (never the free text: no PHI)."""
    low = (error or "").lower()
    for needle, reason in _FAILURE_REASONS:
        if needle in low:
            return reason
    return "other"


class DatabaseCollector(Collector):
    """Pipeline figures from the database, computed at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        from priorwatch.db import session_scope

        with session_scope(self.settings) as s:
            n_inst = s.exec(select(func.count()).select_from(Instance)).one()
            studies = s.exec(select(Study.state, func.count()).group_by(Study.state)).all()
            jobs = s.exec(select(Job.state, func.count()).group_by(Job.state)).all()
            failed = s.exec(select(Job.error).where(Job.state == JobState.failed)).all()
            since = utcnow() - LATENCY_WINDOW
            pairs = s.exec(
                select(Study.completed_at, Study.first_received_at, Comparison.created_at)
                .join(Study, Study.id == Comparison.study_id)  # type: ignore[arg-type]
                .where(Comparison.created_at >= since)
            ).all()
        yield CounterMetricFamily("priorwatch_instances_received", "Instances received and indexed", value=n_inst)
        g = GaugeMetricFamily("priorwatch_studies", "Studies by state", labels=["state"])
        done = 0
        for state, n in studies:
            g.add_metric([str(state)], n)
            done += n if state == "done" else 0
        yield g
        yield CounterMetricFamily("priorwatch_studies_completed", "Studies with a result", value=done)
        jg = GaugeMetricFamily("priorwatch_jobs", "Jobs by state", labels=["state"])
        by_state = {str(k): n for k, n in jobs}
        for state in JobState:
            jg.add_metric([state.value], by_state.get(state.value, 0))
        yield jg
        yield GaugeMetricFamily("priorwatch_queue_depth", "Jobs waiting for a worker",
                                value=by_state.get(JobState.queued.value, 0))
        reasons: dict[str, int] = {}
        for err in failed:
            r = classify_failure(err)
            reasons[r] = reasons.get(r, 0) + 1
        fc = CounterMetricFamily("priorwatch_job_failures", "Failed jobs by reason", labels=["reason"])
        for r, n in sorted(reasons.items()):
            fc.add_metric([r], n)
        yield fc
        lat = [(c - (a or b)).total_seconds() for a, b, c in pairs if (a or b) is not None]
        buckets = [(str(b), sum(1 for x in lat if x <= b)) for b in LATENCY_BUCKETS] + [("+Inf", len(lat))]
        yield HistogramMetricFamily(
            "priorwatch_job_latency_seconds",
            "Study complete (else first instance) to stored result, results of the last 24 h",
            buckets=buckets, sum_value=sum(lat),
        )


def database_ready(settings: Settings) -> str | None:
    """None when the database answers, else why not."""
    from priorwatch.db import get_engine

    try:
        with get_engine(settings).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        return f"database: {type(exc).__name__}"
    return None


def tcp_ready(name: str, host: str, port: int) -> str | None:
    """None when host:port accepts a connection, else why not."""
    try:
        with socket.create_connection((host if host not in ("0.0.0.0", "", "::") else "127.0.0.1", port),
                                      timeout=READY_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{name}: {type(exc).__name__}"


# A refused POST's body (no token, too large, wrong type) is read and dropped up to this size, so
# the sender gets the answer rather than a reset mid-send; a larger one is cut off (connection closed).
DRAIN_MAX_BYTES = 64 << 20


def _drain(rfile: Any, n: int) -> None:
    while n > 0:
        chunk = rfile.read(min(n, 1 << 20))
        if not chunk:
            return
        n -= len(chunk)


# A route answers (status, headers, body) or streams itself: (status, headers, iterator of bytes).
RouteResult = tuple[int, dict[str, str], bytes | Iterator[bytes]]
Route = Callable[[str, dict[str, str]], RouteResult | None]
# A POST route gets the path, the headers and a reader of the body (called only once it has
# checked what it must before reading, e.g. the caller's token); None: not its path.
PostRoute = Callable[[str, dict[str, str], Callable[[], bytes]], RouteResult | None]


class HttpService(BackgroundServer):
    """A small threaded HTTP server: /livez, /readyz, /metrics and the routes a room adds.

    `checks` are callables returning None (fine) or a short reason; `/readyz` is 200 only when
    all return None.
    """

    def __init__(self, host: str, port: int, *, name: str, checks: list[Callable[[], str | None]] | None = None,
                 registry: CollectorRegistry | None = None, routes: list[Route] | None = None,
                 post_routes: list[PostRoute] | None = None, max_body_bytes: int = 0) -> None:
        super().__init__()
        self.host, self.port, self.name = host, port, name
        self.thread_name = f"{name}-http"
        self.checks = checks or []
        self.registry = registry
        self.routes = routes or []
        self.post_routes = post_routes or []
        self.max_body_bytes = max_body_bytes  # a POST body longer than this is refused (413) unread

    def _handle_post(self, path: str, headers: dict[str, str], rfile: Any) -> RouteResult:
        length = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
        if length is None or not length.isdigit():
            return 411, {"Content-Type": "text/plain"}, b"Content-Length required\n"
        n, read = int(length), [False]

        def body() -> bytes:
            read[0] = True
            return rfile.read(n)  # type: ignore[no-any-return]

        out: RouteResult = (413, {"Content-Type": "text/plain"}, b"body too large\n")
        if n <= self.max_body_bytes:
            out = next((r for r in (route(path, headers, body) for route in self.post_routes) if r is not None),
                       (404, {"Content-Type": "text/plain"}, b"not found\n"))
        if not read[0] and n <= DRAIN_MAX_BYTES:
            _drain(rfile, n)  # a refused sender still reads the answer, not a reset mid-send
        return out

    def _handle(self, path: str, headers: dict[str, str]) -> RouteResult:
        if path == "/livez":
            return 200, {"Content-Type": "text/plain"}, b"ok\n"
        if path == "/readyz":
            problems = [p for p in (c() for c in self.checks) if p]
            if problems:
                return 503, {"Content-Type": "text/plain"}, ("not ready: " + "; ".join(problems) + "\n").encode()
            return 200, {"Content-Type": "text/plain"}, b"ready\n"
        if path == "/metrics":
            from prometheus_client import REGISTRY

            body = generate_latest(REGISTRY)
            if self.registry is not None:
                body += generate_latest(self.registry)
            return 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, body
        for route in self.routes:
            out = route(path, headers)
            if out is not None:
                return out
        return 404, {"Content-Type": "text/plain"}, b"not found\n"

    def make_server(self) -> ThreadingHTTPServer:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(lambda: service._handle(self.path.split("?", 1)[0], dict(self.headers)))

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self._answer(lambda: service._handle_post(self.path.split("?", 1)[0], dict(self.headers), self.rfile))

            def _answer(self, handle: Callable[[], RouteResult]) -> None:
                try:
                    status, hdrs, body = handle()
                except Exception as exc:  # noqa: BLE001 - one bad request never stops the service
                    log.warning("%s: %s failed: %s", service.name, self.path.split("?", 1)[0], type(exc).__name__)
                    status, hdrs, body = 500, {"Content-Type": "text/plain"}, b"internal error\n"
                if self.command == "POST" and status >= 400:
                    self.close_connection = True  # the body may be unread: never parse it as the next request
                try:
                    self.send_response(status)
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    if isinstance(body, bytes):
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    else:
                        self.end_headers()  # the route set Content-Length
                        for chunk in body:
                            self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a probe's timeout)
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: no paths in logs
                return

        srv = ThreadingHTTPServer((self.host, self.port), Handler)
        srv.daemon_threads = True
        return srv

    def started(self) -> None:
        log.info("%s HTTP (health, metrics) on %s:%s", self.name, self.host, self.port)

    def start(self) -> "HttpService":
        return super().start()  # type: ignore[no-any-return]

    def __enter__(self) -> "HttpService":
        return self.start()


def wait_http_ok(url: str, timeout_s: float = 30.0) -> bool:
    """Poll `url` until it answers 200 (scripts and tests)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False
