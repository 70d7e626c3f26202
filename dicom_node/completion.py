"""Study completion decided from the database, so it survives restarts.

A study in state receiving closes when
  * the sender released an association carrying it after its last instance (`released_at >=
    last_received_at`) and `completion_grace_s` has passed since, with nothing new; or
  * `quiet_period_for(modality)` has passed since its last instance (aborted associations,
    senders that vanish).
Closing is one conditional transaction (receiving → complete → queued plus a Job keyed by the
instance set), so exactly one job exists per (study, instance set). Sending to the broker comes
after the commit; a job whose send failed keeps `enqueued_at` NULL and is sent on a later tick.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from celery import Celery

from priorwatch.db import get_engine
from priorwatch.models import utcnow
from priorwatch.queue import enqueue_study_job, make_celery
from priorwatch.settings import Settings

from dicom_node.index import Candidate, complete_study, mark_enqueued, receiving_studies, unsent_jobs

log = logging.getLogger(__name__)


def is_complete(c: Candidate, settings: Settings, now: datetime) -> bool:
    last = c.last_received_at
    if c.released_at is not None and c.released_at >= last:
        if (now - c.released_at).total_seconds() >= settings.completion_grace_s:
            return True
    return (now - last).total_seconds() >= settings.quiet_period_for(c.modality or None)


class CompletionMonitor(threading.Thread):
    """Closes complete studies and hands their jobs to the broker, every `monitor_interval_s`."""

    def __init__(self, settings: Settings, *, celery_app: Celery | None = None) -> None:
        super().__init__(name="priorwatch-completion", daemon=True)
        self.settings = settings
        self.engine = get_engine(settings)
        self._app = celery_app
        self._stop_event = threading.Event()
        self._broker_down_until = 0.0
        self._broker_failures = 0
        self.jobs_created = 0
        self.jobs_sent = 0

    @property
    def app(self) -> Celery:
        if self._app is None:
            app = make_celery(self.settings)
            # Fail fast when the broker is down: the job stays unsent and a later tick retries.
            app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
            app.conf.broker_connection_timeout = 2.0
            self._app = app
        return self._app

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.tick()
            except Exception as exc:  # the monitor never dies; the next tick tries again
                log.error("completion tick failed: %s", type(exc).__name__, exc_info=True)
            self._stop_event.wait(self.settings.monitor_interval_s)

    def tick(self) -> int:
        """One pass: close what is complete, then send unsent jobs. Returns jobs created."""
        now = utcnow()
        created = 0
        for c in receiving_studies(self.engine):
            if not is_complete(c, self.settings, now):
                continue
            job_id = complete_study(self.engine, c)
            if job_id is not None:
                created += 1
                self.jobs_created += 1
                log.info("study %s version %d complete (%d instances): job %d", c.study_id, c.version, c.n_instances, job_id)
            else:
                log.debug("study %s closed without a new job", c.study_id)
        self.send_pending()
        return created

    def send_pending(self) -> int:
        if time.monotonic() < self._broker_down_until:
            return 0
        sent = 0
        for job_id in unsent_jobs(self.engine):
            try:
                enqueue_study_job(self.app, job_id)
            except Exception as exc:
                self._broker_failures += 1
                backoff = min(0.5 * 2 ** min(self._broker_failures, 6), 30.0)
                self._broker_down_until = time.monotonic() + backoff
                log.warning("broker unavailable (%s); job %d stays unsent, retry in %.1fs", type(exc).__name__, job_id, backoff)
                return sent
            self._broker_failures = 0
            mark_enqueued(self.engine, job_id)
            self.jobs_sent += 1
            sent += 1
        return sent
