"""Celery beat wiring: the "monitoring.snapshot" task and its schedule.

The workers' app registers the task and merges the schedule:

    from monitoring.schedule import beat_schedule, register_tasks
    register_tasks(app)
    app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **beat_schedule(get_monitoring_settings())}

and beat runs with `celery -A workers.app beat` (or a worker started with `-B`).
"""

from __future__ import annotations

from typing import Any

from monitoring.settings import MonitoringSettings, get_monitoring_settings

TASK_NAME = "monitoring.snapshot"


def snapshot_task() -> dict[str, Any]:
    """Compute and store a snapshot now; returns a small summary (ids, rate, alerts opened and resolved)."""
    from monitoring.snapshot import run_snapshot

    p = run_snapshot()
    return {"snapshot_id": p.get("snapshot_id"), "revision_rate": p["current"].get("revision_rate"),
            "conditions": len(p.get("alerts", [])), "opened": len(p.get("stored_alerts", [])),
            "resolved": len(p.get("resolved_alerts", []))}


def register_tasks(app: Any) -> Any:
    """Register `snapshot_task` on a Celery app under TASK_NAME; returns the task."""
    return app.task(name=TASK_NAME, ignore_result=True)(snapshot_task)


def beat_schedule(settings: MonitoringSettings | Any = None) -> dict[str, dict[str, Any]]:
    """The beat entries: one snapshot every `schedule_s` seconds (PRIORWATCH_MONITORING_SCHEDULE_S)."""
    ms = settings if isinstance(settings, MonitoringSettings) else get_monitoring_settings()
    return {"monitoring-snapshot": {"task": TASK_NAME, "schedule": float(ms.schedule_s), "options": {"expires": float(ms.schedule_s)}}}


def install(app: Any) -> None:
    """Entry point `priorwatch.celery`: the workers' app loads it by name, never by import,
    so `workers` stays free of `monitoring` (DESIGN.md's one-way flow)."""
    register_tasks(app)
    app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **beat_schedule(get_monitoring_settings())}
