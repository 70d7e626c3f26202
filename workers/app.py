"""The Celery app the workers run (`celery -A workers.app worker`)."""

from __future__ import annotations

from priorwatch.log import configure_logging
from priorwatch.queue import make_celery
from priorwatch.settings import get_settings

configure_logging()
app = make_celery(get_settings(), name="workers")
app.conf.imports = ("workers.tasks",)

import workers.tasks  # noqa: E402,F401  (registers the tasks on `app`)

# Beat's sweep: lost jobs and due deliveries, for workers that run without `serve` (whose own
# sweeper runs every sweep_interval_s); a tenth as often, so it does not crowd the job queue.
BEAT_SWEEP_FACTOR = 10
_sweep_every = get_settings().sweep_interval_s * BEAT_SWEEP_FACTOR
app.conf.beat_schedule = {
    **(app.conf.beat_schedule or {}),
    "priorwatch-sweep": {"task": "workers.sweep", "schedule": _sweep_every, "options": {"expires": _sweep_every}},
}

# Other rooms add tasks and beat entries (monitoring snapshots) by entry point, not by import.
from importlib.metadata import entry_points  # noqa: E402

for _ep in entry_points(group="priorwatch.celery"):
    _ep.load()(app)
