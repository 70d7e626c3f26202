"""Login throttling that protects instead of punishing, through the real login function
(`views.attempt_login`: the database, scrypt and the audit log, no Streamlit runtime), the
real `priorwatch user unlock` command, and the trusted-proxy address rule.

The browser half (the same message on the Streamlit page, a spoofed X-Forwarded-For ignored)
is in test_browser_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest
import typer
from sqlmodel import select
from typer.testing import CliRunner

from dashboard import auth, security
from dashboard.views import attempt_login
from priorwatch.db import session_scope
from priorwatch.models import AuditLog, LoginThrottle
from tests.dashboard.conftest import PASSWORD

ATTACKER = "10.9.8.7"  # the address every failure comes from (loopback and proxies look alike)
SPRAY = 50  # failures under random names, the officer's attack with more than twice the limit


def audit(settings, action: str) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    with session_scope(settings) as s:
        rows = s.exec(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).all()
        return [(r.user, json.loads(r.detail or "{}")) for r in rows]


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real scrypt runs (it still runs): the work that sets a login's timing."""
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def test_fifty_failures_under_random_names_leave_a_real_user_able_to_log_in(seeded, scrypt_calls):
    st = seeded.settings
    answers: set[str | None] = set()
    for n in range(1, SPRAY + 1):
        unknown = f"nobody-{secrets.token_hex(4)}"
        before = len(scrypt_calls)
        err_unknown, grant = attempt_login(unknown, "Winter2026!", ATTACKER)
        assert grant is None and len(scrypt_calls) == before + 1, n
        # A real name at the same count: the same answer after the same hashing work.
        err_known, grant = attempt_login("quinn", "Winter2026!", ATTACKER)
        assert grant is None and len(scrypt_calls) == before + 2, n
        answers |= {err_unknown, err_known}
    assert answers == {security.LOGIN_REFUSED}
    assert st.login_max_failures_per_address < SPRAY  # the address did go hot

    before = len(scrypt_calls)
    err, grant = attempt_login("alice", PASSWORD, ATTACKER)
    assert (err, grant is not None, len(scrypt_calls) - before) == (None, True, 1)
    # The sprayed names are stored nowhere; the locks are audited.
    with session_scope(st) as s:
        keys = [r.key for r in s.exec(select(LoginThrottle)).all()]
    assert not any("nobody" in k for k in keys)
    locks = audit(st, "login_lock")
    assert ("?", "address") in [(u, d["scope"]) for u, d in locks]
    assert ("quinn", "pair") in [(u, d["scope"]) for u, d in locks]
    assert [u for u, _ in audit(st, "login")] == ["alice"]


def test_only_the_pair_that_failed_is_locked(seeded):
    """A real account's wrong passwords lock that name from that address only; its right
    password from there gets the one answer, from elsewhere it logs in."""
    for n in range(seeded.settings.login_max_failures_per_pair):
        assert attempt_login("quinn", "bad-password-1", "10.0.0.2") == (security.LOGIN_REFUSED, None), n
    assert attempt_login("quinn", PASSWORD, "10.0.0.2") == (security.LOGIN_REFUSED, None)
    assert attempt_login("quinn", PASSWORD, "10.0.0.3")[0] is None  # another place: not punished


def test_a_pair_lock_is_audited_and_an_admin_unlock_lifts_it(seeded):
    st = seeded.settings
    for _ in range(st.login_max_failures_per_pair):
        attempt_login("alice", "wrong-password-1", ATTACKER)
    locks = audit(st, "login_lock")
    assert [(u, d["scope"], d["address"]) for u, d in locks] == [("alice", "pair", ATTACKER)]
    assert attempt_login("alice", PASSWORD, ATTACKER) == (security.LOGIN_REFUSED, None)
    refused = audit(st, "login_failed")[-1]
    assert refused == ("alice", {"address": ATTACKER, "reason": "throttled", "password_ok": True})

    app = typer.Typer()
    from dashboard import cli

    cli.register(app)
    r = CliRunner().invoke(app, ["user", "unlock", "alice"])
    assert r.exit_code == 0, r.output
    assert "1 lock(s) lifted" in r.output
    assert audit(st, "login_unlock") == [("cli", {"username": "alice", "address": None, "cleared": 1, "locks_lifted": 1})]
    err, grant = attempt_login("alice", PASSWORD, ATTACKER)
    assert err is None and grant is not None
    r = CliRunner().invoke(app, ["user", "unlock", "nobody-here"])
    assert r.exit_code == 2 and "no user" in r.output


