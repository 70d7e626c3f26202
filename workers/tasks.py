"""Celery tasks. Transient failures retry with exponential back-off (Celery's retry);
the last failure, or any permanent one, marks the job failed with a readable reason."""

from __future__ import annotations

import logging

from celery import Task

from priorwatch.queue import PROCESS_STUDY
from priorwatch.settings import get_settings
from workers.app import app
from workers.errors import PermanentError, TransientError
from workers.pipeline import mark_failed, note_retry, run_job

log = logging.getLogger(__name__)


@app.task(name=PROCESS_STUDY, bind=True, acks_late=True, max_retries=None)
def process_study(self: Task, job_id: int) -> int | None:
    settings = get_settings()
    try:
        return run_job(job_id, settings)
    except TransientError as exc:
        attempt = self.request.retries + 1
        if attempt > settings.task_max_retries:
            mark_failed(job_id, f"gave up after {attempt} attempts: {exc}", settings)
            return None
        delay = min(settings.task_retry_backoff_s * 2 ** self.request.retries, settings.task_retry_backoff_max_s)
        note_retry(job_id, f"{exc} (attempt {attempt}, next in {delay:.1f}s)", settings)
        raise self.retry(exc=exc, countdown=delay)
    except PermanentError as exc:
        mark_failed(job_id, str(exc), settings)
        return None
    except Exception as exc:  # never lose a job silently: record what happened
        log.exception("job %s crashed", job_id)
        mark_failed(job_id, f"unexpected error: {type(exc).__name__}: {exc}", settings)
        return None
