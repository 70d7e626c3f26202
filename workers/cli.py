"""Commands of the runtime room: `serve`, `demo`, `worker`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from priorwatch.settings import get_settings


def register(app: typer.Typer) -> None:
    @app.command()
    def serve() -> None:
        """Run the DICOM node and worker(s), plus a local Triton unless `triton_url` is set."""
        from workers.runtime import PortInUse, Runtime

        settings = get_settings()
        if not settings.allowed_calling_aes:
            typer.echo("warning: no calling-AE allow-list set; any AE may send", err=True)
        if settings.urgent_webhook_url and not settings.urgent_webhook_secret:
            typer.echo("warning: urgent_webhook_url is set without urgent_webhook_secret; notices go unsigned",
                       err=True)
        rt = Runtime(settings, beat=True, services=True)
        try:
            rt.start()
        except PortInUse as exc:
            typer.echo(str(exc), err=True)
            raise SystemExit(2) from None
        try:
            typer.echo(
                f"PriorWatch {settings.ae_title} listening on {settings.dicom_host}:{rt.settings.dicom_port}; "
                f"Triton {rt.settings.triton_url}; data dir {settings.data_dir}"
            )
            rt.wait_forever()
        finally:
            rt.stop()

    @app.command()
    def retry(
        jobs: bool = typer.Option(True, "--jobs/--no-jobs", help="Re-run failed jobs."),
        deliveries: bool = typer.Option(True, "--deliveries/--no-deliveries", help="Re-send failed deliveries."),
    ) -> None:
        """Re-run failed jobs and re-send failed deliveries (SR, urgent notice) with fresh attempts."""
        from priorwatch.db import init_db
        from workers.deliver import retry_failed, send_due
        from workers.sweeper import retry_failed_jobs

        settings = get_settings()
        init_db(settings)
        n_jobs = retry_failed_jobs(settings) if jobs else 0
        n_del = retry_failed(settings) if deliveries else 0
        sent = send_due(settings) if n_del else {}
        typer.echo(f"re-queued {n_jobs} failed job(s); {n_del} failed deliveries re-sent now: "
                   + (", ".join(f"{v} {k}" for k, v in sorted(sent.items())) or "none"))
        typer.echo("jobs run on the workers of a running `serve`; deliveries still pending are retried by its sweeper")

    @app.command()
    def worker() -> None:
        """Run only a Celery worker (server mode: many of these on many machines)."""
        from workers.runtime import worker_command

        raise SystemExit(subprocess.call(worker_command(get_settings()), env=os.environ.copy()))

    @app.command()
    def demo(
        data_dir: Path = typer.Option(Path("priorwatch-demo"), help="Where the demo keeps its data."),
        dashboard: bool = typer.Option(
            sys.stdin.isatty(), "--dashboard/--no-dashboard", help="Open the dashboard at the end."
        ),
        timeout: float = typer.Option(600.0, help="Seconds to wait for results."),
    ) -> None:
        """Run the whole pipeline on the embedded default with real chest CR pairs, then stop."""
        import logging

        from workers.demo import run_demo

        if "PRIORWATCH_LOG_LEVEL" not in os.environ:  # the demo's own lines tell the story
            logging.getLogger().setLevel(logging.WARNING)
            logging.getLogger("kombu").setLevel(logging.ERROR)

        rc = run_demo(data_dir, timeout_s=timeout)
        if dashboard and rc == 0:
            typer.echo("Opening the dashboard (Ctrl-C to stop) ...")
            env = {**os.environ, "PRIORWATCH_DATA_DIR": str(data_dir.resolve())}
            subprocess.call([sys.executable, "-m", "priorwatch.cli", "dashboard"], env=env)
        raise SystemExit(rc)
