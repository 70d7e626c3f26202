"""The walking skeleton end to end, with real parts: a pynetdicom SCU and DCMTK `storescu`
send chest CR studies to the node; a real Celery worker process runs the pipeline through
the real local `tritonserver`; results land on the worklist. Embedded and server mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from sqlmodel import select

from comparison import synthetic
from dicom_node import send_files
from priorwatch.db import session_scope
from priorwatch.export import worklist_rows
from priorwatch.models import Comparison, Finding, Job, JobState, Study, WorklistItem
from priorwatch.settings import Settings, as_env
from tests.conftest import free_port, require_binary
from workers.runtime import Runtime

ARCHIVE, MODALITY = "PW_ARCHIVE", "PW_MODALITY"


def _settings(data_dir: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        data_dir=data_dir,
        dicom_port=free_port(),
        triton_grpc_port=free_port(),
        triton_http_port=free_port(),
        triton_metrics_port=free_port(),
        allowed_calling_aes=[ARCHIVE, MODALITY, "STORESCU"],
        prior_source_aes=[ARCHIVE],
        completion_grace_s=0.3,
        task_max_retries=2,
        task_retry_backoff_s=0.3,
        queue_name=f"pw-test-{uuid.uuid4().hex[:8]}",
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def _wait_jobs(settings: Settings, n: int, timeout: float = 240) -> list[Job]:
    deadline = time.monotonic() + timeout
    jobs: list[Job] = []
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            jobs = list(s.exec(select(Job)).all())
        if len([j for j in jobs if j.state in (JobState.done, JobState.failed)]) >= n:
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"only {[(j.id, j.state, j.error) for j in jobs]} after {timeout}s")


def _storescu(paths: list[Path], port: int, calling: str, called: str) -> None:
    exe = require_binary("storescu")
    env = {**os.environ, "TCP_NODELAY": "1"}
    subprocess.run([exe, "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, paths)],
                   check=True, env=env, capture_output=True, timeout=60)


def _run_pipeline(settings: Settings, tmp_path: Path) -> None:
    cases = synthetic.demo_cases(tmp_path / "input")
    with Runtime(settings) as rt:
        port = rt.settings.dicom_port
        priors = [c for c in cases if c.prior_paths]
        for c in priors:
            assert all(st == 0 for st in send_files(c.prior_paths, "127.0.0.1", port, settings.ae_title, calling_ae=ARCHIVE))
        for i, c in enumerate(cases):
            if i == 0:  # one current study through DCMTK's storescu, the rest through pynetdicom
                _storescu(list(c.current_paths), port, "STORESCU", settings.ae_title)
            else:
                assert all(st == 0 for st in send_files(c.current_paths, "127.0.0.1", port, settings.ae_title, calling_ae=MODALITY))
        jobs = _wait_jobs(rt.settings, len(cases))

    # Exactly one job per current study; priors filed without a job.
    assert len(jobs) == len(cases), [(j.study_id, j.state) for j in jobs]
    assert all(j.state == JobState.done for j in jobs), [(j.state, j.error) for j in jobs]
    with session_scope(settings) as s:
        comps = s.exec(select(Comparison)).all()
        by_acc = {s.get(Study, c.study_id).accession: c for c in comps}  # type: ignore[union-attr]
        for case in cases:
            comp = by_acc[case.accession]
            assert comp.engine == "registration" and comp.engine_version
            if case.prior_paths:
                assert comp.status == "done" and comp.prior_study_id is not None
                assert comp.interval_days and comp.interval_days > 0
            else:
                assert comp.status == "no_prior" and comp.prior_study_id is None
                assert comp.no_prior_reason
        findings = s.exec(select(Finding)).all()
        urgent_accs = {s.get(Study, c.study_id).accession for c in comps if c.urgent}  # type: ignore[union-attr]
        expected_urgent = {c.accession for c in cases if c.urgent}
        assert expected_urgent <= urgent_accs, "every simulated urgent change must be flagged urgent"
        assert any(f.urgent for f in findings)
        items = s.exec(select(WorklistItem)).all()
        assert len(items) == len(cases)
        rows = worklist_rows(s)
    assert rows[0]["urgent"], "urgent studies come first on the worklist"

    # `priorwatch results --json` tells the same story, in the vocabulary.
    env = {**os.environ, **as_env(settings)}
    out = subprocess.run([sys.executable, "-m", "priorwatch.cli", "results", "--json"], env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    recs = json.loads(out.stdout)
    assert {r["accession_number"] for r in recs} == {c.accession for c in cases}
    for r in recs:
        assert {"current_study_uid", "prior_study_uid", "status", "urgent", "draft_text", "engine_version",
                "model_version", "findings"} <= set(r)
        for f in r["findings"]:
            assert f["change"] in {"new", "worsened", "stable", "improved", "resolved", "no_prior"}
            assert 0.0 <= f["confidence"] <= 1.0
    status = subprocess.run([sys.executable, "-m", "priorwatch.cli", "status"], env=env,
                            capture_output=True, text=True, check=True, timeout=60).stdout
    lines = status.splitlines()
    assert f"{'done':16s} {len(cases)}" in lines, status  # every study done ...
    assert f"{'jobs_done':16s} {len(cases)}" in lines, status  # ... by exactly one job each
    assert f"{'failed':16s} 0" in lines and f"{'jobs_failed':16s} 0" in lines, status


@pytest.mark.triton
def test_study_reaches_worklist_embedded(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data")
    assert settings.resolved_database_url.startswith("sqlite")
    assert settings.resolved_broker_url == "filesystem://"
    _run_pipeline(settings, tmp_path)


@pytest.fixture
def pg_url() -> str:
    schema = f"pw_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1 is required for server-mode tests: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}"
    with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.triton
@pytest.mark.server
def test_study_reaches_worklist_server_mode(tmp_path: Path, pg_url: str) -> None:
    redis.Redis(host="127.0.0.1", port=6379).ping()
    settings = _settings(tmp_path / "data", database_url=pg_url, broker_url="redis://127.0.0.1:6379/3")
    _run_pipeline(settings, tmp_path)


@pytest.mark.triton
def test_triton_down_job_retries_then_fails_visibly(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here
    settings = _settings(tmp_path / "data", triton_url=f"127.0.0.1:{dead}", task_max_retries=2,
                         task_retry_backoff_s=0.2, triton_timeout_s=2.0)
    case = synthetic.demo_cases(tmp_path / "input")[0]
    with Runtime(settings) as rt:
        send_files(case.current_paths, "127.0.0.1", rt.settings.dicom_port, settings.ae_title, calling_ae=MODALITY)
        jobs = _wait_jobs(rt.settings, 1, timeout=120)
    job = jobs[0]
    assert job.state == JobState.failed
    assert job.attempts == 3  # first try + 2 retries
    assert "unavailable" in (job.error or "") and "gave up after 3 attempts" in (job.error or "")
    env = {**os.environ, **as_env(settings)}
    status = subprocess.run([sys.executable, "-m", "priorwatch.cli", "status"], env=env,
                            capture_output=True, text=True, check=True, timeout=60).stdout
    assert "failed" in status and "gave up" in status
    with session_scope(settings) as s:
        study = s.get(Study, job.study_id)
        assert study is not None and study.state == "failed"
