"""Server-mode variants of end-to-end suites that ran on SQLite only: the same test bodies with
PostgreSQL (a schema of their own) and Redis chosen by settings (PRIORWATCH_DATABASE_URL /
PRIORWATCH_BROKER_URL in the environment, as a site would set them). PostgreSQL enforces
lengths, types and constraints that SQLite lets pass. (Registration and VLM pipelines: tests/e2e.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import HTTPServer
from pathlib import Path

import pytest
import redis

import tests.monitoring.test_hl7 as hl7_suite
import tests.pacs.test_pipeline_with_orthanc as pacs_suite
import tests.workers.test_delivery as delivery_suite
from monitoring.hl7 import MLLPListener
from monitoring.settings import MonitoringSettings
from priorwatch.db import init_db, session_scope
from priorwatch.models import Study
from priorwatch.settings import Settings, reset_settings_cache
from tests.e2e.test_pipeline_end_to_end import pg_url  # noqa: F401 (fixture)


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch, pg_url: str) -> Iterator[str]:  # noqa: F811
    redis.Redis(host="127.0.0.1", port=6379).ping()
    monkeypatch.setenv("PRIORWATCH_DATABASE_URL", pg_url)
    monkeypatch.setenv("PRIORWATCH_BROKER_URL", "redis://127.0.0.1:6379/5")
    reset_settings_cache()
    yield pg_url
    reset_settings_cache()


@pytest.mark.server
@pytest.mark.triton
def test_pacs_prior_pulled_and_sr_stored_back_on_postgresql_and_redis(tmp_path: Path, server_env: str) -> None:
    class Hook(pacs_suite._Hook):
        received: list[dict] = []  # type: ignore[type-arg]

    srv = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        pacs_suite.test_prior_pulled_from_pacs_and_sr_stored_back(
            tmp_path, "c-get", (f"http://127.0.0.1:{srv.server_port}/urgent", Hook.received))
    finally:
        srv.shutdown()


@pytest.mark.server
def test_urgent_webhook_delivery_on_postgresql(tmp_path: Path, server_env: str) -> None:
    assert Settings(data_dir=tmp_path).resolved_database_url == server_env
    delivery_suite.test_urgent_webhook_retried_shown_signed_and_sent_once(tmp_path)


@pytest.mark.server
def test_hl7_signed_report_filed_on_postgresql(tmp_path: Path, server_env: str) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.resolved_database_url == server_env
    init_db(settings)
    with session_scope(settings) as s:
        s.add(Study(study_uid="2.25.1", patient_id="P1", issuer="HOSP", accession="ACC1", institution="SITE_A"))
    with MLLPListener(settings, MonitoringSettings(timezone="Europe/Berlin"), host="127.0.0.1", port=0) as lst:
        hl7_suite.test_signed_report_filed_acked_audited_and_signed_time_in_utc(lst, settings)
