"""The `priorwatch` command. Rooms add their own commands through the
`priorwatch.commands` entry point group, so this core imports nothing of theirs.

The database and migration modules (SQLAlchemy, alembic) are imported by the commands that use
them, not here: every command, `serve` included, loads this module first, and `serve` must check
its ports (and exit naming a taken one) within seconds."""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points

import typer

from priorwatch.log import configure_logging
from priorwatch.settings import get_settings

WAITING_SHOWN = 50  # waiting jobs listed by `status` (the oldest; the rest counted)

app = typer.Typer(help="PriorWatch: longitudinal comparison beside a PACS.", no_args_is_help=True)


@app.command()
def results(as_json: bool = typer.Option(False, "--json", help="Print every comparison as JSON.")) -> None:
    """Print every comparison (current/prior UIDs, status, urgency, findings, draft)."""
    from priorwatch.db import init_db, session_scope
    from priorwatch.export import comparison_records

    init_db()
    with session_scope() as s:
        recs = comparison_records(s)
    if as_json:
        typer.echo(json.dumps(recs, indent=2))
        return
    for r in recs:
        flag = "URGENT " if r["urgent"] else ""
        typer.echo(f"{flag}{r['accession_number'] or r['current_study_uid']} [{r['status']}] {r['draft_text']}")
        for c in r["prior_choices"]:  # issue 29: which priors, why, and any that could not be fetched
            got = "fetched" if c["fetched"] else f"NOT FETCHED: {c['problem']}"
            typer.echo(f"    prior {c['date'] or '?'} {c['role']}: {c['reason']} ({got})")


@app.command()
def status() -> None:
    """Show counts of studies and jobs by state, and why failed jobs failed."""
    from priorwatch import quarantine
    from priorwatch.db import init_db, session_scope
    from priorwatch.export import delivery_problems, failed_jobs, state_counts, waiting_jobs

    init_db()

    with session_scope() as s:
        counts = state_counts(s)
        failures = failed_jobs(s)
        undelivered = delivery_problems(s)
        waiting = waiting_jobs(s)
        held = quarantine.open_items(s)
    for k, v in counts.items():
        typer.echo(f"{k:16s} {v}")
    for acc, err in failures:
        typer.echo(f"failed {acc}: {err}")
    for acc, job_id, why in waiting[:WAITING_SHOWN]:
        typer.echo(f"waiting {acc} (job {job_id}): {why}")
    if len(waiting) > WAITING_SHOWN:
        typer.echo(f"waiting: {len(waiting) - WAITING_SHOWN} more")
    for acc, kind, state, err in undelivered:
        typer.echo(f"delivery {kind} {state} {acc}: {err}")
    for q in held:
        typer.echo(f"quarantined {q.id}: instance from {q.calling_ae or '-'} at {q.received_at:%Y-%m-%d %H:%M} "
                   f"refused, its study (id {q.held_study_id}) is held for another patient ({q.differs} differ); "
                   f"{q.attempts} attempt(s); `priorwatch quarantine resolve {q.id}` once dealt with")
    typer.echo(f"data dir: {get_settings().data_dir}")


quarantine_app = typer.Typer(help="Instances the node refused because their study is held for another patient.")
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("resolve")
def quarantine_resolve(item_id: int, user: str = typer.Option(..., "--by", help="Who dealt with it (audited).")) -> None:
    """Mark a quarantined instance dealt with (its file stays in the quarantine folder)."""
    from priorwatch import quarantine
    from priorwatch.db import init_db, session_scope

    init_db()
    with session_scope() as s:
        done = quarantine.resolve(s, item_id, user)
    if not done:
        typer.echo(f"error: no open quarantined instance {item_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"quarantined {item_id} resolved by {user}")


db_app = typer.Typer(help="Database schema: `priorwatch db upgrade` after installing a new version.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database's schema to this version's (back it up first)."""
    from priorwatch.db import get_engine
    from priorwatch.migrate import prepare_schema

    get_settings().ensure_dirs()
    typer.echo(f"schema: {prepare_schema(get_engine(), upgrade=True)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and this version's."""
    from priorwatch.db import get_engine
    from priorwatch.migrate import current_revision, head_revision

    with get_engine().connect() as conn:
        typer.echo(f"database: {current_revision(conn)}  code: {head_revision()}")


def _load_plugins() -> None:
    for ep in entry_points(group="priorwatch.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # a room that is not installed: its commands are absent
            typer.echo(f"warning: commands from {ep.name} unavailable: {exc}", err=True)
            continue
        register(app)


def main() -> None:
    configure_logging()
    _load_plugins()
    try:
        app()
    except Exception as exc:
        # serve, worker, dashboard… on an old schema: say what to run. Only a command that opened
        # the database can raise it, so priorwatch.migrate is loaded then (not imported up front).
        migrate = sys.modules.get("priorwatch.migrate")
        if migrate is not None and isinstance(exc, migrate.SchemaOutOfDate):
            typer.echo(f"error: {exc}", err=True)
            raise SystemExit(2) from None
        raise
if __name__ == "__main__":
    main()
