"""Issue 30: live calibration per finding type (ECE, reliability, bands, alert against the baseline) and
recalibration as a reviewed proposal (fit on one window, evaluated on a later one, applied by the
worker only after an admin accepts it; rejecting changes nothing; all audited and reversible)."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, select

from comparison import CompareContext
from monitoring import calibration, simulate
from monitoring.recalibration import propose
from monitoring.settings import MonitoringSettings
from priorwatch import recalibration as recal_core
from priorwatch.db import init_db, session_scope
from priorwatch.models import AuditLog, Comparison, Finding, Job, Recalibration, Study, User, utcnow
from priorwatch.settings import Settings
from priorwatch.vocabulary import ComparisonResult, FindingResult
from workers.pipeline import _store_result
from workers.priors import PriorChoice

START = date(2025, 1, 6)
EVENT_DAY = 49
MS = MonitoringSettings(evidently_html=False)


def test_ece_reliability_and_platt_on_known_data() -> None:
    # by hand: bin 0.2-0.3 right 2 of 4 at 0.25 (gap 0.25), bin 0.8-0.9 right 2 of 4 at 0.85 (gap 0.35)
    assert calibration.ece(np.array([0.25] * 4 + [0.85] * 4), np.array([1, 1, 0, 0] * 2), 10) == pytest.approx(0.30)
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.05, 0.95, 20000)
    right = rng.random(20000) < conf  # calibrated
    assert calibration.ece(conf, right, 10) < 0.02
    inflated = 1 - 0.2 * (1 - conf)
    assert calibration.ece(inflated, right, 10) > 0.2
    lo, hi = calibration.ece_interval(inflated[:500], right[:500], 10, 200)
    assert lo < calibration.ece(inflated[:500], right[:500], 10) < hi
    rel = calibration.reliability(conf, right, 10)
    assert [r["bin_lo"] for r in rel] == pytest.approx([i / 10 for i in range(10)])
    assert sum(r["n"] for r in rel) == 20000
    assert all(r["lo"] <= r["mean_confidence"] + 0.03 and r["mean_confidence"] - 0.03 <= r["hi"] for r in rel)
    a, b = calibration.fit_platt(inflated, right, ridge=1.0)
    # the inflation is not exactly logit-linear, so Platt leaves a little: 0.24 -> 0.04
    assert calibration.ece(calibration.mapped(inflated, a, b), right, 10) < 0.05
    bands = calibration.bands(conf, right, positives=int(right.sum()))
    assert [b["band"] for b in bands] == ["0.0-0.5", "0.5-0.7", "0.7-0.9", "0.9-1.0"]
    assert bands[0]["sensitivity_at_or_above"] == 1.0  # every right claim is at or above 0
    assert bands[3]["ppv"] > bands[1]["ppv"] > bands[0]["ppv"]


def test_miscalibration_alert_opens_within_three_days_and_not_before(tmp_path: Path) -> None:
    engine = init_db(Settings(data_dir=tmp_path))
    res = simulate.run(engine, MS, "miscalibration", start=START, days=EVENT_DAY + 3, per_day=60,
                       event_day=EVENT_DAY, echo=lambda _m: None)
    assert res.before_event() == []  # nothing at all opens on the calibrated stream
    first = res.first("calibration", "finding=consolidation")
    assert first is not None
    assert res.event < first <= res.event + timedelta(days=3)
    assert [k for _, k, s in res.opened if s != "finding=consolidation" and k in ("calibration", "ppv_drop")] == []
    with Session(engine) as s:
        from monitoring.read import latest_snapshot

        latest = latest_snapshot(s)
    assert latest is not None
    cal = latest[1]["calibration"]
    cons = next(t for t in cal["types"] if t["finding"] == "consolidation")
    assert cons["ece"] > cons["reference"]["ece"] + 0.05  # the diagram's figures show it too
    assert cons["reliability"] and cons["reference_reliability"] and len(cons["bands"]) == 4
    assert {r["site"] for r in cal["by_site"]} == set(simulate.SITES)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A miscalibration stream of 59 days (event on day 49), no snapshots."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("recal"))
    engine = init_db(settings)
    simulate.write(engine, simulate.generate(START, EVENT_DAY + 10, 60, scenario="miscalibration",
                                             event_day=EVENT_DAY, seed=11))
    with Session(engine) as s:
        s.add(User(username="admin1", password_hash="x", role="admin"))
        s.add(User(username="qa1", password_hash="x", role="qa"))
        s.commit()
    return settings


def _t(day: int) -> datetime:
    return datetime.combine(START, datetime.min.time()) + timedelta(days=day)


def _result(conf: float) -> ComparisonResult:
    f = FindingResult(finding="consolidation", side="left", change="new", confidence=conf)
    return ComparisonResult(engine="registration", engine_version="1", model="m", model_version="1.0", has_prior=True,
                            findings=[f], draft_text=f"PRELIMINARY. New consolidation in the left lung (confidence {conf:.2f}).")


def _store(settings: Settings, conf: float) -> Comparison:
    """One result through the worker's own storing step."""
    with Session(init_db(settings)) as s:
        st = Study(study_uid=f"1.2.826.0.1.9.{time.monotonic_ns()}", patient_id="P")
        s.add(st)
        s.commit()
        job = Job(study_id=st.id, idempotency_key=f"k{time.monotonic_ns()}")  # type: ignore[arg-type]
        s.add(job)
        s.commit()
        job_id, study_id = int(job.id), int(st.id)  # type: ignore[arg-type]
    cid = _store_result(settings, job_id, study_id, 1, PriorChoice(prior_id=1, reason=None, interval_days=30),
                        CompareContext(), _result(conf), None, utcnow(), None, np.zeros((8, 8), dtype=np.float32))
    with session_scope(settings) as s:
        comp = s.get(Comparison, cid)
        assert comp is not None
        comp.__dict__["findings"] = s.exec(select(Finding).where(Finding.comparison_id == cid)).all()
        return comp


