"""Workers: the Celery app and the pipeline tasks (prior choice, comparison, delivery).

Public API: `run_job(job_id, settings)` (one comparison job, idempotent), `mark_failed`,
`choose_prior` / `comparable` (the prior policy), `frontal_instance` (the image rule, from
`priorwatch.instances`), `PermanentError` / `TransientError`. The Celery app is `workers.app`,
its tasks `workers.tasks`, the outbox sweeper `workers.sweeper`, deliveries `workers.deliver`
(SR, webhook) and `workers.final_sr` (the signed report).

Its names load on first use (PEP 562 `__getattr__`): every `priorwatch` command imports this
package to register its commands, and the pipeline's imports (pydicom, highdicom, SQLAlchemy,
~0.7 s of CPU) would delay `serve`'s port check, which must answer before anything starts.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.errors import PermanentError, TransientError
    from workers.pipeline import mark_failed, run_job
    from workers.priors import choose_prior, comparable, frontal_instance

_HOME = {
    "PermanentError": "workers.errors", "TransientError": "workers.errors",
    "mark_failed": "workers.pipeline", "run_job": "workers.pipeline",
    "choose_prior": "workers.priors", "comparable": "workers.priors", "frontal_instance": "workers.priors",
}

__all__ = ["PermanentError", "TransientError", "choose_prior", "comparable", "frontal_instance", "mark_failed", "run_job"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value
