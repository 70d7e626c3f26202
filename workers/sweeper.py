"""The sweeper: hands lost jobs out again and sends due outbox rows. State lives in the database,
a broker message is only a pointer, so a pointer that vanished is simply sent again.

Lost jobs are
  * running, with a lease that expired: the worker died (kill -9, OOM, a lost machine);
  * handed to the broker and not started within `job_start_timeout_s` of being due while no job
    started at all (or within IN_LINE_FACTOR times that, whatever): the broker lost the message
    (Redis without persistence restarted; the filesystem transport deletes a message when a
    worker takes it, and that worker died before taking the job's lease);
  * never handed to the broker for a while (the node that sends them is not running).
Every change is a conditional UPDATE, so several sweepers (serve's loop, beat, `retry`) agree,
and a second copy of a message is harmless: the job's lease admits one worker at a time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import and_, func, or_, select, update

from priorwatch.db import get_engine
from priorwatch.models import Job, JobState, Study, StudyState, utcnow
from priorwatch.queue import enqueue_study_job, make_celery
from priorwatch.settings import Settings
from workers.deliver import send_due
from workers.lease import max_attempts
from workers.pipeline import mark_failed

log = logging.getLogger(__name__)

job_t = Job.__table__  # type: ignore[attr-defined]
study_t = Study.__table__  # type: ignore[attr-defined]

UNSENT_GRACE_S = 10.0  # the node sends new jobs within a tick; the sweeper only takes older ones
# While jobs keep starting, a job not yet started is most likely still in line behind them: it is
# re-sent only when nothing started for job_start_timeout_s (the queue stalled: its messages are
# gone), or once it waited this many timeouts (so a lost message cannot starve behind new work).
IN_LINE_FACTOR = 4.0


@dataclass
class SweepReport:
    expired: list[int] = field(default_factory=list)  # leases that expired: re-sent
    stale: list[int] = field(default_factory=list)  # handed over, never started: re-sent
    unsent: list[int] = field(default_factory=list)  # never handed over: sent
    failed: list[int] = field(default_factory=list)  # too many lost attempts
    deliveries: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.expired or self.stale or self.unsent or self.failed or self.deliveries)


_publishers: dict[tuple[str, str, str], Celery] = {}


def publisher(settings: Settings) -> Celery:
    """A Celery app that fails fast when the broker is down (the next sweep tries again); one per
    broker and queue in a process, so repeated sweeps reuse its connection pool."""
    key = (settings.resolved_broker_url, settings.queue_name, str(settings.broker_dir))
    if key not in _publishers:
        app = make_celery(settings)
        app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                              "interval_max": 0.2}
        app.conf.broker_connection_timeout = 2.0
        _publishers[key] = app
    return _publishers[key]


def _resend(settings: Settings, app: Celery, job_id: int, where: object) -> bool:
    """Claim the job for sending (one conditional UPDATE), then send; undo the claim on failure."""
    now = utcnow()
    with get_engine(settings).begin() as conn:
        n = conn.execute(update(job_t).where(and_(job_t.c.id == job_id, where)).values(  # type: ignore[arg-type]
            state=JobState.queued.value, leased_by=None, lease_expires_at=None, enqueued_at=now, updated_at=now,
        )).rowcount
    if n != 1:
        return False
    try:
        enqueue_study_job(app, job_id)
    except Exception as exc:
        with get_engine(settings).begin() as conn:
            conn.execute(update(job_t).where(and_(job_t.c.id == job_id, job_t.c.enqueued_at == now))
                         .values(enqueued_at=None))
        log.warning("broker unavailable (%s); job %s left for the next sweep", type(exc).__name__, job_id)
        raise
    return True


def sweep_jobs(settings: Settings, app: Celery, now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    rep = SweepReport()
    ttl_ago = now - timedelta(seconds=settings.lease_ttl_s)
    start_ago = now - timedelta(seconds=settings.job_start_timeout_s)
    expired = and_(job_t.c.state == JobState.running.value,
                   or_(job_t.c.lease_expires_at < now,
                       and_(job_t.c.lease_expires_at.is_(None), job_t.c.updated_at < ttl_ago)))
    with get_engine(settings).connect() as conn:
        last_start = conn.execute(select(func.max(job_t.c.started_at))).scalar()
    stalled = last_start is None or last_start < start_ago
    waited = start_ago if stalled else now - timedelta(seconds=settings.job_start_timeout_s * IN_LINE_FACTOR)
    stale = and_(job_t.c.state == JobState.queued.value, job_t.c.enqueued_at.is_not(None),
                 func.coalesce(job_t.c.next_attempt_at, job_t.c.enqueued_at) < waited,
                 job_t.c.enqueued_at < waited)
    unsent = and_(job_t.c.state == JobState.queued.value, job_t.c.enqueued_at.is_(None),
                  job_t.c.updated_at < now - timedelta(seconds=UNSENT_GRACE_S),
                  or_(job_t.c.next_attempt_at.is_(None), job_t.c.next_attempt_at <= now))
    with get_engine(settings).connect() as conn:
        rows = {
            "expired": conn.execute(select(job_t.c.id, job_t.c.attempts, job_t.c.leased_by).where(expired)).all(),
            "stale": conn.execute(select(job_t.c.id, job_t.c.attempts, job_t.c.leased_by).where(stale)).all(),
            "unsent": conn.execute(select(job_t.c.id, job_t.c.attempts, job_t.c.leased_by).where(unsent)).all(),
        }
    try:
        for r in rows["expired"]:
            if r.attempts >= max_attempts(settings):
                mark_failed(r.id, f"gave up after {r.attempts} attempts: the worker running it stopped "
                                  f"(lease expired) each time", settings)
                rep.failed.append(r.id)
                continue
            if _resend(settings, app, r.id, expired):
                log.warning("job %s: worker %s stopped (lease expired); sent again", r.id, r.leased_by or "?")
                rep.expired.append(r.id)
        for r in rows["stale"]:
            if _resend(settings, app, r.id, stale):
                log.warning("job %s: handed to the broker but not started; sent again", r.id)
                rep.stale.append(r.id)
        for r in rows["unsent"]:
            if _resend(settings, app, r.id, unsent):
                rep.unsent.append(r.id)
    except Exception:  # broker down: what was not sent stays for the next sweep
        pass
    _sync_study_states(settings)
    return rep


def _sync_study_states(settings: Settings) -> None:
    """A job re-sent after it was marked failed (`retry`) puts its study back in the queue."""
    with get_engine(settings).begin() as conn:
        conn.execute(
            update(study_t).where(and_(
                study_t.c.state == StudyState.failed.value,
                select(job_t.c.id).where(and_(job_t.c.study_id == study_t.c.id,
                                              job_t.c.study_version == study_t.c.version,
                                              job_t.c.state.in_([JobState.queued.value, JobState.running.value])))
                .exists(),
            )).values(state=StudyState.queued.value)
        )


def sweep(settings: Settings, app: Celery | None = None) -> SweepReport:
    """One pass: lost jobs, then due deliveries."""
    rep = sweep_jobs(settings, app or publisher(settings))
    rep.deliveries = send_due(settings)
    return rep


def retry_failed_jobs(settings: Settings, app: Celery | None = None) -> int:
    """`priorwatch retry`: failed jobs back to queued with a fresh attempt count, and sent (or left
    unsent for the node and the sweeper when the broker is down)."""
    now = utcnow()
    with get_engine(settings).begin() as conn:
        ids = list(conn.execute(select(job_t.c.id).where(job_t.c.state == JobState.failed.value)).scalars())
        if ids:
            conn.execute(update(job_t).where(and_(job_t.c.id.in_(ids), job_t.c.state == JobState.failed.value)).values(
                state=JobState.queued.value, attempts=0, enqueued_at=None, next_attempt_at=None, leased_by=None,
                lease_expires_at=None, error="retry requested by the operator", updated_at=now,
            ))
    _sync_study_states(settings)
    if ids:
        app = app or publisher(settings)
        unsent = and_(job_t.c.state == JobState.queued.value, job_t.c.enqueued_at.is_(None))
        try:
            for i in ids:
                _resend(settings, app, i, unsent)
        except Exception:
            pass  # left unsent: the node (or the sweeper) sends it when the broker is back
    return len(ids)


class SweeperThread(threading.Thread):
    """serve's sweeper: one pass every `sweep_interval_s`, never dying of a failed pass."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="priorwatch-sweeper", daemon=True)
        self.settings = settings
        self._stop_event = threading.Event()
        self._app: Celery | None = None
        self.passes = 0

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.sweep_interval_s):
            try:
                if self._app is None:
                    self._app = publisher(self.settings)
                rep = sweep(self.settings, self._app)
                self.passes += 1
                if rep:
                    log.info("sweep: re-sent %d expired, %d stale, %d unsent; %d failed; deliveries %s",
                             len(rep.expired), len(rep.stale), len(rep.unsent), len(rep.failed), rep.deliveries)
            except Exception as exc:
                log.error("sweep failed: %s", type(exc).__name__, exc_info=True)
