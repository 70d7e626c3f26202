"""No PHI in logs or errors: a pipeline that fails, run for real (node, worker process, broker),
leaves the patient's name and ID in no log file, no captured output and no Job.error; and an SQL
error's text carries no bound values (hide_parameters) on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pydicom
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from comparison import synthetic
from dicom_node import send_files
from priorwatch.db import get_engine, init_db, session_scope
from priorwatch.models import Job, JobState, Study
from priorwatch.settings import Settings
from tests.conftest import free_port
from workers.runtime import Runtime

NAME, PID = "CANARYSURNAME^CANARYGIVEN", "CANARY-PID-4471"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'phi.db'}"
        return
    schema = f"pw_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    yield f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}"
    with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


def test_sql_error_text_carries_no_bound_values(tmp_path: Path, db_url: str) -> None:
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    init_db(settings)
    with Session(get_engine(settings)) as s:
        s.add(Study(study_uid="1.2.826.0.1.44", patient_id=PID, patient_name=NAME))
        s.commit()
    with pytest.raises(IntegrityError) as err, Session(get_engine(settings)) as s:
        s.add(Study(study_uid="1.2.826.0.1.44", patient_id=PID, patient_name=NAME))  # duplicate UID
        s.commit()
    text = str(err.value)
    assert "INSERT INTO study" in text and "hidden" in text.lower()  # the statement, not its values
    assert NAME.split("^")[0] not in text and PID not in text


def test_failing_pipeline_leaves_no_phi_in_logs_or_job_error(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             capfd: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIORWATCH_LOG_LEVEL", "DEBUG")  # the worker process logs everything it may
    caplog.set_level(logging.DEBUG, logger="workers")
    caplog.set_level(logging.DEBUG, logger="dicom_node")
    caplog.set_level(logging.DEBUG, logger="priorwatch")
    case = synthetic.make_pair(tmp_path / "in", "PW-PHI-1", with_prior=False, scale=0.25)
    path = case.current_paths[0]
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = NAME, PID
    ds.save_as(path, enforce_file_format=True)
    settings = Settings(data_dir=tmp_path / "data", dicom_port=free_port(), triton_url=f"127.0.0.1:{free_port()}",
                        triton_timeout_s=1.0, task_max_retries=1, task_retry_backoff_s=0.2, completion_grace_s=0.2,
                        queue_name=f"pw-phi-{uuid.uuid4().hex[:8]}")
    with Runtime(settings) as rt:
        assert send_files([path], "127.0.0.1", rt.settings.dicom_port, settings.ae_title) == [0]
        deadline = time.monotonic() + 120
        job = None
        while time.monotonic() < deadline:
            with session_scope(settings) as s:
                job = s.exec(select(Job)).first()
            if job is not None and job.state == JobState.failed:
                break
            time.sleep(0.3)
    assert job is not None and job.state == JobState.failed, job
    assert "gave up after 2 attempts" in (job.error or "")  # it did fail, through the real worker
    with session_scope(settings) as s:
        assert s.exec(select(Study.patient_id)).one() == PID  # the canary was received and indexed
    texts = {str(p): p.read_text(errors="replace") for p in (settings.data_dir / "logs").rglob("*") if p.is_file()}
    worker_log = texts[str(settings.data_dir / "logs" / "worker.log")]
    assert "DEBUG" in worker_log and f"job {job.id}" in worker_log  # the logs are there, and verbose
    out, err = capfd.readouterr()
    texts.update({"job.error": job.error or "", "captured log": caplog.text, "stdout": out, "stderr": err})
    for where, text in texts.items():
        for phi in (PID, "CANARYSURNAME", "CANARYGIVEN"):
            assert phi not in text, f"{phi} found in {where}"
