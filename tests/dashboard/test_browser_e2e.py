"""End to end in a real headless Chromium against the dashboard's server (`dashboard/server.py`).

- Reading: log in, click the urgent row, zoom the synced viewer, type into the draft, reload
  mid-edit (the draft and the study come back), accept with edits; the Review and audit rows.
- Two radiologists race on "Accept as is" (short version; `python -m tests.dashboard.browser
  --races 50` is the long one): one review per study, the loser's page names the signer, the
  claim is shown to the second user.
- Security: an image URL without a session is 401, and so is the old cookie after logout;
  Streamlit's /media/ too. Logins: a wrong password, an unknown name and a locked pair read
  alike on the page; a real user whose own pair has not failed logs in from an address gone
  hot with failures under other names; a forged X-Forwarded-For is ignored (no trusted proxy);
  an unknown typed username is never stored.

Screenshots at 1366x768 and 1920x1080 go to artifacts/screenshots/ (or $PRIORWATCH_ARTIFACTS).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from dashboard import auth, security
from priorwatch.db import session_scope
from priorwatch.models import AuditLog, DashboardSession, Review, WorklistItem
from tests.conftest import free_port
from tests.dashboard.browser import dashboard_server, launch, login, race, seed_race_items
from tests.dashboard.conftest import PASSWORD

RACES_IN_SUITE = 5  # the 50-race run is `python -m tests.dashboard.browser --races 50`
MAX_FAILURES = 3  # per (address, name) pair, for the lockout test (the default is 5)
MAX_ADDRESS_FAILURES = 4  # per address (the default is 20): three rounds below make it hot
FORGED_CLIENT = "203.0.113.66"  # what a client claims in X-Forwarded-For; no proxy is trusted


@pytest.fixture
def shots_dir(artifacts_dir: Path) -> Path:
    d = artifacts_dir / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def server(seeded, tmp_path):
    env = {"PRIORWATCH_DASHBOARD_REFRESH_S": "2", "PRIORWATCH_LOGIN_MAX_FAILURES_PER_PAIR": str(MAX_FAILURES),
           "PRIORWATCH_LOGIN_MAX_FAILURES_PER_ADDRESS": str(MAX_ADDRESS_FAILURES)}
    with dashboard_server(tmp_path, free_port(), env) as url:
        yield url


def _tall(page, width: int) -> None:  # type: ignore[no-untyped-def]
    """Streamlit scrolls inside its own container: a tall viewport shows the whole page."""
    page.set_viewport_size({"width": width, "height": 2000})
    page.wait_for_timeout(1200)


def test_read_zoom_reload_mid_edit_and_accept(seeded, server, shots_dir):
    from playwright.sync_api import expect, sync_playwright

    typed = "Large new right apical pneumothorax. Left effusion not confirmed. Clinician informed."
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(30_000)
            page.goto(server)
            # Log in with the keyboard only.
            page.get_by_role("textbox", name="Username").click()
            page.keyboard.type("alice")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
            cookie = {c["name"]: c for c in page.context.cookies()}["pw_session"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            expect(page.get_by_text("3 studies · 1 urgent", exact=False)).to_be_visible()
            grid = page.locator("[data-testid='stDataFrame']")
            expect(grid).to_be_visible()
            page.wait_for_timeout(1200)  # let the grid paint
            page.screenshot(path=str(shots_dir / "worklist_1366.png"))
            page.set_viewport_size({"width": 1920, "height": 1080})
            page.wait_for_timeout(1200)
            page.screenshot(path=str(shots_dir / "worklist_1920.png"))
            page.set_viewport_size({"width": 1366, "height": 768})
            page.wait_for_timeout(800)

            # Click the first (urgent) row.
            box = grid.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 1366  # the worklist fits 1366 px
            page.mouse.click(box["x"] + box["width"] * 0.35, box["y"] + 35 + 17)  # a cell, not the row marker
            draft = page.get_by_role("textbox", name="Draft (editable)")
            expect(draft).to_be_visible()
            expect(page.get_by_role("heading", name="DOE^JANE · 74 y F")).to_be_visible()
            expect(page.get_by_text("Claimed by you since", exact=False)).to_be_visible()

            # The viewer: two images from the session-only route, zoomed together.
            frame = page.frame_locator("iframe").first
            imgs = frame.locator("img")
            expect(imgs).to_have_count(2)
            srcs = [imgs.nth(i).get_attribute("src") for i in range(2)]
            assert all(s and s.startswith("/pw/img/") for s in srcs)
            frame.locator("#zin").click()
            frame.locator("#zin").click()
            expect(frame.locator("#zlabel")).to_have_text("225 %")
            t0 = [imgs.nth(i).evaluate("e => e.style.transform") for i in range(2)]
            assert "scale(2.25)" in t0[0] and "scale(2.25)" in t0[1]
            pane = frame.locator("#p0")
            pb = pane.bounding_box()
            page.mouse.move(pb["x"] + 200, pb["y"] + 200)
            page.mouse.down()
            page.mouse.move(pb["x"] + 260, pb["y"] + 240, steps=4)
            page.mouse.up()
            t1 = [imgs.nth(i).evaluate("e => e.style.transform") for i in range(2)]
            assert t1[0] != t0[0] and t1[0] == t1[1]  # panned, and both in step
            expect(frame.locator(".mk.l").first).to_have_text("R")  # the patient's right on the image's left
            _tall(page, 1366)
            page.screenshot(path=str(shots_dir / "review_zoomed_1366.png"))
            _tall(page, 1920)
            page.screenshot(path=str(shots_dir / "review_zoomed_1920.png"))
            page.set_viewport_size({"width": 1366, "height": 768})

            # Type without leaving the box, let the autosave run, then reload.
            draft.click()
            draft.press("Control+a")
            draft.press_sequentially(typed, delay=5)
            page.wait_for_function("() => document.body.dataset.pwSaved === '200'", timeout=10_000)
            page.reload()
            draft = page.get_by_role("textbox", name="Draft (editable)")
            expect(draft).to_have_value(typed)
            expect(page.get_by_role("heading", name="DOE^JANE · 74 y F")).to_be_visible()
            expect(page.get_by_text("was restored", exact=False)).to_be_visible()

            page.get_by_role("button", name="Accept with edits").click()
            expect(page.get_by_text("Signed (edited)", exact=False)).to_be_visible()
            expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
            expect(page.get_by_text("2 studies · 0 urgent", exact=False)).to_be_visible()
        finally:
            browser.close()

    with session_scope(seeded.settings) as s:
        rev = s.exec(select(Review)).one()
        assert rev.action == "edited" and rev.reviewer == "alice"
        assert rev.final_text.startswith(typed + "\n\nSigned by alice on ")
        assert "PRELIMINARY" not in rev.final_text
        assert rev.worklist_item_id == seeded.urgent_item
        assert rev.time_spent_s is not None and rev.time_spent_s > 0
        item = s.get(WorklistItem, seeded.urgent_item)
        assert item.status == "edited" and item.claimed_by is None
        audit = [(a.user, a.action, a.study_id) for a in s.exec(select(AuditLog).order_by(AuditLog.id)).all()]
        views = [json.loads(a.detail) for a in s.exec(select(AuditLog).where(AuditLog.action == "worklist_view")).all()]
    actions = [a for _, a, _ in audit]
    assert actions.index("login") < actions.index("view") < actions.index("edit") < actions.index("accept")
    assert views and all(isinstance(v["session"], int) for v in views)


def test_two_radiologists_race_on_accept_one_review_each(seeded, server, shots_dir):
    with session_scope(seeded.settings) as s:
        auth.create_user(s, "bob", PASSWORD, "radiologist")
    items = seed_race_items(seeded.settings, RACES_IN_SUITE)
    tally = race(server, seeded.settings, items, ("alice", "bob"), PASSWORD, shots=shots_dir)
    assert tally.failures == []
    assert tally.races == tally.one_review_each == tally.loser_saw_signer == RACES_IN_SUITE
    assert set(tally.winners) == {"alice", "bob"}
    with session_scope(seeded.settings) as s:
        takeovers = s.exec(select(AuditLog).where(AuditLog.action == "claim_takeover")).all()
    assert len(takeovers) == RACES_IN_SUITE


def test_images_need_a_session_and_logins_lock_out(seeded, server):
    import urllib.error
    import urllib.request

    from playwright.sync_api import expect, sync_playwright

    def status(url: str, cookie: str | None = None) -> int:
        req = urllib.request.Request(url, headers={"Cookie": f"pw_session={cookie}"} if cookie else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(30_000)
            login(page, server, "alice", PASSWORD)
            page.goto(f"{server}/?item={seeded.urgent_item}")
            frame = page.frame_locator("iframe").first
            src = frame.locator("img").first.get_attribute("src")
            img_url = server + src
            cookie = {c["name"]: c["value"] for c in page.context.cookies()}["pw_session"]
            rsp = page.request.get(img_url)
            assert rsp.status == 200 and rsp.headers["content-type"] == "image/png"
            assert "no-store" in rsp.headers["cache-control"]
            # Server-side windowing on the full-depth data: full resolution on demand, manual W/L.
            from io import BytesIO

            from PIL import Image

            shown = Image.open(BytesIO(rsp.body()))
            full = Image.open(BytesIO(page.request.get(img_url + "&full=1").body()))
            assert max(shown.size) <= 1024 and full.size == (1841, 1955)
            narrow = page.request.get(img_url + "&c=2000&w=50").body()
            assert narrow != rsp.body() and page.request.get(img_url + "&c=2000&w=5000").body() != narrow
            assert status(img_url) == 401  # no session
            assert status(img_url, "1.forged.0123456789abcdef0123456789abcdef") == 401
            assert status(f"{server}/media/anything.png") == 401
            page.get_by_role("button", name="Log out").click()
            expect(page.get_by_role("button", name="Log in")).to_be_visible()
            assert "pw_session" not in {c["name"] for c in page.context.cookies()}
            assert status(img_url, cookie) == 401  # the old cookie is dead after logout
            assert page.request.get(img_url).status == 401

            # Logins, every request claiming another client address (ignored: no trusted proxy).
            # A known name (alice) and an unknown one (a password typed into the username box)
            # fail in turn: one answer at every count; alice's pair locks, the address goes hot.
            page.set_extra_http_headers({"X-Forwarded-For": FORGED_CLIENT})
            answers = []
            for _ in range(MAX_FAILURES):
                for name in ("alice", "hunter2-secret"):
                    login(page, server, name, "wrong-password-1", expect_heading=None)
                    alert = page.locator("[data-testid='stAlert']")
                    expect(alert).to_be_visible()
                    answers.append(alert.inner_text().strip())
            login(page, server, "alice", PASSWORD, expect_heading=None)  # her own pair failed: refused
            expect(page.locator("[data-testid='stAlert']")).to_be_visible()
            answers.append(page.locator("[data-testid='stAlert']").inner_text().strip())
            assert answers == [security.LOGIN_REFUSED] * (2 * MAX_FAILURES + 1)
            # root has not failed from here: the hot address does not stop the right password.
            login(page, server, "root", PASSWORD)
        finally:
            browser.close()

    with session_scope(seeded.settings) as s:
        failed = s.exec(select(AuditLog).where(AuditLog.action.in_(["login_failed", "login_lock"])).order_by(AuditLog.id)).all()  # type: ignore[attr-defined]
        sessions = s.exec(select(DashboardSession).order_by(DashboardSession.id)).all()
    assert [a.user for a in failed if a.action == "login_failed"] == ["alice", "?"] * MAX_FAILURES + ["alice"]
    locks = [(a.user, json.loads(a.detail)["scope"]) for a in failed if a.action == "login_lock"]
    assert ("alice", "pair") in locks and ("?", "address") in locks
    assert {json.loads(a.detail)["address"] for a in failed} == {"local"}  # not FORGED_CLIENT
    assert not any("hunter2" in (a.user + (a.detail or "")) for a in failed)
    assert [(x.username, x.end_reason) for x in sessions] == [("alice", "logout"), ("root", None)]
