"""Celery tasks. A task is a pointer to a job in the database: the worker takes the job's lease
(one at a time, whatever copies of the message exist), keeps it alive with a heartbeat, and
writes the result idempotently. Transient failures retry with exponential back-off; the last
failure, or any permanent one, marks the job failed with a readable reason. Deliveries are
outbox rows committed with the result: sending them is never part of the job's outcome."""

from __future__ import annotations

import logging

from celery import Task

from priorwatch.queue import PROCESS_STUDY
from priorwatch.settings import get_settings
from workers.app import app
from workers.deliver import deliver
from workers.errors import PermanentError, TransientError, WaitingForPacs
from workers.lease import max_attempts, take_lease
from workers.pipeline import mark_failed, note_retry, run_job
from workers.sweeper import sweep

log = logging.getLogger(__name__)


DELIVER_RESULT = "workers.deliver_result"
SWEEP = "workers.sweep"


def _backoff(retries: int) -> float:
    s = get_settings()
    return float(min(s.task_retry_backoff_s * 2**retries, s.task_retry_backoff_max_s))


@app.task(name=PROCESS_STUDY, bind=True, acks_late=True, max_retries=None)
def process_study(self: Task, job_id: int) -> int | None:
    settings = get_settings()
    lease = take_lease(job_id, settings)
    if lease is None:  # done, failed, or run by a live worker: this copy of the message is spare
        log.info("job %s: nothing to run (done, failed or leased elsewhere)", job_id)
        return None
    final = lease.attempt >= max_attempts(settings)
    comparison_id: int | None = None
    with lease.heartbeat():
        try:
            comparison_id = run_job(job_id, settings, final_attempt=final)
        except TransientError as exc:
            waiting = isinstance(exc, WaitingForPacs)  # the PACS is down: wait for it, within its window
            if final and not waiting:
                mark_failed(job_id, f"gave up after {lease.attempt} attempts: {exc}", settings)
                return None
            delay = exc.retry_in_s if isinstance(exc, WaitingForPacs) else _backoff(lease.attempt - 1)
            reason = f"{exc} (attempt {lease.attempt}, next in {delay:.1f}s)"
            try:
                process_study.apply_async(args=[job_id], countdown=delay)
                sent = True
            except Exception as send_exc:  # broker down: the node or the sweeper sends it later
                log.warning("job %s: retry not handed to the broker (%s)", job_id, type(send_exc).__name__)
                sent = False
            note_retry(job_id, reason, settings, delay_s=delay, sent=sent, count_attempt=not waiting)
            return None
        except PermanentError as exc:
            mark_failed(job_id, str(exc), settings)
            return None
        except Exception as exc:  # never lose a job silently: record what happened
            log.exception("job %s crashed", job_id)
            mark_failed(job_id, f"unexpected error: {type(exc).__name__}: {exc}", settings)
            return None
    # The result and its outbox rows are committed: nothing below can fail the job.
    if comparison_id is not None:
        try:
            deliver_result.delay(comparison_id)  # at once; the sweeper covers a lost message
        except Exception as exc:
            log.warning("comparison %s: delivery left to the sweeper (%s)", comparison_id, type(exc).__name__)
    return comparison_id


@app.task(name=DELIVER_RESULT, bind=True, acks_late=True, max_retries=0)
def deliver_result(self: Task, comparison_id: int) -> None:
    """First attempt of a result's deliveries; later attempts are the sweeper's, with back-off."""
    settings = get_settings()
    try:
        deliver(comparison_id, settings)
    except TransientError as exc:
        log.info("delivery for comparison %s will be retried by the sweeper: %s", comparison_id, exc)
    except PermanentError as exc:
        log.error("delivery for comparison %s failed: %s", comparison_id, exc)


@app.task(name=SWEEP, ignore_result=True)
def sweep_task() -> None:
    """Beat's copy of the sweeper, for deployments whose workers run without `serve`."""
    rep = sweep(get_settings())
    if rep:
        log.info("sweep: re-sent %d expired, %d stale, %d unsent; %d failed; deliveries %s",
                 len(rep.expired), len(rep.stale), len(rep.unsent), len(rep.failed), rep.deliveries)
