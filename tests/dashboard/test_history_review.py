"""The review page with a 4-study history (issue 29), through Streamlit's AppTest: the findings
table shows each finding's sizes over time and a trend line, a chart plots them against the study
dates, the draft names the prior it compares with and the baseline, and the viewer's HTML carries
the strip of all four studies with the current on the left and the compared prior on the right."""

from __future__ import annotations

import json

import pytest

from dashboard import history_view
from tests.dashboard.history_seed import HistorySeed, seed_history
from tests.dashboard.test_app_pages import app_as, open_review, texts


@pytest.fixture
def history(pw_settings) -> HistorySeed:  # type: ignore[no-untyped-def]
    return seed_history(pw_settings)


def test_findings_table_shows_sizes_over_time_and_trend(history: HistorySeed) -> None:
    at = open_review(app_as("alice"), history.item_id)
    df = at.dataframe[0].value
    assert df["Finding"].tolist() == ["nodule", "effusion"]
    assert df["Sizes over time"].tolist() == ["0 → 8 → 11 → 15 mm", "20 → 22 → n/a → 21 mm"]
    assert [list(x) for x in df["Trend"]] == [[0.0, 8.0, 11.0, 15.0], [20.0, 22.0, 21.0]]
    assert "**nodule (left middle):** increasing since 2025-06-01: 8 → 11 → 15 mm" in texts(at)
    assert df["First seen"].tolist() == ["2025-06-01", "2025-01-12"]
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1  # the sizes-over-time chart
    spec = json.loads(charts[0].proto.spec)
    assert spec["mark"]["type"] == "line" and spec["encoding"]["x"]["field"] == "date"
    assert spec["encoding"]["y"]["field"] == "size (mm)"


def test_chart_rows_put_each_size_at_its_study_date(history: HistorySeed) -> None:
    from sqlmodel import select

    from dashboard.queries import finding_label
    from priorwatch.db import session_scope
    from priorwatch.models import Finding

    with session_scope() as s:
        rows = history_view.chart_rows(s.exec(select(Finding).order_by(Finding.id)).all(), finding_label)
    assert [(r["finding"], r["date"], r["size (mm)"]) for r in rows] == [
        ("nodule (left middle)", "2025-01-12", 0.0), ("nodule (left middle)", "2025-06-01", 8.0),
        ("nodule (left middle)", "2025-10-02", 11.0), ("nodule (left middle)", "2026-01-05", 15.0),
        ("effusion (right lower)", "2025-01-12", 20.0), ("effusion (right lower)", "2025-06-01", 22.0),
        ("effusion (right lower)", "2026-01-05", 21.0)]


def test_draft_names_the_compared_prior_and_the_baseline(history: HistorySeed) -> None:
    at = open_review(app_as("alice"), history.item_id)
    assert ("This draft compares the current study with the compared prior of 2025-10-02, the baseline of "
            "2025-01-12 and the intermediate study of 2025-06-01.") in texts(at)


def test_viewer_strip_holds_every_study_current_left_compared_prior_right(history: HistorySeed) -> None:
    at = open_review(app_as("alice"), history.item_id)
    frames = at.get("iframe")
    assert len(frames) == 1
    doc = frames[0].proto.srcdoc
    assert doc.count('class="tile"') == 4
    for iid in history.instance_ids:
        assert f"/pw/img/{iid}?preset=default&amp;thumb=1" in doc  # thumbnails from the session-only route
    assert "const S=[" in doc and "sel=[3, 2]" in doc  # current (the last tile) left, the compared prior right


def test_a_prior_not_fetched_is_named_with_why(history: HistorySeed) -> None:
    from priorwatch.models import Comparison

    comp = Comparison(job_id=1, study_id=1, draft_text="", prior_choices_json=json.dumps([
        {"study_uid": "1.2.3", "date": "2025-01-12", "role": "baseline", "reason": "x", "fetched": False,
         "problem": "C-GET refused by the PACS"}]))
    assert history_view.history_line(comp) == (
        "This draft compares the current study with the baseline of 2025-01-12 "
        "(not fetched: C-GET refused by the PACS).")