def _audits(settings: Settings, action: str) -> list[dict]:
    with session_scope(settings) as s:
        return [json.loads(a.detail or "{}") | {"user": a.user}
                for a in s.exec(select(AuditLog).where(AuditLog.action == action)).all()]


def test_proposal_lowers_ece_on_the_later_window_and_changes_nothing_until_accepted(stream: Settings) -> None:
    engine = init_db(stream)
    # Fit on the first 6 inflated days, evaluate on the 4 after (never seen by the fit).
    prop = propose(engine, (_t(EVENT_DAY), _t(EVENT_DAY + 6)), (_t(EVENT_DAY + 6), _t(EVENT_DAY + 10)), MS, "qa1")
    m = json.loads(prop.metrics_json)["consolidation"]
    assert m["n_eval"] >= 25
    assert m["ece_after"] < 0.6 * m["ece_before"]
    assert m["ece_before"] > 0.15
    assert "consolidation" in json.loads(prop.params_json)
    assert "effusion" not in json.loads(prop.params_json)  # calibrated on the fit window: left alone
    assert _audits(stream, "recal_propose")[-1]["recalibration_id"] == prop.id
    with pytest.raises(recal_core.RecalibrationError):  # the evaluation window must come after the fit's
        propose(engine, (_t(EVENT_DAY), _t(EVENT_DAY + 6)), (_t(EVENT_DAY + 5), _t(EVENT_DAY + 10)), MS, "qa1")

    before = _store(stream, 0.95)  # proposed only: nothing changes
    assert before.model_version == "1.0"
    assert [(f.confidence, f.raw_confidence) for f in before.__dict__["findings"]] == [(0.95, None)]

    with session_scope(stream) as s:
        with pytest.raises(recal_core.RecalibrationError):  # a QA user may propose, not decide
            recal_core.accept(s, prop.id, "qa1")  # type: ignore[arg-type]
    with session_scope(stream) as s:
        recal_core.accept(s, prop.id, "admin1", note="consolidation overconfident since the update")  # type: ignore[arg-type]
    assert _audits(stream, "recal_accept")[-1] == {"recalibration_id": prop.id, "version": prop.version,
                                                   "supersedes": None, "user": "admin1"}
    after = _store(stream, 0.95)
    f = after.__dict__["findings"][0]
    assert after.model_version == f"1.0+cal{prop.version}"
    assert f.raw_confidence == 0.95
    assert f.confidence < 0.85  # the inflated 0.95 means about 0.7 on this stream
    stored = json.loads(after.result_json)
    assert stored["findings"][0]["confidence"] == pytest.approx(f.confidence)
    assert f"(confidence {f.confidence:.2f})" in after.draft_text
    assert stored["model_version"] == after.model_version

    with session_scope(stream) as s:  # reversible: the raw confidence applies again to later results
        assert recal_core.revert(s, prop.id, "admin1") is None  # type: ignore[arg-type]
    assert _audits(stream, "recal_revert")[-1]["recalibration_id"] == prop.id
    again = _store(stream, 0.95)
    assert again.model_version == "1.0"
    assert again.__dict__["findings"][0].confidence == 0.95
    with session_scope(stream) as s:  # earlier results keep the numbers they were shown with
        assert s.get(Finding, f.id).confidence == f.confidence  # type: ignore[union-attr]


