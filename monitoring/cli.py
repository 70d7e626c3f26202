"""Commands of the monitoring room: `simulate`, `monitor`, `hl7-listen`."""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        data_dir: Optional[Path] = typer.Option(None, help="Data dir for the simulated database (default: settings)."),
        days: int = typer.Option(150, help="Days of studies."),
        per_day: int = typer.Option(60, help="Studies per day."),
        start: str = typer.Option("2025-01-06", help="First day (YYYY-MM-DD)."),
        event_day: int = typer.Option(90, help="Day the new scanner starts at SITE_B."),
        lateral_day: int = typer.Option(111, help="Day lateral views start entering the stream."),
        lateral_share: float = typer.Option(0.2, help="Share of lateral views from lateral_day."),
        step_days: int = typer.Option(3, help="Days between monitoring snapshots."),
        evidently: str = typer.Option("last", help="Run Evidently on: all | last | none snapshots."),
        seed: int = typer.Option(7),
    ) -> None:
        """Simulate months of studies, reviews and signed reports with injected events; run
        monitoring over them and print when each alert first fired."""
        from monitoring import simulate as sim
        from monitoring.settings import get_monitoring_settings
        from priorwatch.db import init_db
        from priorwatch.settings import Settings, get_settings

        s = Settings(data_dir=data_dir) if data_dir else get_settings()
        engine = init_db(s)
        ms = get_monitoring_settings()
        t0 = time.perf_counter()
        res = sim.run(engine, ms, start=date.fromisoformat(start), days=days, per_day=per_day, event_day=event_day,
                      lateral_day=lateral_day, lateral_share=lateral_share, seed=seed, step_days=step_days,
                      evidently=evidently, html_dir=s.data_dir / "monitoring", echo=typer.echo)
        sim.report(res, echo=typer.echo)
        typer.echo(f"done in {time.perf_counter() - t0:.1f} s; database {s.resolved_database_url}")

    @app.command()
    def monitor(
        as_of: Optional[str] = typer.Option(None, help="Snapshot time (ISO, naive UTC); default now."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole payload."),
        no_send: bool = typer.Option(False, "--no-send", help="Store alerts but do not call the webhook."),
    ) -> None:
        """Compute a monitoring snapshot now, store it with its alerts, and print the headline."""
        from monitoring.snapshot import run_snapshot

        p = run_snapshot(as_of=datetime.fromisoformat(as_of) if as_of else None, send=not no_send)
        if as_json:
            typer.echo(json.dumps(p, indent=2, default=str))
            return
        cur = p["current"]
        score = p["drift"].get("score")
        typer.echo(f"snapshot {p.get('snapshot_id')} as of {p['as_of']}: {p['n_current']} current vs "
                   f"{p['n_reference']} reference studies")
        rr = cur.get("revision_rate")
        typer.echo(f"revision rate {rr:.1%}" if rr is not None else "revision rate: no signed reports")
        typer.echo(f"drift score {score:.2f}" if score is not None else "drift score: not enough data")
        for a in p["alerts"]:
            typer.echo(f"ALERT {a['kind']} {a['subject']}: {a['message']}")
        for r in p.get("stop_rule", []):
            typer.echo(f"suggested stop-rule: {r}")

    @app.command("hl7-listen")
    def hl7_listen(
        host: Optional[str] = typer.Option(None, help="Bind address (default PRIORWATCH_MONITORING_HL7_HOST)."),
        port: Optional[int] = typer.Option(None, help="Port (default PRIORWATCH_MONITORING_HL7_PORT)."),
    ) -> None:
        """Listen for signed reports (HL7 ORU^R01 over MLLP) until interrupted."""
        from monitoring.hl7 import MLLPListener

        with MLLPListener(host=host, port=port) as lst:
            typer.echo(f"HL7 MLLP listener on {lst.host}:{lst.port} (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass


os.environ.setdefault("DO_NOT_TRACK", "1")
