"""A worker's own figures (Triton latency, bytes fetched from the node) and its HTTP service:
/livez, /readyz (database, broker, Triton) and /metrics on `worker_http_port` when set.

Installed through the `priorwatch.celery` entry point: the HTTP service starts when the Celery
worker is ready (one per worker process; threads share the counters).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from prometheus_client import Counter, Histogram

from priorwatch.metrics import HttpService, database_ready, tcp_ready
from priorwatch.settings import Settings, get_settings

log = logging.getLogger(__name__)

TRITON_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)  # registration ~0.3 s, VLM up to minutes
TRITON_LATENCY = Histogram("priorwatch_triton_request_seconds", "One comparison request to Triton, client side",
                           buckets=TRITON_BUCKETS)
NODE_FETCH_BYTES = Counter("priorwatch_node_fetch_bytes", "Bytes of instances fetched from the node's store")

_service: HttpService | None = None


def _broker_ready(app: Celery) -> str | None:
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        return f"broker: {type(exc).__name__}"
    return None


def _triton_ready(settings: Settings) -> str | None:
    url = settings.triton_url or f"127.0.0.1:{settings.triton_grpc_port}"
    host, _, port = url.rpartition(":")
    return tcp_ready("triton", host or "127.0.0.1", int(port))


def worker_service(app: Celery, settings: Settings, port: int | None = None) -> HttpService:
    return HttpService(
        settings.worker_http_host, settings.worker_http_port if port is None else port, name="worker",
        checks=[lambda: database_ready(settings), lambda: _broker_ready(app), lambda: _triton_ready(settings)],
    )


def install(app: Celery) -> None:
    """Entry point `priorwatch.celery`: start the worker's HTTP service once the worker is ready."""

    @worker_ready.connect(weak=False)
    def _start(**_kw: Any) -> None:
        global _service
        settings = get_settings()
        if settings.worker_http_port is None or _service is not None:
            return
        try:
            _service = worker_service(app, settings).start()
        except OSError as exc:  # a taken port must not stop the worker from working
            log.warning("worker HTTP service not started on port %s: %s", settings.worker_http_port, exc)

    @worker_shutdown.connect(weak=False)
    def _stop(**_kw: Any) -> None:
        global _service
        if _service is not None:
            _service.stop()
            _service = None
