from datetime import date, datetime

from sqlmodel import Session, select
from typer.testing import CliRunner

from monitoring import simulate
from monitoring.schedule import TASK_NAME, beat_schedule, register_tasks
from monitoring.settings import MonitoringSettings
from monitoring.snapshot import run_snapshot
from priorwatch.db import get_engine
from priorwatch.models import MonitoringAlert, MonitoringSnapshot


def test_run_snapshot_empty_database(pw_settings):
    p = run_snapshot(pw_settings, MonitoringSettings(evidently_html=False), as_of=datetime(2025, 1, 1))
    assert p["n_current"] == 0 and p["drift"]["score"] is None and p["alerts"] == []
    with Session(get_engine(pw_settings)) as s:
        assert len(s.exec(select(MonitoringSnapshot)).all()) == 1


def test_run_snapshot_stores_alerts_and_html(pw_settings):
    engine = get_engine(pw_settings)
    gen = simulate.generate(date(2025, 1, 6), 60, 40, event_day=45, lateral_day=None)
    simulate.write(engine, gen)
    p = run_snapshot(pw_settings, MonitoringSettings(), as_of=datetime(2025, 3, 7), send=False)
    assert p["n_current"] == 7 * 40
    assert {a["kind"] for a in p["alerts"]} >= {"drift", "subgroup_gap"}
    assert p["stop_rule"] and any("SITE_B" in r or "NovaRay" in r for r in p["stop_rule"])
    assert p["drift"]["evidently"]["share"] is not None
    assert any("evidently_value" in c for c in p["drift"]["columns"])
    with Session(engine) as s:
        snap = s.get(MonitoringSnapshot, p["snapshot_id"])
        assert snap.report_html_path and open(snap.report_html_path).read(100)
        assert len(s.exec(select(MonitoringAlert)).all()) == len(p["alerts"])
    # same moment again: alerts are not duplicated within realert_days
    p2 = run_snapshot(pw_settings, MonitoringSettings(evidently_html=False), as_of=datetime(2025, 3, 7), send=False)
    assert p2["stored_alerts"] == []


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


def test_dashboard_view_renders(pw_settings, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from priorwatch.settings import reset_settings_cache

    engine = get_engine(pw_settings)
    simulate.write(engine, simulate.generate(date(2025, 1, 6), 50, 20, event_day=40, lateral_day=None))
    run_snapshot(pw_settings, MonitoringSettings(), as_of=datetime(2025, 2, 25), send=False)
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(pw_settings.data_dir))
    reset_settings_cache()
    try:
        def page():
            from dashboard.monitoring_view import render

            render()

        at = AppTest.from_function(page, default_timeout=60).run()
        assert not at.exception, at.exception
        assert any("Revision rate" in m.label for m in at.metric)
        assert at.error  # the alerts are shown
    finally:
        reset_settings_cache()


def test_qa_acknowledges_an_alert_on_the_page(pw_settings, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from sqlmodel import Session, select

    from priorwatch.models import AuditLog, MonitoringAlert
    from priorwatch.settings import reset_settings_cache

    engine = get_engine(pw_settings)
    simulate.write(engine, simulate.generate(date(2025, 1, 6), 50, 20, event_day=40, lateral_day=None))
    run_snapshot(pw_settings, MonitoringSettings(), as_of=datetime(2025, 2, 25), send=False)
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
        assert len(ack) == min(n_open, 20)
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
