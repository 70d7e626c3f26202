"""Screenshots of the QA monitoring page at 1366 and 1920 px: a simulated model-version change
(with one alert acknowledged), served by `priorwatch dashboard`'s own server command, logged in
as a QA user in the system's headless Chromium.

    .venv/bin/python -m tests.monitoring.qa_screenshots [--out artifacts/screenshots]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlmodel import Session, select

REPO = Path(__file__).resolve().parents[2]


def seed(data_dir: Path) -> None:
    from dashboard.auth import Role, create_user
    from monitoring import simulate
    from monitoring.settings import MonitoringSettings
    from priorwatch.db import get_engine, init_db
    from priorwatch.models import MonitoringAlert
    from priorwatch.settings import Settings

    s = Settings(data_dir=data_dir)
    engine = init_db(s)
    simulate.run(engine, MonitoringSettings(evidently_html=False), "model_version", start=date(2025, 1, 6), days=54,
                 per_day=60, event_day=49, echo=print)
    with Session(get_engine(s)) as session:
        create_user(session, "qa1", "qa-password-123", Role.qa)
        first = session.exec(select(MonitoringAlert).order_by(MonitoringAlert.id)).first()
        if first is not None:  # one acknowledged problem, to show the state
            first.acknowledged, first.acknowledged_by = True, "qa1"
            first.acknowledged_at = first.as_of
            session.add(first)
        session.commit()


def shoot(data_dir: Path, out: Path) -> list[Path]:
    """Log in as the QA user and save a full-height screenshot at each width."""
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
        for width, height in ((1366, 768), (1920, 1080)):
            page = browser.new_page(viewport={"width": width, "height": height})
            login(page, url, "qa1", "qa-password-123", expect_heading="Monitoring")
            page.get_by_text("Subgroups (current window)").wait_for(timeout=60_000)
            page.wait_for_timeout(2500)  # charts draw after their data arrives
            # Streamlit scrolls an inner container, not the page: grow the viewport to its full height.
            last = 0
            for _ in range(6):  # grow until the height stops changing (charts size themselves after layout)
                full = int(page.evaluate("() => Math.max(...[...document.querySelectorAll('*')]"
                                         ".map(e => e.scrollHeight))"))
                if full <= last:
                    break
                last = full
                page.set_viewport_size({"width": width, "height": full + 40})
                page.wait_for_timeout(2000)
            path = out / f"qa_monitoring_{width}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
            page.close()
        browser.close()
    return paths


def cli(seed_fn: Callable[[Path], object], shoot_fn: Callable[[Path, Path], list[Path]]) -> None:
    """`--out DIR [--data-dir DIR]`: seed a data dir (kept when given), shoot, print the paths.
    Shared by every QA screenshot script."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "artifacts" / "screenshots")
    ap.add_argument("--data-dir", type=Path, help="reuse (or keep) a seeded data dir")
    args = ap.parse_args()
    if args.data_dir:
        if not (args.data_dir / "priorwatch.db").exists():
            seed_fn(args.data_dir)
        paths = shoot_fn(args.data_dir, args.out)
    else:
        with tempfile.TemporaryDirectory() as d:
            seed_fn(Path(d))
            paths = shoot_fn(Path(d), args.out)
    for p in paths:
        print(p)


def main() -> None:
    cli(seed, shoot)


if __name__ == "__main__":
    main()
