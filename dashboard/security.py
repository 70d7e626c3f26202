"""Sessions that survive a reload, and login throttling.

A login makes a `DashboardSession` row. The browser holds ``<id>.<token>.<hmac>`` in an
HttpOnly cookie; the database keeps only the token's SHA-256, so a copy of the database does
not log anyone in, and the HMAC (key: ``dashboard_secret`` or a 0600 file in the data dir)
rejects forged cookies before the database is asked. A session ends on logout, after
``dashboard_idle_timeout_s`` without activity, or after ``dashboard_session_max_s``.

The cookie is set by an HTTP response (`dashboard.server`), never by script: after the
password is checked the page sends the browser to ``/pw/auth/establish?grant=...`` with a
one-time grant valid for GRANT_TTL_S, which answers with ``Set-Cookie`` and a redirect.

Login throttling protects accounts without handing an attacker a way to lock them. Failures
are counted in a window (``login_failure_window_s``) on two keys:

- the **pair** (client address, typed name): ``login_max_failures_per_pair`` wrong passwords
  lock that pair for ``login_lockout_s``. That is the guesser at one account from one place;
- the **address**: ``login_max_failures_per_address`` failures under any names make the address
  *hot* for ``login_lockout_s``: while it is hot, a pair that has already failed is refused (each
  name gets one try), which limits spraying many names from one place.

The rule for a login: the password is always checked (the same scrypt work whatever happens);
the login succeeds when the password is right, the pair is not locked, and the pair has not
failed while its address is hot. So a correct password for a real account from a pair that has
not itself failed always logs in: failures under other names, or under the same name from
other addresses, never lock an account. (Hence no per-account lock: it is the weapon.) The
limits of this rule: a guesser with many addresses gets ``login_max_failures_per_pair`` tries
per address per window at one account (each one audited under the account, and scrypt makes
each one cost); clients that share one address (no trusted proxy configured behind a proxy)
share the pair for a name, so set ``dashboard_trusted_proxies``.

The answer is the same for every failure (`LOGIN_REFUSED`): a wrong password, an unknown name
and a refusal read alike at every count, and an unknown name costs the same work as a known
one, so neither the text nor the timing tells which accounts exist. An unknown typed name is
never stored (it may be a password typed into the wrong box): its pair is the address's one
``pair:?:<address>`` row; it could never log in anyway. Locks and unlocks (`unlock`, run by
``priorwatch user unlock``) are audited by the caller.

The client address is the TCP peer, or, when the peer is one of ``dashboard_trusted_proxies``,
the nearest address in ``X-Forwarded-For`` that is not a trusted proxy (`client_address`).
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
# One answer for every failed or refused login, so the text tells nothing about the account.
LOGIN_REFUSED = ("Wrong username or password, or too many attempts. Try again later, "
                 "or ask an administrator to unlock your account.")
SCOPE_PAIR, SCOPE_ADDRESS = "pair", "address"
UNKNOWN_TAG = "?"  # the name part of the pair key for every unknown typed name


def _name_tag(name: str) -> str:
    """A fixed-length tag for a real account's name (keys stay under 96 characters)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]


def pair_key(known: bool, name: str, address: str) -> str:
    return f"pair:{_name_tag(name) if known else UNKNOWN_TAG}:{address[:64]}"


def address_key(address: str) -> str:
    return f"addr:{address[:80]}"


def _locked(row: LoginThrottle, now: datetime) -> bool:
    return row.locked_until is not None and row.locked_until > now


def _fresh(s: Session, key: str, now: datetime, window_s: float) -> LoginThrottle:
    """The key's row with expired locks and old failures forgotten (not added to the session
    if new: only a failure stores it)."""
    row = s.get(LoginThrottle, key)
    if row is None:
        return LoginThrottle(key=key, failures=0, window_start=now)
    lock_over = row.locked_until is not None and row.locked_until <= now
    window_over = row.locked_until is None and (now - row.window_start).total_seconds() > window_s
    if lock_over or window_over:
        row.failures, row.window_start, row.locked_until = 0, now, None
        s.add(row)
    return row


