"""Sessions that survive a reload, and login throttling.

A login makes a `DashboardSession` row. The browser holds ``<id>.<token>.<hmac>`` in an
HttpOnly cookie; the database keeps only the token's SHA-256, so a copy of the database does
not log anyone in, and the HMAC (key: ``dashboard_secret`` or a 0600 file in the data dir)
rejects forged cookies before the database is asked. A session ends on logout, after
``dashboard_idle_timeout_s`` without activity, or after ``dashboard_session_max_s``.

The cookie is set by an HTTP response (`dashboard.server`), never by script: after the
password is checked the page sends the browser to ``/pw/auth/establish?grant=...`` with a
one-time grant valid for GRANT_TTL_S, which answers with ``Set-Cookie`` and a redirect.

Throttling counts failures per existing account and per client address in a window; reaching
the limit locks that key for ``login_lockout_s``. An unknown typed username is never stored
(it may be a password typed into the wrong box).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session

from priorwatch.models import DashboardSession, LoginThrottle, utcnow
from priorwatch.settings import Settings, get_settings

COOKIE_NAME = "pw_session"
GRANT_TTL_S = 60.0  # the one-time grant only has to survive one redirect
SECRET_FILE = "dashboard_secret"
END_LOGOUT, END_IDLE, END_EXPIRED = "logout", "idle", "expired"


def _secret(settings: Settings) -> bytes:
    if settings.dashboard_secret:
        return settings.dashboard_secret.encode()
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        settings.ensure_dirs()
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _sign(settings: Settings, payload: str) -> str:
    return hmac.new(_secret(settings), payload.encode(), hashlib.sha256).hexdigest()[:32]


def make_cookie_value(settings: Settings, session_id: int, token: str) -> str:
    payload = f"{session_id}.{token}"
    return f"{payload}.{_sign(settings, payload)}"


def parse_cookie_value(settings: Settings, value: str | None) -> tuple[int, str] | None:
    """(session id, token) of a well-formed, correctly signed cookie, else None."""
    if not value or value.count(".") != 2:
        return None
    sid, token, sig = value.split(".")
    if not sid.isdigit() or not hmac.compare_digest(sig, _sign(settings, f"{sid}.{token}")):
        return None
    return int(sid), token


@dataclass(frozen=True)
class SessionInfo:
    id: int
    username: str
    current_item_id: int | None
    page: str


def create_session(s: Session, username: str, address: str, settings: Settings | None = None) -> tuple[DashboardSession, str]:
    """A new session and its one-time cookie grant (to hand to /pw/auth/establish)."""
    settings = settings or get_settings()
    now = utcnow()
    grant = secrets.token_urlsafe(24)
    row = DashboardSession(
        token_hash=_hash(secrets.token_urlsafe(32)),  # replaced when the grant is redeemed
        username=username,
        address=address[:64],
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.dashboard_session_max_s),
        grant_hash=_hash(grant),
        grant_expires_at=now + timedelta(seconds=GRANT_TTL_S),
    )
    s.add(row)
    s.flush()
    return row, f"{row.id}.{grant}"


def redeem_grant(s: Session, grant: str, settings: Settings | None = None) -> str | None:
    """The cookie value for a valid one-time grant (which is used up), else None."""
    settings = settings or get_settings()
    sid, _, g = grant.partition(".")
    if not sid.isdigit() or not g:
        return None
    token = secrets.token_urlsafe(32)
    now = utcnow()
    res = s.execute(
        update(DashboardSession)
        .where(
            DashboardSession.id == int(sid),  # type: ignore[arg-type]
            DashboardSession.grant_hash == _hash(g),  # type: ignore[arg-type]
            DashboardSession.grant_expires_at > now,  # type: ignore[arg-type, operator]
            DashboardSession.ended_at.is_(None),  # type: ignore[union-attr]
        )
        .values(grant_hash=None, grant_expires_at=None, token_hash=_hash(token), last_seen_at=now)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return make_cookie_value(settings, int(sid), token)


def _alive(row: DashboardSession | None, token: str, settings: Settings, now: datetime) -> str | None:
    """None if the session is usable, else why not (ended / idle / expired / bad)."""
    if row is None or not hmac.compare_digest(row.token_hash, _hash(token)):
        return "bad"
    if row.ended_at is not None:
        return row.end_reason or END_LOGOUT
    if now >= row.expires_at:
        return END_EXPIRED
    if (now - row.last_seen_at).total_seconds() > settings.dashboard_idle_timeout_s:
        return END_IDLE
    return None


def check_session(s: Session, cookie: str | None, settings: Settings | None = None, *, touch: bool = False) -> tuple[SessionInfo | None, str | None]:
    """(the session, None) for a live cookie, else (None, reason). An idle or expired session is
    ended here. `touch` records activity (a page run), extending the idle timeout."""
    settings = settings or get_settings()
    parsed = parse_cookie_value(settings, cookie)
    if parsed is None:
        return None, "missing" if not cookie else "bad"
    sid, token = parsed
    row = s.get(DashboardSession, sid)
    now = utcnow()
    why = _alive(row, token, settings, now)
    if why is not None:
        if row is not None and row.ended_at is None and why in (END_IDLE, END_EXPIRED):
            end_session(s, row.id, why)  # type: ignore[arg-type]
        return None, why
    assert row is not None
    if touch:
        row.last_seen_at = now
        s.add(row)
    return SessionInfo(row.id, row.username, row.current_item_id, row.page), None  # type: ignore[arg-type]


def set_location(s: Session, session_id: int, page: str, item_id: int | None) -> None:
    """Where the user is (page and open study), so a reload lands in the same place."""
    s.execute(
        update(DashboardSession).where(DashboardSession.id == session_id)  # type: ignore[arg-type]
        .values(page=page[:32], current_item_id=item_id)
    )


def end_session(s: Session, session_id: int, reason: str = END_LOGOUT) -> str | None:
    """End a session; returns its username if it was live."""
    row = s.get(DashboardSession, session_id)
    if row is None or row.ended_at is not None:
        return None
    row.ended_at, row.end_reason = utcnow(), reason
    s.add(row)
    s.flush()
    return row.username


# ---------------------------------------------------------------------------------------
# Login throttling
# ---------------------------------------------------------------------------------------
def _row(s: Session, key: str, now: datetime, window_s: float) -> LoginThrottle:
    row = s.get(LoginThrottle, key)
    if row is None:
        row = LoginThrottle(key=key, failures=0, window_start=now)
        s.add(row)
    elif (now - row.window_start).total_seconds() > window_s and not (row.locked_until and row.locked_until > now):
        row.failures, row.window_start, row.locked_until = 0, now, None
    return row


def throttle_keys(username_exists: bool, username: str, address: str) -> list[tuple[str, str]]:
    keys = [("addr", f"addr:{address[:80]}")]
    if username_exists:
        keys.append(("user", f"user:{username[:80]}"))
    return keys


def locked_until(s: Session, keys: list[tuple[str, str]], now: datetime | None = None) -> datetime | None:
    """The latest lockout end among the keys, if any is locked now."""
    now = now or utcnow()
    ends = [r.locked_until for _, k in keys if (r := s.get(LoginThrottle, k)) and r.locked_until and r.locked_until > now]
    return max(ends) if ends else None


def record_failure(s: Session, keys: list[tuple[str, str]], settings: Settings | None = None) -> datetime | None:
    """Count one failure on each key; returns the lockout end if this failure caused one."""
    settings = settings or get_settings()
    now = utcnow()
    locked: datetime | None = None
    for kind, key in keys:
        row = _row(s, key, now, settings.login_failure_window_s)
        row.failures += 1
        limit = settings.login_max_failures_per_user if kind == "user" else settings.login_max_failures_per_address
        if row.failures >= limit:
            row.locked_until = now + timedelta(seconds=settings.login_lockout_s)
            locked = row.locked_until
        s.add(row)
    s.flush()
    return locked


def record_success(s: Session, keys: list[tuple[str, str]]) -> None:
    """A correct password clears the account's failure count (not the address's)."""
    for kind, key in keys:
        if kind == "user" and (row := s.get(LoginThrottle, key)) is not None:
            s.delete(row)
