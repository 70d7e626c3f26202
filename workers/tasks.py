"""Celery tasks. Transient failures retry with exponential back-off (Celery's retry);
the last failure, or any permanent one, marks the job failed with a readable reason."""

from __future__ import annotations

import logging

from celery import Task

from priorwatch.queue import PROCESS_STUDY
from priorwatch.settings import get_settings
from workers.app import app
from workers.deliver import deliver
from workers.errors import PermanentError, TransientError
from workers.pipeline import mark_failed, note_retry, run_job

log = logging.getLogger(__name__)


DELIVER_RESULT = "workers.deliver_result"


def _backoff(retries: int) -> float:
    s = get_settings()
    return float(min(s.task_retry_backoff_s * 2**retries, s.task_retry_backoff_max_s))


@app.task(name=PROCESS_STUDY, bind=True, acks_late=True, max_retries=None)
def process_study(self: Task, job_id: int) -> int | None:
    settings = get_settings()
    try:
        final = self.request.retries >= settings.task_max_retries
        comparison_id = run_job(job_id, settings, final_attempt=final)
        if comparison_id is not None:
            deliver_result.delay(comparison_id)
        return comparison_id
    except TransientError as exc:
        attempt = self.request.retries + 1
        if attempt > settings.task_max_retries:
            mark_failed(job_id, f"gave up after {attempt} attempts: {exc}", settings)
            return None
        delay = _backoff(self.request.retries)
        note_retry(job_id, f"{exc} (attempt {attempt}, next in {delay:.1f}s)", settings)
        raise self.retry(exc=exc, countdown=delay)
    except PermanentError as exc:
        mark_failed(job_id, str(exc), settings)
        return None
    except Exception as exc:  # never lose a job silently: record what happened
        log.exception("job %s crashed", job_id)
        mark_failed(job_id, f"unexpected error: {type(exc).__name__}: {exc}", settings)
        return None


@app.task(name=DELIVER_RESULT, bind=True, acks_late=True, max_retries=None)
def deliver_result(self: Task, comparison_id: int) -> None:
    """SR to the PACS and the urgent webhook; retried on its own, never re-running the comparison."""
    settings = get_settings()
    try:
        deliver(comparison_id, settings)
    except TransientError as exc:
        if self.request.retries >= settings.task_max_retries:
            log.error("delivery for comparison %s gave up: %s", comparison_id, exc)
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))
    except PermanentError as exc:
        log.error("delivery for comparison %s failed: %s", comparison_id, exc)
