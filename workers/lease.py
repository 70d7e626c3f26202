"""A job's lease: the database, not the broker, knows which worker runs a job and whether it lives.

A worker takes the lease with one conditional UPDATE (only a queued job, or a running one whose
lease expired, can be taken), so two copies of one message never run the job twice at once. A
heartbeat thread refreshes the lease while the job runs; a worker killed with -9 stops
refreshing it, and the sweeper (`workers.sweeper`) hands the job out again once it expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from priorwatch.db import get_engine
from priorwatch.models import Job, JobState, utcnow
from priorwatch.settings import Settings

log = logging.getLogger(__name__)

job_t = Job.__table__  # type: ignore[attr-defined]


def max_attempts(settings: Settings) -> int:
    """The first try plus `task_max_retries` retries; a lease that expired counts as a try."""
    return settings.task_max_retries + 1


def worker_token() -> str:
    """Who holds a lease: host, process and a per-attempt nonce (so a heartbeat is never mistaken
    for that of a later attempt on the same worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Lease:
    job_id: int
    token: str
    attempt: int
    settings: Settings
    lost: threading.Event = field(default_factory=threading.Event)

    def refresh(self) -> bool:
        """Push the expiry forward; False when the lease is no longer ours (expired and re-taken)."""
        now = utcnow()
        with get_engine(self.settings).begin() as conn:
            n = conn.execute(
                update(job_t)
                .where(and_(job_t.c.id == self.job_id, job_t.c.leased_by == self.token,
                            job_t.c.state == JobState.running.value))
                .values(lease_expires_at=now + timedelta(seconds=self.settings.lease_ttl_s), heartbeat_at=now)
            ).rowcount
        return n == 1

    @contextmanager
    def heartbeat(self) -> Iterator["Lease"]:
        """Refresh the lease every `lease_heartbeat_s` while the body runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.settings.lease_heartbeat_s):
                try:
                    if not self.refresh():
                        log.warning("job %s: lease lost (expired and taken over); its result is written once",
                                    self.job_id)
                        self.lost.set()
                        return
                except Exception as exc:  # a database hiccup: try again next beat
                    log.warning("job %s: heartbeat failed: %s", self.job_id, type(exc).__name__)

        t = threading.Thread(target=beat, name=f"lease-{self.job_id}", daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join(timeout=5)


def take_lease(job_id: int, settings: Settings, token: str | None = None) -> Lease | None:
    """Start an attempt of `job_id` if nobody alive runs it; None when it is done, failed or held."""
    token = token or worker_token()
    now = utcnow()
    expires = now + timedelta(seconds=settings.lease_ttl_s)
    takeable = or_(
        job_t.c.state == JobState.queued.value,
        and_(job_t.c.state == JobState.running.value,
             or_(job_t.c.lease_expires_at.is_(None), job_t.c.lease_expires_at < now)),
    )
    with get_engine(settings).begin() as conn:
        n = conn.execute(
            update(job_t).where(and_(job_t.c.id == job_id, takeable)).values(
                state=JobState.running.value, leased_by=token, lease_expires_at=expires, heartbeat_at=now,
                attempts=job_t.c.attempts + 1, started_at=now, updated_at=now, next_attempt_at=None,
            )
        ).rowcount
        if n != 1:
            return None
        attempt = conn.execute(select(job_t.c.attempts).where(job_t.c.id == job_id)).scalar_one()
    return Lease(job_id=job_id, token=token, attempt=int(attempt), settings=settings)
