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
    """Entry point `priorwatch.commands`: the monitoring room's commands on the `priorwatch` CLI."""
    _register_simulate(app)
    _register_monitor(app)
    _register_recalibration(app)
    _register_hl7(app)


def _register_simulate(app: typer.Typer) -> None:
    """`simulate`: the scenario proof (an injected event per scenario, alerts timed against it)."""
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


def _register_monitor(app: typer.Typer) -> None:
    """`monitor`: one snapshot now, stored with its alerts."""
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


def _register_recalibration(app: typer.Typer) -> None:
    """`recalibration propose|list|accept|reject|revert` (issue 30)."""
    recal_app = typer.Typer(help="Recalibration of the engine's confidence: proposals fitted by monitoring, "
                                 "applied only once an admin accepts them (issue 30).")
    app.add_typer(recal_app, name="recalibration")

    def _when(v: str) -> datetime:
        d = datetime.fromisoformat(v)
        return d.astimezone(timezone.utc).replace(tzinfo=None) if d.tzinfo is not None else d

    @recal_app.command("propose")
    def recal_propose(
        fit_start: str = typer.Option(..., help="Fit window start (ISO, UTC)."),
        fit_end: str = typer.Option(..., help="Fit window end = earliest evaluation start."),
        eval_start: str = typer.Option(..., help="Evaluation window start (not before the fit's end)."),
        eval_end: str = typer.Option(..., help="Evaluation window end."),
        by: str = typer.Option(..., "--by", help="Who proposes (recorded in the audit log)."),
    ) -> None:
        """Fit a per-type Platt map on the fit window, print ECE before/after on the later window, store it as
        a proposal. Nothing changes until an admin accepts it."""
        from monitoring.recalibration import propose
        from monitoring.settings import get_monitoring_settings
        from priorwatch.db import init_db
        from priorwatch.recalibration import RecalibrationError

        try:
            r = propose(init_db(), (_when(fit_start), _when(fit_end)), (_when(eval_start), _when(eval_end)),
                        get_monitoring_settings(), by)
        except RecalibrationError as exc:
            raise typer.BadParameter(str(exc)) from None
        typer.echo(f"proposal {r.id} (calibration {r.version}); ECE on the evaluation window, before -> after:")
        for typ, m in json.loads(r.metrics_json).items():
            if "ece_before" in m:
                typer.echo(f"  {typ:15s} {m['ece_before']:.3f} -> {m['ece_after']:.3f}  (fit n={m['n_fit']}, "
                           f"eval n={m['n_eval']}){'  ' + m['note'] if 'note' in m else ''}")

    @recal_app.command("list")
    def recal_list() -> None:
        """Proposals and decisions, newest first."""
        from sqlmodel import Session

        from monitoring.read import list_recalibrations
        from priorwatch.db import init_db

        with Session(init_db()) as s:
            for r in list_recalibrations(s):
                typer.echo(f"{r.id:4d} calibration {r.version:<3d} {r.status:10s} fit {r.fit_start:%Y-%m-%d}.."
                           f"{r.fit_end:%Y-%m-%d} eval {r.eval_start:%Y-%m-%d}..{r.eval_end:%Y-%m-%d} "
                           f"by {r.created_by}{f'; decided by {r.decided_by}' if r.decided_by else ''}")

    def _decide(action: str, recal_id: int, user: str, note: Optional[str]) -> None:
        from priorwatch import recalibration as rc
        from priorwatch.db import init_db, session_scope

        init_db()
        try:
            with session_scope() as s:
                getattr(rc, action)(s, recal_id, user, note)
        except rc.RecalibrationError as exc:
            raise typer.BadParameter(str(exc)) from None
        typer.echo(f"recalibration {recal_id}: {action} by {user} (audited)")

    @recal_app.command("accept")
    def recal_accept(recal_id: int, user: str = typer.Option(..., "--user", help="An admin's username."),
                     note: Optional[str] = typer.Option(None)) -> None:
        """Apply a proposal to every result stored from now on (replacing the accepted one, if any)."""
        _decide("accept", recal_id, user, note)

    @recal_app.command("reject")
    def recal_reject(recal_id: int, user: str = typer.Option(..., "--user", help="An admin's username."),
                     note: Optional[str] = typer.Option(None)) -> None:
        """Reject a proposal: nothing changes."""
        _decide("reject", recal_id, user, note)

    @recal_app.command("revert")
    def recal_revert(recal_id: int, user: str = typer.Option(..., "--user", help="An admin's username."),
                     note: Optional[str] = typer.Option(None)) -> None:
        """Take back the accepted recalibration (the one it replaced applies again)."""
        _decide("revert", recal_id, user, note)


def _register_hl7(app: typer.Typer) -> None:
    """`hl7-listen`: the signed-report listener in the foreground."""
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
