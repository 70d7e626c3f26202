"""Where the sender is our queryable PACS, the node confirms the instance count by C-FIND before
closing a study on release: a partial push waits for the rest instead of running early."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sqlmodel import select

from dicom_node import StorageNode
from priorwatch.db import session_scope
from priorwatch.models import Job, Study
from priorwatch.settings import Settings
from tests.conftest import free_port, require_binary
from tests.pacs.conftest import write_study
from tests.peers import Orthanc


def _push(pacs: Orthanc, ids: list[str]) -> None:
    pacs.rest("/modalities/pw/store", data=json.dumps({"Resources": ids, "Synchronous": True}).encode(), method="POST")


def _state(settings: Settings) -> tuple[str, int, int]:
    with session_scope(settings) as s:
        st = s.exec(select(Study)).one()
        return st.state, st.n_instances, len(s.exec(select(Job)).all())


def test_partial_push_from_pacs_waits_for_the_rest(tmp_path: Path) -> None:
    require_binary("Orthanc")
    node_port = free_port()
    _, paths = write_study("CT_small.dcm", tmp_path, patient_id="PW-CNT", issuer="H", date="20250101",
                           modality="CR", body="CHEST", n=3)
    with Orthanc(tmp_path / "orthanc", modalities={"pw": ("PRIORWATCH", "127.0.0.1", node_port)}) as pacs:
        ids = [pacs.upload(p) for p in paths]
        settings = Settings(data_dir=tmp_path / "data", dicom_port=node_port, completion_grace_s=0.3,
                            quiet_period_s={"default": 60.0}, pacs_ae_title=pacs.aet, pacs_port=pacs.dicom_port,
                            queue_name=f"pw-{uuid.uuid4().hex[:8]}")
        with StorageNode(settings):
            _push(pacs, ids[:2])  # the PACS forwards two of three, then releases
            time.sleep(2.0)  # well past the grace period
            assert _state(settings) == ("receiving", 2, 0), "the PACS holds 3: not complete yet"
            _push(pacs, ids[2:])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _state(settings)[2] == 0:
                time.sleep(0.2)
            assert _state(settings) == ("queued", 3, 1)
