"""`priorwatch status` says why each waiting job waits, from the job's own row."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from priorwatch.db import init_db
from priorwatch.export import waiting_jobs
from priorwatch.models import Job, JobState, Study, utcnow
from priorwatch.settings import Settings


def test_each_waiting_job_has_its_reason(tmp_path: Path) -> None:
    now = utcnow()
    s_ = timedelta(seconds=1)
    jobs = {
        "unsent": dict(state=JobState.queued),
        "in_broker": dict(state=JobState.queued, enqueued_at=now - 40 * s_),
        "retry": dict(state=JobState.queued, enqueued_at=now, attempts=2, next_attempt_at=now + 30 * s_,
                      error="retrying: comparison engine unavailable: refused"),
        "running": dict(state=JobState.running, attempts=1, leased_by="host:12:ab", lease_expires_at=now + 50 * s_,
                        heartbeat_at=now - 3 * s_),
        "dead": dict(state=JobState.running, attempts=1, leased_by="host:13:cd", lease_expires_at=now - 20 * s_),
        "finished": dict(state=JobState.done),
    }
    with Session(init_db(Settings(data_dir=tmp_path))) as s:
        for i, (acc, kw) in enumerate(jobs.items()):
            st = Study(study_uid=f"1.2.826.0.1.6.{i}", patient_id="P", accession=acc)
            s.add(st)
            s.flush()
            s.add(Job(study_id=st.id, idempotency_key=acc, **kw))  # type: ignore[arg-type]
        s.commit()
        why = {acc: reason for acc, _, reason in waiting_jobs(s, now)}
    assert set(why) == {"unsent", "in_broker", "retry", "running", "dead"}  # done jobs do not wait
    assert why["unsent"].startswith("not yet handed to the broker")
    assert why["in_broker"] == "in the broker for 40s, waiting for a free worker"
    assert why["retry"] == "retry 3 due in 30s after: comparison engine unavailable: refused"
    assert why["running"] == "running on host:12:ab (attempt 1, heartbeat 3s ago)"
    assert why["dead"].startswith("its worker (host:13:cd) stopped answering 20s ago (lease expired)")
