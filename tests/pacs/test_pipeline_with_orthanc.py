"""The full pipeline against a real PACS: a new study arrives at the node, its prior is pulled
from Orthanc (C-GET, C-MOVE or WADO-RS), the result is written as an SR and stored back in
Orthanc, and the urgent webhook is called once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from sqlmodel import select

from comparison import synthetic
from dicom_node import send_files
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Delivery, Job, JobState, Study
from priorwatch.settings import Settings
from priorwatch.vocabulary import Change, FindingType, Side, Zone
from tests.conftest import free_port, require_binary
from tests.peers import Orthanc
from workers.runtime import Runtime

NODE_AE = "PRIORWATCH"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []  # type: ignore[type-arg]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> tuple[str, list[dict]]:  # type: ignore[type-arg]
    class Hook(_Hook):
        received: list[dict] = []  # type: ignore[type-arg]

    srv = HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}/urgent", Hook.received
    srv.shutdown()


def _wait_done(settings: Settings, timeout: float = 180) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            jobs = s.exec(select(Job)).all()
        if jobs and all(j.state in (JobState.done, JobState.failed) for j in jobs):
            assert len(jobs) == 1, "only the new study runs the pipeline; fetched priors never do"
            return jobs[0]
        time.sleep(0.3)
    raise AssertionError("no result in time")


def _wait_delivered(settings: Settings, kinds: set[str], timeout: float = 60) -> list[Delivery]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            ds = s.exec(select(Delivery)).all()
        if {d.kind for d in ds if d.state == "sent"} >= kinds:
            return list(ds)
        time.sleep(0.3)
    raise AssertionError(f"deliveries not sent: {[(d.kind, d.state, d.error) for d in ds]}")


@pytest.mark.triton
@pytest.mark.parametrize("method", ["c-get", "c-move", "wado-rs"])
def test_prior_pulled_from_pacs_and_sr_stored_back(tmp_path: Path, method: str, webhook: tuple[str, list[dict]]) -> None:  # type: ignore[type-arg]
    require_binary("Orthanc")
    hook_url, received = webhook
    node_port = free_port()
    pair = synthetic.make_pair(tmp_path / "in", "PW-ORTH-1", lesion=FindingType.pneumothorax, change=Change.new,
                               side=Side.left, zone=Zone.upper, seed=7)
    with Orthanc(tmp_path / "orthanc", modalities={"pw": (NODE_AE, "127.0.0.1", node_port)}) as pacs:
        for p in pair.prior_paths:
            pacs.upload(p)
        settings = Settings(
            data_dir=tmp_path / "data", dicom_port=node_port, ae_title=NODE_AE,
            triton_grpc_port=free_port(), triton_http_port=free_port(), triton_metrics_port=free_port(),
            completion_grace_s=0.3, queue_name=f"pw-{uuid.uuid4().hex[:8]}",
            pacs_ae_title=pacs.aet, pacs_port=pacs.dicom_port, pacs_retrieve=method,
            pacs_dicomweb_url=pacs.dicomweb_url, send_sr_to_pacs=True, urgent_webhook_url=hook_url,
            task_retry_backoff_s=0.3,
        )
        with Runtime(settings) as rt:
            assert send_files(pair.current_paths, "127.0.0.1", node_port, NODE_AE, calling_ae="CR01") == [0]
            job = _wait_done(rt.settings)
            assert job.state == JobState.done, job.error
            _wait_delivered(rt.settings, {"sr", "webhook"})

        with session_scope(settings) as s:
            comp = s.exec(select(Comparison)).one()
            prior = s.get(Study, comp.prior_study_id)
            assert prior is not None and prior.study_uid == pair.prior_study_uid
            assert prior.role == "prior" and prior.n_instances == len(pair.prior_paths)
            assert comp.status == "done" and comp.urgent
            sr_uid = s.exec(select(Delivery).where(Delivery.kind == "sr")).one().sop_instance_uid

        # The SR is in Orthanc, in the current study, and says it is a preliminary AI draft.
        found = pacs.rest("/tools/find", data=json.dumps(
            {"Level": "Instance", "Query": {"SOPInstanceUID": sr_uid}, "Expand": True}).encode(), method="POST")
        assert len(found) == 1
        tags = pacs.rest(f"/instances/{found[0]['ID']}/simplified-tags")
        assert tags["StudyInstanceUID"] == pair.current_study_uid
        assert tags["Modality"] == "SR" and tags["CompletionFlag"] == "PARTIAL"
        assert tags["VerificationFlag"] == "UNVERIFIED"
    assert len(received) == 1, "one urgent notice, never a duplicate"
    assert received[0]["accession_number"] == pair.accession
    assert any(f["finding"] == "pneumothorax" for f in received[0]["findings"])
