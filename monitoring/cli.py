"""Commands of the monitoring room: `simulate`, `monitor`, `hl7-listen`."""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        scenario: str = typer.Option("all", help="new_site | new_scanner | population_shift | model_version | "
                                                 "report_delay | wording_only | miscalibration | all"),
        data_dir: Optional[Path] = typer.Option(None, help="Folder for the simulated databases (default: "
                                                           "<data dir>/simulate); one database per scenario."),
        per_day: int = typer.Option(60, help="Studies per day."),
        event_day: int = typer.Option(49, help="Day of the event (the first 28 days are the baseline)."),
        after_days: int = typer.Option(10, help="Days simulated after the event."),
        start: str = typer.Option("2025-01-06", help="First day (YYYY-MM-DD)."),
        seed: int = typer.Option(7),
    ) -> None:
        """Simulate a study stream with one injected event per scenario, run monitoring day by day,
        and print when each expected alert first opened (within 7 days, 3 for miscalibration; nothing before)."""
        from monitoring import simulate as sim
        from monitoring.settings import get_monitoring_settings
        from priorwatch.db import init_db
        from priorwatch.settings import Settings, get_settings

        names = list(sim.SCENARIOS) if scenario == "all" else [scenario]
        unknown = [n for n in names if n not in sim.SCENARIOS]
        if unknown:
            raise typer.BadParameter(f"unknown scenario {unknown[0]}; one of {', '.join(sim.SCENARIOS)} or all")
        root = data_dir or (get_settings().data_dir / "simulate")
        ms = get_monitoring_settings().model_copy(update={"evidently_html": False})
        failed = []
        for name in names:
            t0 = time.perf_counter()
            folder = root / f"{name}-{datetime.now():%Y%m%dT%H%M%S}"
            engine = init_db(Settings(data_dir=folder))
            res = sim.run(engine, ms, name, start=date.fromisoformat(start), days=event_day + after_days,
                          per_day=per_day, event_day=event_day, seed=seed, echo=typer.echo)
            sim.report(res, echo=typer.echo)
            typer.echo(f"  ({time.perf_counter() - t0:.0f} s; database in {folder})")
            if not res.passed():
                failed.append(name)
        if failed:
            typer.echo(f"FAILED: {', '.join(failed)}")
            raise typer.Exit(1)

    @app.command()
    def monitor(
        as_of: Optional[str] = typer.Option(None, help="Snapshot time (ISO; naive means UTC); default now."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole payload."),
        no_send: bool = typer.Option(False, "--no-send", help="Store alerts but do not call the webhook."),
    ) -> None:
        """Compute a monitoring snapshot now, store it with its alerts, and print the headline."""
        from monitoring.snapshot import run_snapshot

        when = None
        if as_of:
            when = datetime.fromisoformat(as_of)
            if when.tzinfo is not None:
                when = when.astimezone(timezone.utc).replace(tzinfo=None)
        p = run_snapshot(as_of=when, send=not no_send)
        if as_json:
            typer.echo(json.dumps(p, indent=2, default=str))
            return
        cur = p["current"]
        typer.echo(f"snapshot {p.get('snapshot_id')} as of {p['as_of']}: {p['n_current']} current vs "
                   f"{p['n_reference']} reference studies")
        rr = cur.get("revision_rate")
        if rr is not None:
            typer.echo(f"revision rate (significant finding-level discordance) {rr:.1%} "
                       f"(95% CI {cur['revision_lo']:.1%}-{cur['revision_hi']:.1%}, n={cur['n_signed']})")
        else:
            typer.echo("revision rate: no signed reports in the window")
        for a in p["alerts"]:
            typer.echo(f"{a['severity'].upper()} {a['kind']} {a['subject']} -> {a['route']}: {a['message']}")
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
