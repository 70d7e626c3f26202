"""The Celery configuration shared by the node (which enqueues) and the workers (which run).

The node never imports `workers`: it sends tasks by name, so data flows one way.
"""

from __future__ import annotations

from celery import Celery

from priorwatch.settings import Settings, get_settings

PROCESS_STUDY = "workers.process_study"


def celery_config(settings: Settings) -> dict[str, object]:
    conf: dict[str, object] = {
        "broker_url": settings.resolved_broker_url,
        "task_ignore_result": True,  # results live in the database, not in a result backend
        "task_acks_late": True,  # a worker that dies mid-job leaves the job queued
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "task_default_queue": settings.queue_name,
    }
    if conf["broker_url"] == "filesystem://":
        settings.broker_dir.mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "processed").mkdir(exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(settings.broker_dir),
            "data_folder_out": str(settings.broker_dir),
            "processed_folder": str(settings.broker_dir / "processed"),
            "control_folder": str(settings.broker_dir / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    return conf


def make_celery(settings: Settings | None = None, name: str = "priorwatch") -> Celery:
    s = settings or get_settings()
    app = Celery(name)
    app.conf.update(celery_config(s))
    return app


def enqueue_study_job(app: Celery, job_id: int) -> None:
    app.send_task(PROCESS_STUDY, args=[job_id])
