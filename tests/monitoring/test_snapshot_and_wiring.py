from datetime import date, datetime, timedelta

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from monitoring import simulate
from monitoring.schedule import TASK_NAME, beat_schedule, register_tasks
from monitoring.settings import MonitoringSettings
from monitoring.snapshot import prune_html, run_snapshot
from priorwatch.db import get_engine
from priorwatch.models import MonitoringAlert, MonitoringSnapshot

START = date(2025, 1, 6)


def _ms(**kw) -> MonitoringSettings:
    t0 = datetime.combine(START, datetime.min.time())
    return MonitoringSettings(baseline_start=t0, baseline_end=t0 + timedelta(days=28), **kw)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """One simulated new-scanner site with one stored snapshot (with HTML), shared by this module's tests."""
    from priorwatch.db import init_db
    from priorwatch.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("seeded") / "data")
    init_db(settings)
    simulate.write(get_engine(settings), simulate.generate(START, 45, 30, scenario="new_scanner", event_day=38))
    payload = run_snapshot(settings, _ms(), as_of=datetime(2025, 2, 20), send=False)
    return settings, payload


def test_run_snapshot_empty_database(pw_settings):
    p = run_snapshot(pw_settings, MonitoringSettings(evidently_html=False), as_of=datetime(2025, 1, 1))
    assert p["n_current"] == 0 and p["drift"]["conditions"] == [] and p["alerts"] == []
    with Session(get_engine(pw_settings)) as s:
        assert len(s.exec(select(MonitoringSnapshot)).all()) == 1


def test_run_snapshot_opens_a_new_scanner_alert_once_keeps_html_and_prunes_old_html(seeded):
    pw_settings, p = seeded
    engine = get_engine(pw_settings)
    assert p["n_current"] == 7 * 30
    assert ("new_scanner", "scanner=NovaRay NX-9") in {(a["kind"], a["subject"]) for a in p["alerts"]}
    assert p["stop_rule"]
    with Session(engine) as s:
        snap = s.get(MonitoringSnapshot, p["snapshot_id"])
        assert snap.report_html_path and open(snap.report_html_path).read(100)
        assert len(s.exec(select(MonitoringAlert)).all()) == len(p["alerts"])
    # a day later the same conditions hold: nothing new is opened
    p2 = run_snapshot(pw_settings, _ms(evidently_html=False), as_of=datetime(2025, 2, 21), send=False)
    assert p2["stored_alerts"] == []
    with Session(engine) as s:
        assert prune_html(s, pw_settings.data_dir / "monitoring", 14, datetime.utcnow() + timedelta(days=15)) == 1
        s.commit()
        assert s.get(MonitoringSnapshot, p["snapshot_id"]).report_html_path is None


def test_beat_schedule_and_task_registration():
    from celery import Celery

    sched = beat_schedule(MonitoringSettings(schedule_s=900))
    assert sched["monitoring-snapshot"]["task"] == TASK_NAME == "monitoring.snapshot"
    assert sched["monitoring-snapshot"]["schedule"] == 900.0
    app = Celery("t")
    register_tasks(app)
    assert TASK_NAME in app.tasks


def test_cli_commands_registered(tmp_path, monkeypatch):
    import typer

    from monitoring.cli import register

    app = typer.Typer()
    register(app)
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRIORWATCH_MONITORING_EVIDENTLY_HTML", "false")
    from monitoring.settings import get_monitoring_settings
    from priorwatch.settings import reset_settings_cache

    reset_settings_cache()
    get_monitoring_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["monitor", "--no-send"])
        assert r.exit_code == 0, r.output
        assert "snapshot" in r.output
        r = CliRunner().invoke(app, ["--help"])
        assert "simulate" in r.output and "hl7-listen" in r.output
    finally:
        reset_settings_cache()
        get_monitoring_settings.cache_clear()


def test_dashboard_view_renders(seeded, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from priorwatch.settings import reset_settings_cache

    pw_settings, _ = seeded
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(pw_settings.data_dir))
    reset_settings_cache()
    try:
        def page():
            from dashboard.monitoring_view import render

            render()

        at = AppTest.from_function(page, default_timeout=60).run()
        assert not at.exception, at.exception
        assert any("Significant revisions" in m.label for m in at.metric)
        assert at.warning or at.error  # the open alerts are shown
    finally:
        reset_settings_cache()


def test_qa_acknowledges_an_alert_on_the_page(seeded, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from sqlmodel import Session, select

    from priorwatch.models import AuditLog, MonitoringAlert
    from priorwatch.settings import reset_settings_cache

    pw_settings, _ = seeded
    engine = get_engine(pw_settings)
    with Session(engine) as s:
        n_open = len(s.exec(select(MonitoringAlert).where(MonitoringAlert.acknowledged == False)).all())  # noqa: E712
    assert n_open > 0
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(pw_settings.data_dir))
    reset_settings_cache()
    try:
        def page():
            import streamlit as st

            from dashboard.monitoring_view import render

            st.session_state["user"] = {"username": "qa1", "role": "qa"}
            render()

        at = AppTest.from_function(page, default_timeout=60).run()
        assert not at.exception, at.exception
        ack = [b for b in at.button if b.label == "Acknowledge"]
        assert len(ack) == min(n_open, 50)
        ack[0].click().run()
        assert not at.exception, at.exception
        assert len([b for b in at.button if b.label == "Acknowledge"]) == len(ack) - 1
    finally:
        reset_settings_cache()
    with Session(engine) as s:
        acked = s.exec(select(MonitoringAlert).where(MonitoringAlert.acknowledged == True)).all()  # noqa: E712
        assert len(acked) == 1 and acked[0].acknowledged_by == "qa1" and acked[0].acknowledged_at is not None
        rows = s.exec(select(AuditLog).where(AuditLog.action == "alert_ack")).all()
        assert len(rows) == 1 and rows[0].user == "qa1"
