"""The proof: a simulated site with a new scanner at one site and lateral views in a frontal
stream; drift and subgroup gaps are detected after the events and not before."""

from datetime import date, datetime, timedelta

from sqlmodel import Session, select

from monitoring import simulate
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine
from priorwatch.models import MonitoringAlert, MonitoringSnapshot


def test_events_detected_after_not_before(pw_settings, webhook, tmp_path):
    url, received = webhook
    ms = MonitoringSettings(webhook_url=url)
    engine = get_engine(pw_settings)
    res = simulate.run(engine, ms, start=date(2025, 1, 6), days=130, per_day=50, event_day=80, lateral_day=100,
                       step_days=3, evidently="last", html_dir=tmp_path, echo=lambda s: None)
    event = datetime.combine(res.event_date, datetime.min.time())
    lateral = datetime.combine(res.lateral_date, datetime.min.time())
    fired = res.first_fired
    # Nothing fires before the scanner event.
    assert all(t > event for t in fired.values()), fired
    drift = fired[("drift", "unified")]
    assert event < drift <= event + timedelta(days=14)
    gap = fired[("subgroup_gap", "site=SITE_B revision_rate")]
    assert event < gap <= event + timedelta(days=14)
    assert ("subgroup_gap", "manufacturer=NovaRay revision_rate") in fired
    # No other site is flagged, ever.
    assert not any(k[1].startswith(("site=SITE_A", "site=SITE_C")) for k in fired)
    # The lateral views show in the view-position drift after they start, not before.
    assert lateral < res.first_column_drift["view_position"] <= lateral + timedelta(days=14)
    # The new scanner's columns drift after the event only.
    for col in ("manufacturer", "model_name", "img_mean"):
        assert event < res.first_column_drift[col] <= event + timedelta(days=14), col
    # Stored, shown and sent.
    with Session(engine) as s:
        alerts = s.exec(select(MonitoringAlert)).all()
        snaps = s.exec(select(MonitoringSnapshot)).all()
    assert alerts and all(a.webhook_state == "sent" for a in alerts)
    assert len(received) == len(alerts) and {r["kind"] for r in received} >= {"drift", "subgroup_gap"}
    assert len(snaps) == len(res.series)
    assert res.html_path and open(res.html_path).read(200).lower().lstrip().startswith("<")
