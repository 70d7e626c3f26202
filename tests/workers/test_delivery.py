"""Urgent notices are retried until delivered, shown while they are not, and never sent twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from sqlmodel import Session, select

from priorwatch.db import init_db
from priorwatch.models import Comparison, Delivery, Finding, Job, Study
from priorwatch.settings import Settings, as_env
from tests.conftest import free_port
from workers.deliver import deliver
from workers.errors import TransientError


def _urgent_result(settings: Settings) -> int:
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
        s.commit()
        s.add(Finding(comparison_id=comp.id, finding="pneumothorax", side="left", zone="upper", change="new",
                      urgent=True, confidence=0.9))
        s.commit()
        return int(comp.id)  # type: ignore[arg-type]


def test_urgent_webhook_retried_shown_and_sent_once(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, urgent_webhook_url=f"http://127.0.0.1:{port}/hook")
    cid = _urgent_result(settings)

    with pytest.raises(TransientError, match="webhook unreachable"):
        deliver(cid, settings)  # nobody listens yet
    status = subprocess.run([sys.executable, "-m", "priorwatch.cli", "status"], env={**os.environ, **as_env(settings)},
                            capture_output=True, text=True, check=True, timeout=60).stdout
    assert "delivery webhook pending ACC-URG" in status, status

    received: list[dict] = []  # type: ignore[type-arg]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert deliver(cid, settings) == {"webhook": "sent"}
        assert deliver(cid, settings) == {"webhook": "sent"}  # a retried task does not send again
    finally:
        srv.shutdown()
    assert len(received) == 1
    assert received[0]["accession_number"] == "ACC-URG" and received[0]["findings"][0]["finding"] == "pneumothorax"
    with Session(init_db(settings)) as s:
        d = s.exec(select(Delivery)).one()
        assert d.state == "sent" and d.attempts == 2
