"""The history strip and the linked side-by-side in a real headless Chromium (issue 29): a 4-study
history, any two studies side by side at the same zoom, pan and window; thumbnails only to a
logged-in session. Screenshots at 1366 and 1920 wide go to $PRIORWATCH_ARTIFACTS/screenshots/."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from dashboard.images import THUMB_MAX
from tests.conftest import free_port
from tests.dashboard.browser import dashboard_server, launch, login
from tests.dashboard.conftest import PASSWORD
from tests.dashboard.history_seed import seed_history


@pytest.fixture
def server(pw_settings, tmp_path):  # type: ignore[no-untyped-def]
    seed = seed_history(pw_settings)
    with dashboard_server(tmp_path, free_port()) as url:
        yield url, seed


def _transforms(frame) -> list[str]:  # type: ignore[no-untyped-def]
    imgs = frame.locator(".pane img")
    return [imgs.nth(i).evaluate("e => e.complete && e.naturalWidth ? e.style.transform : 'loading'") for i in range(2)]


def _shots(page, shots: Path) -> None:  # type: ignore[no-untyped-def]
    for width in (1366, 1920):
        page.set_viewport_size({"width": width, "height": 2200})  # Streamlit scrolls inside: tall shows all
        page.evaluate("document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / f"history_review_{width}.png"))


def test_strip_puts_any_two_studies_side_by_side_linked(server, artifacts_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    url, seed = server
    shots = artifacts_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(30_000)
            login(page, url, "alice", PASSWORD)
            grid = page.locator("[data-testid='stDataFrame']")
            expect(grid).to_be_visible()
            page.wait_for_timeout(1200)
            box = grid.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.35, box["y"] + 35 + 17)
            expect(page.get_by_role("textbox", name="Draft (editable)")).to_be_visible()
            frame = page.frame_locator("iframe").first
            tiles = frame.locator(".tile")
            expect(tiles).to_have_count(4)
            assert [tiles.nth(i).get_attribute("data-role") for i in range(4)] == [
                "baseline", "intermediate study", "compared prior", "current"]
            expect(frame.locator("body")).to_have_attribute("data-sel", "3,2")  # current left, compared prior right

            # thumbnails: small PNGs to this session, 401 without it
            thumb = tiles.nth(0).locator(".th").evaluate("e => getComputedStyle(e).backgroundImage")
            path = thumb.split('"')[1].removeprefix(url)  # computed style: an absolute URL
            assert path.startswith(f"/pw/img/{seed.instance_ids[0]}?") and path.endswith("thumb=1")
            r = page.request.get(url + path)
            assert r.status == 200 and r.headers["content-type"] == "image/png"
            assert max(Image.open(io.BytesIO(r.body())).size) <= THUMB_MAX
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + path, timeout=10)
            assert e.value.code == 401

            # zoom and pan, then put the baseline on the right and the intermediate on the left
            frame.locator("#zin").click()
            frame.locator("#zin").click()
            pb = frame.locator("#p0").bounding_box()
            page.mouse.move(pb["x"] + 200, pb["y"] + 200)
            page.mouse.down()
            page.mouse.move(pb["x"] + 260, pb["y"] + 240, steps=4)
            page.mouse.up()
            before = _transforms(frame)
            assert "scale(2.25)" in before[0] and before[0] == before[1]
            tiles.nth(0).locator(".toR").click()
            tiles.nth(1).locator(".toL").click()
            expect(frame.locator("body")).to_have_attribute("data-sel", "1,0")
            srcs = [frame.locator(f"#p{i} img").get_attribute("src") for i in range(2)]
            assert srcs[0].startswith(f"/pw/img/{seed.instance_ids[1]}?") and srcs[1].startswith(f"/pw/img/{seed.instance_ids[0]}?")
            expect(frame.locator("#p0 .cap")).to_have_text("Intermediate study · 2025-06-01 · PA")
            expect(frame.locator("#p1 .cap")).to_have_text("Baseline · 2025-01-12 · PA")
            for _ in range(50):
                after = _transforms(frame)
                if "loading" not in after:
                    break
                page.wait_for_timeout(200)
            assert after == before  # same zoom and pan on the newly shown pair

            # the window is linked too: a preset applies to both panes and keeps the pair
            page.get_by_text("Lung", exact=True).click()
            frame = page.frame_locator("iframe").first
            expect(frame.locator("#p1 img")).to_have_attribute("src", f"/pw/img/{seed.instance_ids[0]}?preset=lung")
            expect(frame.locator("#p0 img")).to_have_attribute("src", f"/pw/img/{seed.instance_ids[1]}?preset=lung")
            expect(frame.locator("body")).to_have_attribute("data-sel", "1,0")
            expect(frame.locator("#zlabel")).to_have_text("225 %")
            # for the screenshots: fitted, the current (15 mm nodule) beside the baseline (none)
            frame.locator("#zreset").click()
            frame.locator(".tile").nth(3).locator(".toL").click()
            expect(frame.locator("body")).to_have_attribute("data-sel", "3,0")
            _shots(page, shots)
        finally:
            browser.close()
