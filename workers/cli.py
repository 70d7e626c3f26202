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
        from workers.runtime import Runtime

        settings = get_settings()
        if not settings.allowed_calling_aes:
            typer.echo("warning: no calling-AE allow-list set; any AE may send", err=True)
        with Runtime(settings, beat=True, services=True) as rt:
            typer.echo(
                f"PriorWatch {settings.ae_title} listening on {settings.dicom_host}:{rt.settings.dicom_port}; "
                f"Triton {rt.settings.triton_url}; data dir {settings.data_dir}"
            )
            rt.wait_forever()

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
