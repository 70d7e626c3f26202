"""End to end in a real headless Chromium against `streamlit run dashboard/app.py`.

Log in (keyboard only), open the worklist, open the urgent study, edit the draft, accept;
then check the Review and AuditLog rows in the database, that the item left the worklist,
and that a result landing afterwards appears without a reload. Screenshots of the worklist
and the review page are saved under artifacts/screenshots/ (or $PRIORWATCH_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from dashboard.cli import dashboard_env, streamlit_command
from dashboard.queries import worklist
from priorwatch.db import session_scope
from priorwatch.models import AuditLog, Comparison, Job, Review, WorklistItem, utcnow
from tests.conftest import free_port, require_binary
from tests.dashboard.conftest import PASSWORD

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    path = "/usr/bin/chromium"
    return path if os.path.exists(path) else require_binary("chromium")


@pytest.fixture
def shots_dir(artifacts_dir: Path) -> Path:
    d = artifacts_dir / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def server(seeded, monkeypatch, tmp_path):
    monkeypatch.setenv("PRIORWATCH_DASHBOARD_REFRESH_S", "2")
    port = free_port()
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        streamlit_command(port), env=dashboard_env(), stdout=log, stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not become healthy in 60 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_login_review_edit_accept_in_chromium(seeded, server, shots_dir):
    from playwright.sync_api import expect, sync_playwright

    exe = _chromium()
    new_text = "Large new right apical pneumothorax. Left effusion not confirmed. Clinician informed."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(server)
            # Log in with the keyboard only.
            page.get_by_label("Username").click()
            page.keyboard.type("alice")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
            expect(page.get_by_text("3 studies · 1 urgent", exact=False)).to_be_visible()
            pick = page.get_by_role("combobox", name="Study to review")
            expect(pick).to_have_value(re.compile(r"^URGENT · DOE\^JANE \(PA-001\)"))
            page.wait_for_timeout(1000)  # let the grid paint before the screenshot
            page.screenshot(path=str(shots_dir / "worklist.png"), full_page=True)

            # Open the urgent study (selected by default: urgent first) with the keyboard.
            page.get_by_role("button", name="Open review").focus()
            page.keyboard.press("Enter")
            draft = page.get_by_role("textbox", name="Draft (editable)")
            expect(draft).to_be_visible()
            expect(page.get_by_text("pneumothorax (right upper) — new", exact=False)).to_be_visible()
            imgs = page.locator("[data-testid='stImage'] img")
            expect(imgs).to_have_count(2)
            page.wait_for_function(
                "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")].every(i => i.complete && i.naturalWidth > 0)"
            )
            page.get_by_text("Difference overlay", exact=True).click()
            page.wait_for_timeout(1500)
            # Streamlit scrolls inside its own container: a tall viewport shows the whole page.
            page.set_viewport_size({"width": 1400, "height": 2600})
            page.wait_for_timeout(800)
            page.screenshot(path=str(shots_dir / "review.png"), full_page=True)
            page.set_viewport_size({"width": 1400, "height": 1000})

            # Edit the draft and accept.
            draft.fill(new_text)
            draft.press("Control+Enter")
            page.wait_for_timeout(800)
            page.get_by_role("button", name="Accept with edits").click()
            expect(page.get_by_text("Review saved (edited)", exact=False)).to_be_visible()
            expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
            expect(page.get_by_text("2 studies · 0 urgent", exact=False)).to_be_visible()
            expect(pick).to_have_value(re.compile(r"^ROE\^RICHARD"))

            # A new result landing now shows up without a reload.
            with session_scope(seeded.settings) as s:
                old = s.get(Comparison, seeded.urgent_comparison)
                job = Job(study_id=old.study_id, study_version=2, idempotency_key="job-a-v2", state="done")
                s.add(job)
                s.flush()
                comp = Comparison(job_id=job.id, study_id=old.study_id, prior_study_id=old.prior_study_id,
                                  study_version=2, urgent=False, draft_text="Late series: no change.")
                s.add(comp)
                s.flush()
                s.add(WorklistItem(comparison_id=comp.id, study_id=old.study_id, created_at=utcnow() - timedelta(hours=5)))
            expect(page.get_by_text("3 studies · 0 urgent", exact=False)).to_be_visible(timeout=15_000)
            page.wait_for_timeout(1500)  # let the grid repaint
            page.screenshot(path=str(shots_dir / "worklist_after_accept.png"), full_page=True)
        finally:
            browser.close()

    with session_scope(seeded.settings) as s:
        rev = s.exec(select(Review)).one()
        assert rev.action == "edited"
        assert rev.reviewer == "alice"
        assert rev.final_text == new_text
        assert rev.worklist_item_id == seeded.urgent_item
        assert rev.comparison_id == seeded.urgent_comparison
        assert json.loads(rev.final_labels_json)[0]["finding"] == "pneumothorax"
        assert rev.started_at is not None and rev.finished_at >= rev.started_at
        assert rev.time_spent_s is not None and rev.time_spent_s > 0
        assert s.get(WorklistItem, seeded.urgent_item).status == "edited"
        audit = [(a.user, a.action, a.study_id) for a in s.exec(select(AuditLog).order_by(AuditLog.id)).all()]
        open_ids = [r["item_id"] for r in worklist(s)]
    assert seeded.urgent_item not in open_ids
    assert ("alice", "login", None) in audit
    assert ("alice", "view", seeded.urgent_study) in audit
    assert ("alice", "edit", seeded.urgent_study) in audit
    assert ("alice", "accept", seeded.urgent_study) in audit
    actions = [a for _, a, _ in audit]
    assert actions.index("login") < actions.index("view") < actions.index("edit") < actions.index("accept")
    for name in ("worklist.png", "review.png"):
        assert (shots_dir / name).stat().st_size > 10_000