def test_a_hot_address_gives_each_name_one_try(seeded):
    """Spraying from a hot address: a pair that has failed is refused even with the right
    password; a pair that has not failed still logs in."""
    st = seeded.settings
    attempt_login("alice", "typo-password", ATTACKER)  # alice mistypes once, then the spray
    for n in range(st.login_max_failures_per_address):
        attempt_login(f"spray-{n}", "Summer2026!", ATTACKER)
    assert attempt_login("alice", PASSWORD, ATTACKER) == (security.LOGIN_REFUSED, None)
    assert attempt_login("root", PASSWORD, ATTACKER)[0] is None  # a clean pair
    r = CliRunner()
    app = typer.Typer()
    from dashboard import cli

    cli.register(app)
    assert r.invoke(app, ["user", "unlock", "--address", ATTACKER]).exit_code == 0
    # the address lock and its unknown-name pair (locked at the 5th sprayed name)
    assert audit(st, "login_unlock")[0][1]["locks_lifted"] == 2
    assert attempt_login("alice", PASSWORD, ATTACKER)[0] is None


def test_client_address_believes_only_trusted_proxies():
    xff = "203.0.113.5, 198.51.100.7, 10.0.0.2"
    assert security.client_address("192.0.2.1", xff, []) == "192.0.2.1"  # no proxy trusted: the peer
    assert security.client_address("10.0.0.1", xff, ["10.0.0.1"]) == "10.0.0.2"
    assert security.client_address("10.0.0.1", xff, ["10.0.0.0/24"]) == "198.51.100.7"  # forged left part ignored
    assert security.client_address("10.0.0.1", "10.0.0.3", ["10.0.0.0/24"]) == "10.0.0.3"
    assert security.client_address("10.0.0.1", None, ["10.0.0.1"]) == "10.0.0.1"
    assert security.client_address("::1", "2001:db8::7", ["::1"]) == "2001:db8::7"


def test_public_url_and_trusted_proxies_settings_parse(monkeypatch: pytest.MonkeyPatch):
    from dashboard.server import normalize_origin
    from priorwatch.settings import Settings

    monkeypatch.setenv("PRIORWATCH_DASHBOARD_PUBLIC_URL", "https://PW.example.org:443/, http://10.1.1.1:8501")
    monkeypatch.setenv("PRIORWATCH_DASHBOARD_TRUSTED_PROXIES", '["10.0.0.1", "10.2.0.0/16"]')
    s = Settings()
    assert [normalize_origin(u) for u in s.dashboard_public_url] == ["https://pw.example.org", "http://10.1.1.1:8501"]
    assert s.dashboard_trusted_proxies == ["10.0.0.1", "10.2.0.0/16"]
    assert normalize_origin("null") is None and normalize_origin("http://[::1]:8501") == "http://[::1]:8501"


def test_known_and_unknown_names_cost_the_same_hashing(pw_settings, scrypt_calls):
    with session_scope(pw_settings) as s:
        auth.create_user(s, "carol", PASSWORD, "radiologist")
    scrypt_calls.clear()
    attempt_login("carol", "wrong-password", "10.0.0.9")
    attempt_login("not-carol", "wrong-password", "10.0.0.9")
    assert len(scrypt_calls) == 2


def _parallel_failures_all_count(st) -> None:  # type: ignore[no-untyped-def]
    """Guesses sent at once from one fresh address each count (none lost to a duplicate-key
    error or an overwritten count), and the lock they cause is set and audited once."""
    import threading

    n = st.login_max_failures_per_pair + 3
    answers: list[object] = []

    def guess(i: int) -> None:
        try:
            answers.append(attempt_login(f"parallel-{i}", "Autumn2026!", "10.7.7.7")[0])
        except Exception as exc:  # noqa: BLE001 - the failure this test looks for
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [security.LOGIN_REFUSED] * n
    with session_scope(st) as s:
        counts = {r.key: r.failures for r in s.exec(select(LoginThrottle)).all()}
    assert counts == {security.address_key("10.7.7.7"): n, security.pair_key(False, "", "10.7.7.7"): n}
    assert [(u, d["scope"]) for u, d in audit(st, "login_lock")] == [("?", "pair")]


def test_parallel_failures_all_count_sqlite(seeded):
    _parallel_failures_all_count(seeded.settings)


def test_parallel_failures_all_count_postgresql(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from tests.dashboard.conftest import postgres_dashboard

    with postgres_dashboard(tmp_path, monkeypatch, "pw_throttle") as settings:
        _parallel_failures_all_count(settings)
