"""Screenshot of the QA page's calibration section (issue 30) in real Chromium: the simulated
miscalibration stream (consolidation's confidence inflated from day 49 on, daily snapshots to day 56)
with one recalibration proposal waiting (fitted on days 49-54, judged on 54-56), seen by an admin (who may accept or reject it).

    .venv/bin/python -m tests.monitoring.qa_calibration_screenshots [--out artifacts/screenshots]
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

REPO = Path(__file__).resolve().parents[2]
START = date(2025, 1, 6)
EVENT_DAY = 49


def seed(data_dir: Path) -> None:
    from dashboard.auth import Role, create_user
    from monitoring import simulate
    from monitoring.recalibration import propose
    from monitoring.settings import MonitoringSettings
    from priorwatch.db import get_engine, init_db
    from priorwatch.settings import Settings

    s = Settings(data_dir=data_dir)
    engine = init_db(s)
    ms = MonitoringSettings(evidently_html=False)
    simulate.run(engine, ms, "miscalibration", start=START, days=EVENT_DAY + 7, per_day=60, event_day=EVENT_DAY,
                 echo=print)
    t0 = datetime.combine(START, datetime.min.time())
    day = lambda d: t0 + timedelta(days=d)  # noqa: E731
    propose(engine, (day(EVENT_DAY), day(EVENT_DAY + 5)), (day(EVENT_DAY + 5), day(EVENT_DAY + 7)), ms, "qa1")
    with Session(get_engine(s)) as session:
        create_user(session, "admin1", "admin-password-123", Role.admin)
        session.commit()


def shoot(data_dir: Path, out: Path) -> list[Path]:
    """Log in as the admin, open Monitoring, and save the calibration section and the whole page."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import free_port
    from tests.dashboard.browser import dashboard_server, launch, login

    os.environ["PRIORWATCH_DATA_DIR"] = str(data_dir)
    from priorwatch.settings import reset_settings_cache

    reset_settings_cache()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with dashboard_server(data_dir, free_port()) as url, sync_playwright() as p:
        browser = launch(p)
        width = 1366
        page = browser.new_page(viewport={"width": width, "height": 900})
        login(page, url, "admin1", "admin-password-123", expect_heading=None)
        page.get_by_text("Monitoring", exact=True).first.click()
        page.get_by_text("Does the engine's confidence mean what it says?").wait_for(timeout=90_000)
        page.wait_for_timeout(3000)
        last = 0
        for _ in range(6):  # Streamlit scrolls an inner container: grow the viewport to the content
            full = int(page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"))
            if full <= last:
                break
            last = full
            page.set_viewport_size({"width": width, "height": full + 40})
            page.wait_for_timeout(2000)
        whole = out / "qa_calibration_page.png"
        page.screenshot(path=str(whole), full_page=True)
        paths.append(whole)
        head = page.get_by_text("Does the engine's confidence mean what it says?")
        top = head.bounding_box()
        end = page.get_by_text("Recalibration of the confidence (reviewed proposals)").bounding_box()
        if top and end:
            clip = {"x": 0, "y": max(0, top["y"] - 10), "width": width, "height": end["y"] - top["y"] + 420}
            section = out / "qa_calibration_section.png"
            page.screenshot(path=str(section), clip=clip, full_page=True)
            paths.append(section)
        page.close()
        browser.close()
    return paths


def main() -> None:
    from tests.monitoring.qa_screenshots import cli

    cli(seed, shoot)


if __name__ == "__main__":
    main()
