"""Helpers for the dashboard's browser checks: start `priorwatch dashboard`'s server command,
launch the system Chromium headless, log in, and race two browsers on one study.

`python -m tests.dashboard.browser --races 50` runs the long race check on its own (a seeded
data dir in a temporary folder) and prints the tally; the suite runs a short version.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from priorwatch.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def dashboard_server(workdir: Path, port: int, env_extra: dict[str, str] | None = None) -> Iterator[str]:
    """`streamlit run dashboard/server.py` as `priorwatch dashboard` starts it; yields its URL."""
    from dashboard.cli import dashboard_env, streamlit_command

    env = {**dashboard_env(), **(env_extra or {})}
    log = open(workdir / "streamlit.log", "wb")
    proc = subprocess.Popen(streamlit_command(port), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {(workdir / 'streamlit.log').read_text()[-2000:]}")
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


def launch(p):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)  # two shared cores: a first render can take seconds
    exe = CHROMIUM if os.path.exists(CHROMIUM) else None
    return p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)


def login(page, url: str, user: str, password: str, *, expect_heading: str | None = "Worklist") -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("textbox", name="Password").press("Enter")
    if expect_heading:
        expect(page.get_by_role("heading", name=expect_heading)).to_be_visible()


def seed_race_items(settings: Settings, n: int) -> list[int]:
    """`n` open worklist items (one comparison each) for the seeded patient A's current study."""
    from sqlmodel import select

    from priorwatch.db import session_scope
    from priorwatch.models import Comparison, Job, Study, WorklistItem, utcnow

    ids: list[int] = []
    with session_scope(settings) as s:
        cur = s.exec(select(Study).where(Study.study_uid == "1.2.826.0.1.9000.1002")).one()
        prior = s.exec(select(Study).where(Study.study_uid == "1.2.826.0.1.9000.1001")).one()
        for i in range(n):
            job = Job(study_id=cur.id, study_version=100 + i, idempotency_key=f"race-{i}", state="done")  # type: ignore[arg-type]
            s.add(job)
            s.flush()
            comp = Comparison(job_id=job.id, study_id=cur.id, prior_study_id=prior.id, study_version=100 + i,  # type: ignore[arg-type]
                              interval_days=766, draft_text="Stable appearances.")
            s.add(comp)
            s.flush()
            item = WorklistItem(comparison_id=comp.id, study_id=cur.id, created_at=utcnow() - timedelta(days=2))  # type: ignore[arg-type]
            s.add(item)
            s.flush()
            ids.append(item.id)  # type: ignore[arg-type]
    return ids


