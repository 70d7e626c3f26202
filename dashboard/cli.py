"""Commands of the dashboard room: `priorwatch dashboard` and `priorwatch user ...`.

Loaded by the core CLI through the `priorwatch.commands` entry point named `dashboard`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from dashboard.auth import Role

PASSWORD_ENV = "PRIORWATCH_USER_PASSWORD"
FORWARDED_ENV = "FORWARDED_ALLOW_IPS"  # uvicorn's own list of proxies it believes
APP_PATH = Path(__file__).resolve().parent / "app.py"
# The server script: Streamlit serving app.py plus the authenticated image and session routes.
SERVER_PATH = Path(__file__).resolve().parent / "server.py"


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SERVER_PATH),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]


def dashboard_env() -> dict[str, str]:
    """The child's environment: ours plus every resolved PRIORWATCH_* setting."""
    from priorwatch.settings import as_env, get_settings

    env = {**os.environ, **as_env(get_settings())}
    # uvicorn believes X-Forwarded-For from loopback by default, so any local process could name
    # itself any address and dodge the login throttle: trust no one there; the server applies
    # dashboard_trusted_proxies itself (dashboard.server.EdgeGuard).
    env[FORWARDED_ENV] = ""
    root = str(APP_PATH.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _read_password(password_stdin: bool, confirm: bool = True) -> str:
    if password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise typer.BadParameter("no password on standard input")
        return pw
    env_pw = os.environ.get(PASSWORD_ENV)
    if env_pw:
        return env_pw
    return typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def _create_user(username: str, role: str, password: str) -> None:
    from dashboard import auth, queries
    from priorwatch.db import init_db, session_scope

    init_db()
    try:
        with session_scope() as s:
            auth.create_user(s, username, password, role)
            queries.audit(s, "cli", "user_add", detail={"username": username, "role": role})
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add `priorwatch dashboard` and `priorwatch user ...` to the core CLI."""
    _register_dashboard(app)
    _register_users(app)


def _register_dashboard(app: typer.Typer) -> None:
    @app.command()
    def dashboard(
        port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="Port to listen on."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 in a container)."),
    ) -> None:
        """Run the radiologists' and QA dashboard (Streamlit); loopback unless --host says otherwise."""
        from dashboard import auth
        from priorwatch.db import init_db, session_scope

        try:
            init_db()
            with session_scope() as s:
                n = auth.user_count(s)
        except Exception as exc:  # noqa: BLE001 - say why, do not crash with a traceback
            typer.echo(f"error: database unreachable: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        if n == 0:
            if sys.stdin.isatty():
                typer.echo("No dashboard users yet. Create the first administrator.")
                name = typer.prompt("Username", default="admin")
                _create_user(name, Role.admin.value, _read_password(False))
            else:
                typer.echo(
                    "warning: no dashboard users; create one with "
                    "`priorwatch user add NAME --role admin`",
                    err=True,
                )
        from priorwatch.settings import get_settings

        if host not in ("127.0.0.1", "localhost", "::1") and not get_settings().dashboard_public_url:
            typer.echo("warning: set PRIORWATCH_DASHBOARD_PUBLIC_URL to the URL browsers use; until then "
                       "only an Origin equal to the request's Host is accepted", err=True)
        typer.echo(f"PriorWatch dashboard on http://{host}:{port}  (Ctrl-C to stop)")
        try:
            rc = subprocess.call(streamlit_command(port, host), env=dashboard_env())
        except KeyboardInterrupt:
            rc = 0
        raise typer.Exit(rc)


def _register_users(app: typer.Typer) -> None:
    user_app = typer.Typer(help="Dashboard users (radiologist, qa, admin).", no_args_is_help=True)

    @user_app.command("add")
    def user_add(
        username: str = typer.Argument(..., help="Login name."),
        role: Role = typer.Option(Role.radiologist, "--role", "-r", help="radiologist, qa or admin."),
        password_stdin: bool = typer.Option(
            False, "--password-stdin", help="Read the password from the first line of standard input."
        ),
    ) -> None:
        """Add a user. The password comes from --password-stdin, $PRIORWATCH_USER_PASSWORD or a prompt."""
        _create_user(username, role.value, _read_password(password_stdin))
        typer.echo(f"added user {username} ({role.value})")

    @user_app.command("list")
    def user_list() -> None:
        """List users and their roles."""
        from sqlmodel import select

        from priorwatch.db import init_db, session_scope
        from priorwatch.models import User

        init_db()
        with session_scope() as s:
            for u in s.exec(select(User).order_by(User.username)).all():
                typer.echo(f"{u.username:24s} {u.role}")

    @user_app.command("passwd")
    def user_passwd(
        username: str = typer.Argument(...),
        password_stdin: bool = typer.Option(False, "--password-stdin"),
    ) -> None:
        """Set a user's password."""
        from dashboard import auth, queries
        from priorwatch.db import init_db, session_scope

        init_db()
        pw = _read_password(password_stdin)
        try:
            with session_scope() as s:
                auth.set_password(s, username, pw)
                queries.audit(s, "cli", "user_passwd", detail={"username": username})
        except auth.AuthError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"password changed for {username}")

    @user_app.command("unlock")
    def user_unlock(
        username: str | None = typer.Argument(None, help="Lift this account's login locks (from every address)."),
        address: str | None = typer.Option(None, "--address", help="Also lift this client address's lock."),
    ) -> None:
        """Lift login locks (audited as login_unlock). See `dashboard.security` for the rule."""
        from sqlmodel import select

        from dashboard import queries, security
        from priorwatch.db import init_db, session_scope
        from priorwatch.models import User

        if not username and not address:
            raise typer.BadParameter("name a USERNAME, an --address, or both")
        init_db()
        with session_scope() as s:
            if username and s.exec(select(User.id).where(User.username == username)).first() is None:
                typer.echo(f"error: no user {username!r}", err=True)
                raise typer.Exit(2)
            cleared, lifted = security.unlock(s, username, address)
            queries.audit(s, "cli", "login_unlock", detail={"username": username, "address": address,
                                                            "cleared": cleared, "locks_lifted": lifted})
        typer.echo(f"unlocked: {lifted} lock(s) lifted, {cleared} throttle row(s) cleared")

    app.add_typer(user_app, name="user")
