"""Workers: the Celery app and the pipeline tasks (prior choice, comparison, delivery).

Public API: `run_job(job_id, settings)` (one comparison job, idempotent), `mark_failed`,
`choose_prior` / `comparable` (the prior policy), `frontal_instance` (the image rule, from
`priorwatch.instances`), `PermanentError` / `TransientError`. The Celery app is `workers.app`,
its tasks `workers.tasks`, the outbox sweeper `workers.sweeper`, deliveries `workers.deliver`
(SR, webhook) and `workers.final_sr` (the signed report).
"""

from workers.errors import PermanentError, TransientError
from workers.pipeline import mark_failed, run_job
from workers.priors import choose_prior, comparable, frontal_instance

__all__ = ["PermanentError", "TransientError", "choose_prior", "comparable", "frontal_instance", "mark_failed", "run_job"]