@dataclass
class RaceTally:
    races: int = 0
    one_review_each: int = 0
    loser_saw_signer: int = 0
    winners: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def race(url: str, settings: Settings, item_ids: list[int], users: tuple[str, str], password: str,
         shots: Path | None = None) -> RaceTally:
    """For each item: the first user opens it (claims it), the second sees who reads it and takes
    it over, then both press "Accept as is" at the same instant (a shared wall-clock deadline
    in both browsers). Counts reviews per item and whether the loser's page names the signer.
    Who opens first alternates, so each user wins half the races."""
    from playwright.sync_api import expect, sync_playwright
    from sqlmodel import select

    from priorwatch.db import session_scope
    from priorwatch.models import Review, SignOff

    tally = RaceTally()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            pages = {}
            for u in users:
                ctx = browser.new_context(viewport={"width": 1366, "height": 768})
                pg = ctx.new_page()
                pg.set_default_timeout(30_000)
                login(pg, url, u, password)
                pages[u] = pg
            for n, item in enumerate(item_ids):
                first, second = users if n % 2 == 0 else users[::-1]
                a, b = pages[first], pages[second]
                a.goto(f"{url}/?item={item}")
                expect(a.get_by_role("textbox", name="Draft (editable)")).to_be_visible()
                if shots is not None and n == 0:  # the claim on the second user's worklist
                    b.goto(url)
                    expect(b.locator("[data-testid='stDataFrame']")).to_be_visible()
                    b.wait_for_timeout(1500)
                    b.screenshot(path=str(shots / "worklist_claim_shown_1366.png"))
                b.goto(f"{url}/?item={item}")
                expect(b.get_by_text(f"Being read by {first} since", exact=False)).to_be_visible()
                if shots is not None and n == 0:
                    b.wait_for_function("() => [...document.querySelectorAll('iframe')].length > 0")
                    b.wait_for_timeout(1500)
                    b.screenshot(path=str(shots / "claim_seen_by_second_user_1366.png"))
                b.get_by_role("button", name="Take over this study").click()
                expect(b.get_by_role("textbox", name="Draft (editable)")).to_be_visible()
                for pg in (a, b):  # the page draws top-down: wait for the buttons, not just the text box
                    expect(pg.get_by_role("button", name="Accept as is")).to_be_enabled()
                # Both press at one shared instant (same machine clock).
                go_at = time.time() * 1000 + 400
                for pg in (a, b):
                    armed = pg.evaluate(
                        """([t]) => { const btn = [...document.querySelectorAll('button')]
                               .find(x => x.innerText.trim().startsWith('Accept as is'));
                             if (!btn) return false;
                             setTimeout(() => btn.click(), Math.max(0, t - Date.now())); return true; }""",
                        [go_at],
                    )
                    if not armed:
                        tally.failures.append(f"item {item}: no Accept button to press")
                tally.races += 1
                # The winner lands on the worklist with its flash; the loser's page names the signer.
                winner_pg = None
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and winner_pg is None:
                    for u, pg in ((first, a), (second, b)):
                        if pg.get_by_text("Signed (accepted)", exact=False).count():
                            winner_pg = u
                    time.sleep(0.2)
                with session_scope(settings) as s:
                    reviews = s.exec(select(Review).where(Review.worklist_item_id == item)).all()
                    so = s.exec(select(SignOff).where(SignOff.worklist_item_id == item)).all()
                signer = so[0].signer if len(so) == 1 else None
                if len(reviews) == 1 and len(so) == 1 and reviews[0].reviewer == signer == winner_pg:
                    tally.one_review_each += 1
                    tally.winners[signer] = tally.winners.get(signer, 0) + 1
                else:
                    tally.failures.append(f"item {item}: {len(reviews)} reviews, signoffs {[x.signer for x in so]}, winner page {winner_pg}")
                    continue
                loser = a if signer == second else b
                try:
                    expect(loser.get_by_text(f"by {signer} at", exact=False).first).to_be_visible(timeout=15_000)
                    tally.loser_saw_signer += 1
                except AssertionError:
                    tally.failures.append(f"item {item}: the loser's page did not name {signer}")
                if shots is not None and n == 0:
                    for w in (1366, 1920):  # tall: Streamlit scrolls inside its own container
                        loser.set_viewport_size({"width": w, "height": 1900})
                        loser.wait_for_timeout(1200)
                        loser.screenshot(path=str(shots / f"signed_state_seen_by_loser_{w}.png"))
                    loser.set_viewport_size({"width": 1366, "height": 768})
        finally:
            browser.close()
    return tally


def main() -> None:  # pragma: no cover - the long check, run by hand
    import argparse
    import json
    import tempfile

    from priorwatch.settings import get_settings, reset_settings_cache
    from tests.conftest import free_port
    from tests.dashboard.conftest import PASSWORD, seed_database

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--races", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PRIORWATCH_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ["PRIORWATCH_DASHBOARD_REFRESH_S"] = "0"
        os.environ.pop("PRIORWATCH_DATABASE_URL", None)
        reset_settings_cache()
        settings = get_settings()
        from priorwatch.db import init_db

        init_db(settings)
        seed_database(settings)
        from dashboard import auth
        from priorwatch.db import session_scope

        with session_scope(settings) as s:
            auth.create_user(s, "bob", PASSWORD, "radiologist")
        items = seed_race_items(settings, args.races)
        t0 = time.monotonic()
        with dashboard_server(Path(tmp), free_port()) as url:
            tally = race(url, settings, items, ("alice", "bob"), PASSWORD)
        print(json.dumps({**tally.__dict__, "seconds": round(time.monotonic() - t0, 1)}, indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
