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
from sqlalchemy import select

from priorwatch.db import get_engine
from priorwatch.models import Study, StudyRole, utcnow
from priorwatch.queue import enqueue_study_job, make_celery
from priorwatch.settings import Settings

from dicom_node.pacs import PacsConfig, PacsError, PacsUnavailable
from dicom_node.query import count_instances
from dicom_node.index import Candidate, complete_study, mark_enqueued, receiving_studies, unsent_jobs

log = logging.getLogger(__name__)


def completion_reason(c: Candidate, settings: Settings, now: datetime) -> str | None:
    """"quiet" (the per-modality fallback), "released" (release + grace), or None (not yet)."""
    last = c.last_received_at
    if (now - last).total_seconds() >= settings.quiet_period_for(c.modality or None):
        return "quiet"
    if c.released_at is not None and c.released_at >= last:
        if (now - c.released_at).total_seconds() >= settings.completion_grace_s:
            return "released"
    return None


def is_complete(c: Candidate, settings: Settings, now: datetime) -> bool:
    return completion_reason(c, settings, now) is not None


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
        self._pacs_counts: dict[tuple[int, int], tuple[bool, float]] = {}

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
            reason = completion_reason(c, self.settings, now)
            if reason is None:
                continue
            if reason == "released" and not self._pacs_agrees(c):
                continue  # the PACS holds more: wait for the rest (the quiet period still closes it)
            job_id = complete_study(self.engine, c)
            if job_id is not None:
                created += 1
                self.jobs_created += 1
                log.info("study %s version %d complete (%d instances): job %d", c.study_id, c.version, c.n_instances, job_id)
            else:
                log.debug("study %s closed without a new job", c.study_id)
        self.send_pending()
        return created

    def _pacs_agrees(self, c: Candidate) -> bool:
        """Where the sender is our queryable PACS, confirm its instance count by C-FIND first.
        A PACS that cannot be asked does not hold the study back: the timers decide then."""
        s = self.settings
        if not s.pacs_ae_title:
            return True
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Study.study_uid, Study.calling_ae, Study.patient_id, Study.role).where(Study.id == c.study_id)
            ).first()
        if row is None or row.calling_ae != s.pacs_ae_title or row.role == StudyRole.prior.value:
            return True
        key = (c.study_id, c.n_instances)
        cached = self._pacs_counts.get(key)
        if cached is not None and time.monotonic() - cached[1] < 5.0:
            return cached[0]
        pacs = PacsConfig(ae_title=s.pacs_ae_title, host=s.pacs_host, port=s.pacs_port,
                          query_model=s.pacs_query_model, timeout_s=min(s.pacs_timeout_s, 10.0))
        try:
            expected = count_instances(pacs, row.study_uid, s.ae_title, row.patient_id)
        except (PacsUnavailable, PacsError) as exc:
            log.warning("cannot confirm study %s with the PACS (%s); closing on timers", c.study_id, exc)
            expected = None
        agrees = expected is None or c.n_instances >= expected
        if not agrees:
            log.info("study %s: %d of %d instances received; waiting for the rest", c.study_id, c.n_instances, expected)
        self._pacs_counts[key] = (agrees, time.monotonic())
        return agrees

    def send_pending(self) -> int:
        """Hand every unsent job to the broker, then record them as sent in one transaction. A
        crash in between re-sends them at the next start: a message is only a pointer to its
        job, and a job is leased and its result written idempotently (DESIGN)."""
        if time.monotonic() < self._broker_down_until:
            return 0
        sent: list[int] = []
        try:
            for job_id in unsent_jobs(self.engine):
                try:
                    enqueue_study_job(self.app, job_id)
                except Exception as exc:
                    self._broker_failures += 1
                    backoff = min(0.5 * 2 ** min(self._broker_failures, 6), 30.0)
                    self._broker_down_until = time.monotonic() + backoff
                    log.warning("broker unavailable (%s); job %d stays unsent, retry in %.1fs", type(exc).__name__, job_id, backoff)
                    break
                self._broker_failures = 0
                sent.append(job_id)
        finally:
            mark_enqueued(self.engine, sent)
        self.jobs_sent += len(sent)
        return len(sent)