def test_rejecting_a_proposal_changes_nothing_and_is_audited(stream: Settings) -> None:
    engine = init_db(stream)
    with session_scope(stream) as s:
        assert recal_core.active(s) is None
    prop = propose(engine, (_t(EVENT_DAY), _t(EVENT_DAY + 6)), (_t(EVENT_DAY + 6), _t(EVENT_DAY + 10)), MS, "qa1")
    with session_scope(stream) as s:
        recal_core.reject(s, prop.id, "admin1", note="wait for more labels")  # type: ignore[arg-type]
    with session_scope(stream) as s:
        assert s.get(Recalibration, prop.id).status == "rejected"  # type: ignore[union-attr]
        assert recal_core.active(s) is None
        with pytest.raises(recal_core.RecalibrationError):  # a decided proposal stays decided
            recal_core.accept(s, prop.id, "admin1")  # type: ignore[arg-type]
    assert _audits(stream, "recal_reject")[-1] == {"recalibration_id": prop.id, "version": prop.version,
                                                   "user": "admin1"}
    comp = _store(stream, 0.95)
    assert comp.model_version == "1.0"
    assert [(f.confidence, f.raw_confidence) for f in comp.__dict__["findings"]] == [(0.95, None)]


def test_accepting_a_second_map_supersedes_the_first_and_revert_restores_it(stream: Settings) -> None:
    engine = init_db(stream)
    p1 = propose(engine, (_t(EVENT_DAY), _t(EVENT_DAY + 6)), (_t(EVENT_DAY + 6), _t(EVENT_DAY + 10)), MS, "qa1")
    p2 = propose(engine, (_t(EVENT_DAY), _t(EVENT_DAY + 5)), (_t(EVENT_DAY + 5), _t(EVENT_DAY + 10)), MS, "qa1")
    with session_scope(stream) as s:
        recal_core.accept(s, p1.id, "admin1")  # type: ignore[arg-type]
    with session_scope(stream) as s:
        recal_core.accept(s, p2.id, "admin1")  # type: ignore[arg-type]
    assert _store(stream, 0.9).model_version == f"1.0+cal{p2.version}"
    with session_scope(stream) as s:
        assert s.get(Recalibration, p1.id).status == "superseded"  # type: ignore[union-attr]
        restored = recal_core.revert(s, p2.id, "admin1")  # type: ignore[arg-type]
        assert restored is not None and restored.id == p1.id
    assert _store(stream, 0.9).model_version == f"1.0+cal{p1.version}"
    with session_scope(stream) as s:
        recal_core.revert(s, p1.id, "admin1")  # type: ignore[arg-type]


def test_admin_accepts_on_the_qa_page_and_a_qa_user_gets_no_decision_buttons(stream: Settings, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from monitoring.snapshot import compute, load, store
    from priorwatch.settings import reset_settings_cache

    engine = init_db(stream)
    ms = simulate.scenario_settings(MS, START)
    as_of = _t(EVENT_DAY + 10)
    payload = compute(load(engine, as_of, ms), as_of, ms)
    with Session(engine) as s:
        store(s, payload, ms, send=False)
        s.commit()
    prop = propose(engine, (_t(EVENT_DAY), _t(EVENT_DAY + 6)), (_t(EVENT_DAY + 6), _t(EVENT_DAY + 10)), MS, "qa1")
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(stream.data_dir))
    reset_settings_cache()
    try:
        def page() -> None:
            from dashboard.monitoring_view import render

            render()

        at = AppTest.from_function(page, default_timeout=120)
        at.session_state["user"] = {"username": "qa1", "role": "qa"}
        at.run()
        assert not at.exception, at.exception
        assert any("confidence mean what it says" in h.value for h in at.subheader)
        assert any("consolidation (!)" in str(df.value) for df in at.dataframe)  # its open alert is marked
        assert [b.key for b in at.button if str(b.key).startswith("recal-")] == []
        at.session_state["user"] = {"username": "admin1", "role": "admin"}
        at.run()
        keys = [b.key for b in at.button if str(b.key).startswith("recal-")]
        assert f"recal-accept-{prop.id}" in keys and f"recal-reject-{prop.id}" in keys
        next(b for b in at.button if b.key == f"recal-accept-{prop.id}").click().run()
        assert not at.exception, at.exception
        with session_scope(stream) as s:
            assert recal_core.active(s).id == prop.id  # type: ignore[union-attr]
        assert _audits(stream, "recal_accept")[-1]["recalibration_id"] == prop.id
        assert _store(stream, 0.9).model_version == f"1.0+cal{prop.version}"
    finally:
        reset_settings_cache()
        with session_scope(stream) as s:
            if recal_core.active(s) is not None:
                recal_core.revert(s, recal_core.active(s).id, "admin1")  # type: ignore[union-attr,arg-type]
