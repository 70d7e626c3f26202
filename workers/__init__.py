"""Workers: the Celery app and the pipeline tasks (prior choice, comparison, delivery)."""

from workers.errors import PermanentError, TransientError
from workers.pipeline import mark_failed, run_job
from workers.priors import choose_prior, comparable, frontal_instance

__all__ = ["PermanentError", "TransientError", "choose_prior", "comparable", "frontal_instance", "mark_failed", "run_job"]
