"""The Celery app the workers run (`celery -A workers.app worker`, `celery -A workers.app beat`).

Importing this module reads no settings, configures no logging and loads no plugin: `app` is a
bare Celery app, so anything may import it (the tasks do, to register) at no cost. `start(app)`
does the set-up: logging, the broker configuration from the settings, the task modules, beat's
sweep and the `priorwatch.celery` plugins. Celery calls it through its `on_after_configure`
signal the first time the app's configuration is read, which the worker and beat commands do
before they connect; a program that drives the app itself may call `start()` first.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from celery import Celery

from priorwatch.log import configure_logging
from priorwatch.queue import celery_config
from priorwatch.settings import Settings, get_settings

__all__ = ["app", "start", "BEAT_SWEEP_FACTOR"]

# Beat's sweep: lost jobs and due deliveries, for workers that run without `serve` (whose own
# sweeper runs every sweep_interval_s); a tenth as often, so it does not crowd the job queue.
BEAT_SWEEP_FACTOR = 10

app = Celery("workers")
_started: set[int] = set()  # ids of the apps already set up: start() runs once per app


def start(sender: Celery = app, settings: Settings | None = None, **_signal: Any) -> Celery:
    """Set up `sender` (logging, broker, tasks, beat, plugins) once; later calls return it as is.

    The keyword tail takes the signal's arguments (`source`) when Celery calls it."""
    if id(sender) in _started:
        return sender
    _started.add(id(sender))
    s = settings or get_settings()
    configure_logging()
    sender.conf.update(celery_config(s))
    sender.conf.imports = ("workers.tasks",)
    import workers.tasks  # noqa: F401  (registers the tasks on `app`; it imports `app` from here)

    every = s.sweep_interval_s * BEAT_SWEEP_FACTOR
    sender.conf.beat_schedule = {
        **(sender.conf.beat_schedule or {}),
        "priorwatch-sweep": {"task": "workers.sweep", "schedule": every, "options": {"expires": every}},
    }
    # Other rooms add tasks and beat entries (monitoring snapshots) by entry point, not by import.
    for ep in entry_points(group="priorwatch.celery"):
        ep.load()(sender)
    return sender


app.on_after_configure.connect(start, sender=app, weak=False)
