"""The node's HTTP service: its store for workers on other machines, health and metrics.

`GET /instances/{id}` streams one stored instance (application/dicom) to a worker that holds
the shared secret (`Authorization: Bearer <node_token>`); like WADO-RS's instance retrieval,
addressed by our index's id, which the job's database rows name. Only files inside the node's
own spool are served. `/livez`, `/readyz` (database, DICOM port) and `/metrics` (pipeline
figures from the database) come from `priorwatch.metrics`.

`POST /instances` (application/dicom, one Part-10 instance, same Bearer secret) files a prior
that a worker on another machine retrieved from the PACS (C-GET, WADO-RS) into this node's spool
and index, with every check a C-STORE gets; the answer is the C-STORE status as JSON
(`{"status": int, "comment": str}`; HTTP 200 on success, 409 when refused). Priors are kept here,
not on the worker that fetched them, so every other worker fetches them from the node (a file
on one worker's disk would be a permanent 404 for the rest).

Started by `priorwatch serve` (entry point `priorwatch.services`) when `node_http_port` is set.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlmodel import select

from priorwatch.db import session_scope
from priorwatch.metrics import DatabaseCollector, HttpService, RouteResult, database_ready, tcp_ready
from priorwatch.models import Instance, StudyRole
from priorwatch.queue import make_celery
from priorwatch.settings import Settings

from dicom_node import statuses

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per write when streaming an instance
# The largest instance a worker may file through POST /instances: a retrieved prior reaches a sink
# whole in memory (C-GET, WADO-RS hand bytes), so it is bounded like them; chest CR/DX are < 50 MB.
MAX_UPLOAD_BYTES = 1 << 30
SOURCE_AE_HEADER = "X-PriorWatch-Source-AE"  # the PACS a posted prior came from (the study's calling AE)
_INSTANCE_PATH = re.compile(r"^/instances/(\d{1,18})$")
_TEXT = {"Content-Type": "text/plain"}


def authorized(settings: Settings, headers: dict[str, str]) -> bool:
    """True when the request carries the node's shared secret (constant-time comparison)."""
    if not settings.node_token:
        return False  # no secret configured: the store is never served unauthenticated
    got = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return hmac.compare_digest(got.encode(), f"Bearer {settings.node_token}".encode())


def _stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def store_route(settings: Settings):  # type: ignore[no-untyped-def]
    spool = settings.spool_dir.resolve()

    def route(path: str, headers: dict[str, str]) -> RouteResult | None:
        m = _INSTANCE_PATH.match(path)
        if m is None:
            return None
        if not authorized(settings, headers):
            return 401, {**_TEXT, "WWW-Authenticate": "Bearer"}, b"missing or wrong token\n"
        with session_scope(settings) as s:
            stored = s.exec(select(Instance.path).where(Instance.id == int(m.group(1)))).first()
        if stored is None:
            return 404, _TEXT, b"no such instance\n"
        p = Path(stored).resolve()
        if not p.is_relative_to(spool) or not p.is_file():
            return 404, _TEXT, b"instance not in this node's store\n"
        size = os.stat(p).st_size
        return 200, {"Content-Type": "application/dicom", "Content-Length": str(size)}, _stream(p)

    return route


def upload_route(settings: Settings):  # type: ignore[no-untyped-def]
    """POST /instances: a prior a worker retrieved, filed by this node's own ingest (role prior)."""
    from dicom_node.ingest import Ingest  # the node's own filing path: store-before-ack, checks, index

    ingest: list[Ingest] = []  # made on first use: a node that never gets one opens nothing

    def route(path: str, headers: dict[str, str], read_body: Callable[[], bytes]) -> RouteResult | None:
        if path != "/instances":
            return None
        if not authorized(settings, headers):
            return 401, {**_TEXT, "WWW-Authenticate": "Bearer"}, b"missing or wrong token\n"
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if ctype.split(";")[0].strip().lower() != "application/dicom":
            return 415, _TEXT, b"send one instance as application/dicom\n"
        if not ingest:
            ingest.append(Ingest(settings, create_schema=False))
        source = next((v for k, v in headers.items() if k.lower() == SOURCE_AE_HEADER.lower()), "")[:16]
        res = ingest[0].store(read_body(), calling_ae=source, role=StudyRole.prior.value)
        body = json.dumps({"status": res.status, "comment": res.comment}).encode()
        return (200 if statuses.is_success(res.status) else 409), {"Content-Type": "application/json"}, body

    return route


def broker_ready(settings: Settings) -> str | None:
    """None when the broker the node hands jobs to answers, else why not."""
    try:
        with make_celery(settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        return f"broker: {type(exc).__name__}"
    return None


def node_service(settings: Settings, port: int | None = None) -> HttpService:
    """The node's HTTP service (not started). Ready: database, broker and DICOM port answer."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(settings))
    return HttpService(
        settings.node_http_host, settings.node_http_port if port is None else port, name="node",
        checks=[lambda: database_ready(settings), lambda: broker_ready(settings),
                lambda: tcp_ready("dicom", settings.dicom_host, settings.dicom_port)],
        registry=registry, routes=[store_route(settings)], post_routes=[upload_route(settings)],
        max_body_bytes=MAX_UPLOAD_BYTES,
    )


def start_service(settings: Settings) -> HttpService | None:
    """Entry point `priorwatch.services`: started by `serve` when `node_http_port` is set."""
    if settings.node_http_port is None:
        return None
    if not settings.node_token:
        log.warning("node_token is not set: the node serves health and metrics, but not its store")
    return node_service(settings).start()