@dataclass
class LoginGate:
    """The throttle rows of one attempt and whether it is refused before the password counts."""

    pair: LoginThrottle
    address: LoginThrottle
    refused: bool
    now: datetime


def login_gate(s: Session, known: bool, name: str, address: str, settings: Settings | None = None) -> LoginGate:
    """Refused when the pair is locked, or its address is hot and the pair has failed already."""
    settings = settings or get_settings()
    now = utcnow()
    window = settings.login_failure_window_s
    pair = _fresh(s, pair_key(known, name, address), now, window)
    addr = _fresh(s, address_key(address), now, window)
    refused = _locked(pair, now) or (_locked(addr, now) and pair.failures > 0)
    return LoginGate(pair, addr, refused, now)


def _ensure_row(s: Session, key: str, now: datetime) -> None:
    """Insert the key's row unless it exists, without failing when a concurrent attempt made
    it first (parallel guesses must each be counted, not lost to a duplicate-key error)."""
    dialect = s.get_bind().dialect.name
    values = {"key": key, "failures": 0, "window_start": now}
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        s.execute(insert(LoginThrottle).values(**values).on_conflict_do_nothing(index_elements=["key"]))
    elif s.get(LoginThrottle, key) is None:  # other databases: best effort
        s.add(LoginThrottle(**values))
        s.flush()


def record_failure(s: Session, gate: LoginGate, settings: Settings | None = None) -> list[tuple[str, datetime]]:
    """Count a wrong password on the pair and the address; returns the locks it set
    (scope, until) for the caller to audit. Counting and locking are single SQL statements,
    so concurrent failures all count and exactly one of them sets (and audits) a lock; a lock in
    force is not extended."""
    from sqlalchemy import or_

    settings = settings or get_settings()
    now, until = gate.now, gate.now + timedelta(seconds=settings.login_lockout_s)
    locks: list[tuple[str, datetime]] = []
    for scope, key, limit in ((SCOPE_PAIR, gate.pair.key, settings.login_max_failures_per_pair),
                              (SCOPE_ADDRESS, gate.address.key, settings.login_max_failures_per_address)):
        _ensure_row(s, key, now)
        k = LoginThrottle.key == key  # type: ignore[arg-type]
        s.execute(update(LoginThrottle).where(k).values(failures=LoginThrottle.failures + 1))
        res = s.execute(
            update(LoginThrottle)
            .where(k, LoginThrottle.failures >= limit,  # type: ignore[arg-type, operator]
                   or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now))  # type: ignore[union-attr, operator]
            .values(locked_until=until)
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            locks.append((scope, until))
    return locks


def record_success(s: Session, gate: LoginGate) -> None:
    """A correct password clears its pair's failures (not the address's)."""
    from sqlalchemy import delete

    s.execute(delete(LoginThrottle).where(LoginThrottle.key == gate.pair.key))  # type: ignore[arg-type]


def unlock(s: Session, username: str | None, address: str | None) -> tuple[int, int]:
    """Forget the throttle rows of `username` (its pairs from every address) and of `address`
    (the address and its unknown-name pair). Returns (rows cleared, locks in force lifted)."""
    from sqlmodel import col, or_, select

    conds = []
    if username:
        conds.append(col(LoginThrottle.key).startswith(f"pair:{_name_tag(username)}:", autoescape=True))
    if address:
        conds.append(col(LoginThrottle.key).in_([address_key(address), pair_key(False, "", address)]))
    if not conds:
        return 0, 0
    now = utcnow()
    rows = s.exec(select(LoginThrottle).where(or_(*conds))).all()
    lifted = sum(1 for r in rows if _locked(r, now))
    for r in rows:
        s.delete(r)
    s.flush()
    return len(rows), lifted


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str | None:
    """The client: the peer, or behind trusted proxies the right-most X-Forwarded-For entry that
    is not itself a trusted proxy (entries left of it are written by the client and may be forged)."""
    if peer is None or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _trusted(host: str, trusted: list[str]) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host in trusted
    for t in trusted:
        try:
            if ip in ipaddress.ip_network(t, strict=False):
                return True
        except ValueError:
            continue
    return False
