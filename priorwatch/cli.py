"""The `priorwatch` command. Rooms add their own commands through the
`priorwatch.commands` entry point group, so this core imports nothing of theirs."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import typer

from priorwatch.db import init_db, session_scope
from priorwatch.export import comparison_records, delivery_problems, failed_jobs, state_counts
from priorwatch.log import configure_logging
from priorwatch.settings import get_settings

app = typer.Typer(help="PriorWatch: longitudinal comparison beside a PACS.", no_args_is_help=True)


@app.command()
def results(as_json: bool = typer.Option(False, "--json", help="Print every comparison as JSON.")) -> None:
    """Print every comparison (current/prior UIDs, status, urgency, findings, draft)."""
    init_db()
    with session_scope() as s:
        recs = comparison_records(s)
    if as_json:
        typer.echo(json.dumps(recs, indent=2))
        return
    for r in recs:
        flag = "URGENT " if r["urgent"] else ""
        typer.echo(f"{flag}{r['accession_number'] or r['current_study_uid']} [{r['status']}] {r['draft_text']}")


@app.command()
def status() -> None:
    """Show counts of studies and jobs by state, and why failed jobs failed."""
    init_db()
    with session_scope() as s:
        counts = state_counts(s)
        failures = failed_jobs(s)
        undelivered = delivery_problems(s)
    for k, v in counts.items():
        typer.echo(f"{k:16s} {v}")
    for acc, err in failures:
        typer.echo(f"failed {acc}: {err}")
    for acc, kind, state, err in undelivered:
        typer.echo(f"delivery {kind} {state} {acc}: {err}")
    typer.echo(f"data dir: {get_settings().data_dir}")


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
    app()
if __name__ == "__main__":
    main()
