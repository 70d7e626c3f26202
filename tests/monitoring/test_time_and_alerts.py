"""Time (site-local study times read in the site's zone, no look-ahead) and the alert lifecycle."""

from datetime import datetime, timedelta

from sqlmodel import Session, select

from monitoring.alerts import apply, state
from monitoring.dataset import load_frame
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine
from priorwatch.models import MonitoringAlert, SignedReport
from tests.monitoring.test_concordance import _add_study


def test_study_time_is_read_in_the_site_zone_and_compared_in_utc(pw_settings):
    local = datetime(2025, 3, 1, 0, 30)  # 00:30 in Berlin = 23:30 UTC the day before
    with Session(get_engine(pw_settings)) as s:
        _add_study(s, 1, [], False, "No acute findings.", at=local)
        s.commit()
    window = (datetime(2025, 2, 28), datetime(2025, 3, 1))
    berlin = load_frame(get_engine(pw_settings), *window, MonitoringSettings(timezone="Europe/Berlin"),
                        as_of=datetime(2025, 3, 2))
    utc = load_frame(get_engine(pw_settings), *window, MonitoringSettings(), as_of=datetime(2025, 3, 2))
    assert list(berlin["at"]) == [datetime(2025, 2, 28, 23, 30)]
    assert utc.empty
    per_site = MonitoringSettings(site_timezones={"SITE_A": "America/New_York"})  # 00:30 EST = 05:30 UTC
    assert load_frame(get_engine(pw_settings), datetime(2025, 3, 1), datetime(2025, 3, 2), per_site,
                      as_of=datetime(2025, 3, 3))["at"].tolist() == [datetime(2025, 3, 1, 5, 30)]


def test_snapshot_sees_only_what_was_known_at_its_as_of_time(pw_settings):
    t = datetime(2025, 3, 3, 9)
    with Session(get_engine(pw_settings)) as s:
        _add_study(s, 1, [("effusion", "new", "left")], False, "No effusion.", at=t)  # report 3 h later
        s.commit()
        report = s.exec(select(SignedReport)).one()
        assert report.received_at == t + timedelta(hours=3)
    ms = MonitoringSettings()
    before = load_frame(get_engine(pw_settings), t - timedelta(days=1), t + timedelta(days=1), ms,
                        as_of=t + timedelta(hours=1))
    after = load_frame(get_engine(pw_settings), t - timedelta(days=1), t + timedelta(days=1), ms,
                       as_of=t + timedelta(hours=4))
    assert list(before["has_final"]) == [False] and list(after["has_final"]) == [True]
    assert list(after["revised"]) == [True]
    assert load_frame(get_engine(pw_settings), t - timedelta(days=1), t + timedelta(days=1), ms,
                      as_of=t - timedelta(minutes=1)).empty  # the comparison did not exist yet


def _cond(subject="site=SITE_B / scanner"):
    return {"kind": "drift", "subject": subject, "value": 3.0, "threshold": 1.0, "message": "m",
            "severity": "warning", "route": "engineering"}


def test_alert_lifecycle_open_acknowledged_suppressed_resolved_and_reopened(pw_settings, webhook):
    url, received = webhook
    ms = MonitoringSettings(webhook_url=url, resolve_quiet_days=1.0)
    d0 = datetime(2025, 3, 1)
    with Session(get_engine(pw_settings)) as s:
        ch = apply(s, [_cond()], as_of=d0, snapshot_id=None, ms=ms)
        s.commit()
        (a,) = ch["opened"]
        assert state(a) == "open" and a.severity == "warning" and a.route == "engineering"
        a.acknowledged, a.acknowledged_by = True, "qa1"
        s.add(a)
        s.commit()
        for k in range(1, 4):  # the condition holds: no new alert, no new webhook, still acknowledged
            ch = apply(s, [_cond()], as_of=d0 + timedelta(days=k), snapshot_id=None, ms=ms)
            s.commit()
            assert ch["opened"] == [] and ch["updated"] == [a]
        assert state(a) == "acknowledged" and a.n_seen == 4 and len(received) == 1
        # a new column group drifting while this alert is open gets its own alert
        ch = apply(s, [_cond(), _cond("site=SITE_B / protocol")], as_of=d0 + timedelta(days=4), snapshot_id=None,
                   ms=ms)
        s.commit()
        assert [x.subject for x in ch["opened"]] == ["site=SITE_B / protocol"]
        ch = apply(s, [], as_of=d0 + timedelta(days=5), snapshot_id=None, ms=ms)  # clear for a day: resolved
        s.commit()
        assert {x.subject for x in ch["resolved"]} == {"site=SITE_B / scanner", "site=SITE_B / protocol"}
        assert state(a) == "resolved"
        ch = apply(s, [_cond()], as_of=d0 + timedelta(days=9), snapshot_id=None, ms=ms)  # it came back
        s.commit()
        assert len(ch["opened"]) == 1 and ch["opened"][0].id != a.id
        assert len(s.exec(select(MonitoringAlert)).all()) == 3
    assert [r["event"] for r in received] == ["opened"] * 3
