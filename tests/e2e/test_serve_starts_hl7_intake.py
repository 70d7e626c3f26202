"""`priorwatch serve` (the Runtime with services) starts the other rooms' listeners by entry
point: a signed report sent over MLLP to the running site is filed against its study."""

from __future__ import annotations

from pathlib import Path

import pytest
from hl7.client import MLLPClient
from sqlmodel import Session, select

from monitoring.settings import get_monitoring_settings
from priorwatch.db import get_engine, init_db
from priorwatch.models import SignedReport, Study
from tests.conftest import free_port
from tests.monitoring.test_hl7 import ack_code, oru
from tests.e2e.test_pipeline_end_to_end import _settings
from workers.runtime import Runtime


def test_serve_runtime_receives_signed_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("PRIORWATCH_MONITORING_HL7_PORT", str(port))
    get_monitoring_settings.cache_clear()
    # No engine needed to receive reports: a remote Triton URL keeps the local one from starting.
    settings = _settings(tmp_path / "data", triton_url=f"127.0.0.1:{free_port()}")
    init_db(settings)
    with Session(get_engine(settings)) as s:
        s.add(Study(study_uid="2.25.99", patient_id="P1", accession="ACC1"))
        s.commit()
    try:
        with Runtime(settings, workers=False, services=True):
            with MLLPClient("127.0.0.1", port) as c:
                assert ack_code(c.send_message(oru(control_id="SERVE1"))) == "AA"
        with Session(get_engine(settings)) as s:
            rep = s.exec(select(SignedReport)).one()
        assert rep.accession == "ACC1" and rep.message_control_id == "SERVE1"
    finally:
        get_monitoring_settings.cache_clear()
