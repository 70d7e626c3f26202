"""Leases and the sweeper on a real SQLite database and the real filesystem broker: one worker at
a time per job, a dead worker's job handed out again, a lost broker message sent again, and a
result written once per job whatever attempts race."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlmodel import Session, select

from comparison import CompareContext
from priorwatch.db import init_db, session_scope
from priorwatch.models import Comparison, Delivery, Job, JobState, Study, WorklistItem, utcnow
from priorwatch.settings import Settings
from priorwatch.vocabulary import ComparisonResult
from workers.lease import take_lease
from workers.pipeline import _store_result
from workers.priors import PriorChoice
from workers.sweeper import publisher, retry_failed_jobs, sweep_jobs


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, queue_name="pw-lease-test", lease_ttl_s=0.3, job_start_timeout_s=30.0,
                    task_max_retries=2, urgent_webhook_url="http://127.0.0.1:9/hook", **kw)  # type: ignore[arg-type]


def _job(settings: Settings, **kw: object) -> int:
    with Session(init_db(settings)) as s:
        st = Study(study_uid=f"1.2.826.0.1.5.{time.monotonic_ns()}", patient_id="P")
        s.add(st)
        s.commit()
        job = Job(study_id=st.id, idempotency_key=f"k{time.monotonic_ns()}", **kw)  # type: ignore[arg-type]
        s.add(job)
        s.commit()
        return int(job.id)  # type: ignore[arg-type]


def _messages(settings: Settings) -> list[str]:
    """The job ids in the filesystem broker's queue folder (one file per message)."""
    import base64
    import json

    ids = []
    for f in settings.broker_dir.glob(f"*.{settings.queue_name}.msg"):
        body = json.loads(f.read_text())["body"]
        ids.append(str(json.loads(base64.b64decode(body))[0][0]))
    return sorted(ids)


def test_a_job_has_one_lease_holder_and_an_expired_lease_can_be_taken_over(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job_id = _job(settings)
    first = take_lease(job_id, settings)
    assert first is not None and first.attempt == 1
    assert take_lease(job_id, settings) is None  # a second copy of the message finds it held
    assert first.refresh()  # the heartbeat keeps it
    time.sleep(0.4)  # no heartbeat: the lease expires (the worker died)
    second = take_lease(job_id, settings)
    assert second is not None and second.attempt == 2 and second.token != first.token
    assert not first.refresh()  # the old holder learns that it lost the lease


def test_sweeper_resends_the_job_of_a_dead_worker_and_a_message_the_broker_lost(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    dead = _job(settings)
    assert take_lease(dead, settings) is not None
    lost = _job(settings, enqueued_at=utcnow() - timedelta(seconds=200))  # never started in 4+ timeouts
    in_line = _job(settings, enqueued_at=utcnow() - timedelta(seconds=60))  # jobs are starting: still in line
    fresh = _job(settings, enqueued_at=utcnow())  # handed over just now
    time.sleep(0.4)
    rep = sweep_jobs(settings, publisher(settings))
    assert rep.expired == [dead] and rep.stale == [lost] and not rep.failed
    assert _messages(settings) == sorted([str(dead), str(lost)])  # real messages in the real broker
    with session_scope(settings) as s:
        states = {j.id: (j.state, j.leased_by) for j in s.exec(select(Job)).all()}
    assert states[dead] == (JobState.queued, None) and states[fresh][0] == states[in_line][0] == JobState.queued
    assert sweep_jobs(settings, publisher(settings)).expired == []  # re-sent once, not on every pass


def test_when_no_job_starts_for_a_timeout_the_queued_ones_are_sent_again(tmp_path: Path) -> None:
    settings = _settings(tmp_path)  # e.g. Redis without persistence restarted empty: nothing arrives
    old = _job(settings, enqueued_at=utcnow() - timedelta(seconds=40), started_at=utcnow() - timedelta(seconds=90))
    fresh = _job(settings, enqueued_at=utcnow() - timedelta(seconds=5))
    rep = sweep_jobs(settings, publisher(settings))
    assert rep.stale == [old] and fresh not in rep.stale
    assert _messages(settings) == [str(old)]


def test_a_job_whose_worker_dies_every_time_fails_with_the_reason(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job_id = _job(settings, attempts=2)
    assert take_lease(job_id, settings) is not None  # attempt 3 of 3
    time.sleep(0.4)
    rep = sweep_jobs(settings, publisher(settings))
    assert rep.failed == [job_id]
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == JobState.failed
        assert "gave up after 3 attempts" in (job.error or "") and "lease expired" in (job.error or "")
    assert retry_failed_jobs(settings, publisher(settings)) == 1  # `priorwatch retry`
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == JobState.queued and job.attempts == 0
    assert _messages(settings) == [str(job_id)]


def test_result_is_written_once_per_job_with_its_outbox_rows(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job_id = _job(settings)
    with session_scope(settings) as s:
        study_id = s.get(Job, job_id).study_id  # type: ignore[union-attr]
    assert take_lease(job_id, settings) is not None
    result = ComparisonResult(engine="registration", engine_version="1", model="m", model_version="1",
                              has_prior=False, draft_text="PRELIMINARY.", urgent=True)
    args = (settings, job_id, study_id, 1, PriorChoice(prior_id=None, reason="none"), CompareContext(), result, None,
            utcnow(), None, np.zeros((8, 8), dtype=np.float32))
    first = _store_result(*args)
    assert first is not None
    assert _store_result(*args) is None  # a second attempt of the same job writes nothing
    with session_scope(settings) as s:
        assert len(s.exec(select(Comparison)).all()) == 1
        assert len(s.exec(select(WorklistItem)).all()) == 1
        rows = s.exec(select(Delivery)).all()
        job = s.get(Job, job_id)
    assert [(d.comparison_id, d.kind, d.state, d.idempotency_key) for d in rows] == \
        [(first, "webhook", "pending", f"priorwatch-{first}-webhook")]
    assert job is not None and job.state == JobState.done and job.leased_by is None
