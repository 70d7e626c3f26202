"""Urgent notices: outbox rows sent with back-off, signed, shown while they are not sent, sent once
even by racing senders, `failed` with the reason when they give up, and re-sent by `retry`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlmodel import Session, select

from priorwatch.db import init_db
from priorwatch.models import Comparison, Delivery, Finding, Job, Study
from priorwatch.settings import Settings, as_env
from tests.conftest import free_port
from workers.deliver import add_outbox_rows, deliver, send_due
from workers.errors import TransientError

SECRET = "s3cret"


def _urgent_result(settings: Settings, outbox: bool = False) -> int:
    engine = init_db(settings)
    with Session(engine) as s:
        st = Study(study_uid="1.2.826.0.1.99.1", patient_id="P", accession="ACC-URG")
        s.add(st)
        s.commit()
        job = Job(study_id=st.id, idempotency_key="k1")
        s.add(job)
        s.commit()
        comp = Comparison(job_id=job.id, study_id=st.id, urgent=True, draft_text="PRELIMINARY. New pneumothorax.")
        s.add(comp)
        s.flush()
        s.add(Finding(comparison_id=comp.id, finding="pneumothorax", side="left", zone="upper", change="new",
                      urgent=True, confidence=0.9))
        if outbox:
            add_outbox_rows(s, int(comp.id), settings, urgent=True)  # type: ignore[arg-type]
        s.commit()
        return int(comp.id)  # type: ignore[arg-type]


class Receiver:
    """A webhook endpoint on loopback that answers `status` and records each call."""

    def __init__(self, port: int, status: int = 200, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[dict, dict]] = []  # type: ignore[type-arg]
        self.status, self.delay_s = status, delay_s
        outer = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(outer.delay_s)
                outer.calls.append((json.loads(body), {**{k.lower(): v for k, v in self.headers.items()}, "_body": body}))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", port), Hook)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def _status(settings: Settings) -> str:
    return subprocess.run([sys.executable, "-m", "priorwatch.cli", "status"], env={**os.environ, **as_env(settings)},
                          capture_output=True, text=True, check=True, timeout=60).stdout


def test_urgent_webhook_retried_shown_signed_and_sent_once(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, urgent_webhook_url=f"http://127.0.0.1:{port}/hook",
                        urgent_webhook_secret=SECRET)
    cid = _urgent_result(settings)

    with pytest.raises(TransientError, match="webhook unreachable"):
        deliver(cid, settings)  # nobody listens yet
    assert "delivery webhook pending ACC-URG" in _status(settings)

    rx = Receiver(port)
    try:
        assert deliver(cid, settings) == {"webhook": "sent"}
        assert deliver(cid, settings) == {"webhook": "sent"}  # a retried task does not send again
        assert send_due(settings) == {}  # nor does the sweeper
    finally:
        rx.close()
    assert len(rx.calls) == 1
    payload, headers = rx.calls[0]
    assert payload["accession_number"] == "ACC-URG" and payload["findings"][0]["finding"] == "pneumothorax"
    assert headers["idempotency-key"] == f"priorwatch-{cid}-webhook"
    ts = headers["x-priorwatch-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + headers["_body"], hashlib.sha256).hexdigest()
    assert headers["x-priorwatch-signature"] == want
    forged = "sha256=" + hmac.new(b"other", ts.encode() + b"." + headers["_body"], hashlib.sha256).hexdigest()
    assert headers["x-priorwatch-signature"] != forged
    with Session(init_db(settings)) as s:
        d = s.exec(select(Delivery)).one()
        assert d.state == "sent" and d.attempts == 2


def test_racing_sweepers_send_an_urgent_notice_once(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, urgent_webhook_url=f"http://127.0.0.1:{port}/hook")
    _urgent_result(settings, outbox=True)
    rx = Receiver(port, delay_s=0.3)  # slow: both sweepers look while the first send is under way
    try:
        results: list[dict[str, int]] = []
        threads = [threading.Thread(target=lambda: results.append(send_due(settings))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        rx.close()
    assert len(rx.calls) == 1
    assert sorted(results, key=len) == [{}, {}, {}, {"sent": 1}]


def test_a_delivery_that_gives_up_is_failed_with_its_reason_and_retry_sends_it(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, urgent_webhook_url=f"http://127.0.0.1:{port}/hook",
                        delivery_max_attempts=2, delivery_backoff_s=0.1)
    _urgent_result(settings, outbox=True)
    rx = Receiver(port, status=503)
    try:
        assert send_due(settings) == {"pending": 1}
        assert send_due(settings) == {}  # backing off
        time.sleep(0.15)
        assert send_due(settings) == {"failed": 1}  # second attempt: gives up
        time.sleep(0.3)
        assert send_due(settings) == {}  # failed stays failed: no endless retries
        assert "delivery webhook failed ACC-URG: gave up after 2 attempts: webhook HTTP 503" in _status(settings)
        rx.status = 200
        out = subprocess.run([sys.executable, "-m", "priorwatch.cli", "retry"], env={**os.environ, **as_env(settings)},
                             capture_output=True, text=True, check=True, timeout=60).stdout
    finally:
        rx.close()
    assert "1 failed deliveries re-sent now: 1 sent" in out, out
    assert len(rx.calls) == 3
    assert "delivery webhook" not in _status(settings)
