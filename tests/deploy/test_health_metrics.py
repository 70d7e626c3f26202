"""Liveness, readiness and Prometheus figures over real HTTP on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from priorwatch.db import init_db, session_scope
from priorwatch.metrics import DatabaseCollector, HttpService
from priorwatch.models import Comparison, Job, JobState, Study, StudyState, utcnow
from priorwatch.queue import make_celery
from priorwatch.settings import Settings
from prometheus_client import CollectorRegistry
from tests.conftest import free_port
from workers.metrics import worker_service


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_worker_is_live_but_not_ready_while_triton_is_down(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, triton_url=f"127.0.0.1:{free_port()}", worker_http_port=0)
    init_db(settings)
    with worker_service(make_celery(settings), settings) as svc:
        base = f"http://127.0.0.1:{svc.port}"
        assert _get(f"{base}/livez") == (200, "ok\n")
        status, body = _get(f"{base}/readyz")
        assert status == 503 and "triton" in body and "database" not in body and "broker" not in body


def test_metrics_count_the_pipeline_from_the_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    init_db(settings)
    now = utcnow()
    with session_scope(settings) as s:
        studies = [Study(study_uid=f"1.2.3.{i}", patient_id=f"P{i}", state=st, completed_at=now - timedelta(seconds=30))
                   for i, st in enumerate((StudyState.done, StudyState.done, StudyState.failed, StudyState.receiving))]
        s.add_all(studies)
        s.flush()
        s.add_all([
            Job(study_id=studies[0].id, idempotency_key="a", state=JobState.done),
            Job(study_id=studies[1].id, idempotency_key="b", state=JobState.done),
            Job(study_id=studies[2].id, idempotency_key="c", state=JobState.failed,
                error="comparison engine unavailable: deadline exceeded"),
            Job(study_id=studies[3].id, idempotency_key="d", state=JobState.queued),
        ])
        s.flush()
        s.add_all([Comparison(job_id=1, study_id=studies[0].id, created_at=now),
                   Comparison(job_id=2, study_id=studies[1].id, created_at=now)])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(settings))
    with HttpService("127.0.0.1", 0, name="t", registry=registry) as svc:
        status, text = _get(f"http://127.0.0.1:{svc.port}/metrics")
    assert status == 200
    lines = set(text.splitlines())
    assert "priorwatch_studies_completed_total 2.0" in lines
    assert "priorwatch_queue_depth 1.0" in lines
    assert 'priorwatch_job_failures_total{reason="engine_unavailable"} 1.0' in lines
    assert 'priorwatch_job_latency_seconds_bucket{le="10.0"} 0.0' in lines
    assert 'priorwatch_job_latency_seconds_bucket{le="30.0"} 2.0' in lines
    assert "priorwatch_job_latency_seconds_count 2.0" in lines
