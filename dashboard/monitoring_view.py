"""The QA monitoring page: revision rates, drift, subgroups and alerts from the latest stored
snapshot, drawn with native Streamlit charts, plus the Evidently HTML report to download.
Imported lazily by the dashboard app for QA users: `from dashboard.monitoring_view import render`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from sqlmodel import Session

from dashboard.queries import acknowledge_alert
from monitoring.read import latest_snapshot, list_alerts, snapshot_series
from priorwatch.db import get_engine, init_db


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _audit_export(user: str, what: str) -> None:
    """Every export leaves an audit row with the session it came from."""
    from dashboard.queries import audit
    from priorwatch.db import session_scope

    with session_scope() as s:
        audit(s, user, "export", detail={"what": what, "session": st.session_state.get("sid")})


def render() -> None:
    st.header("Monitoring")
    engine = init_db()
    with Session(get_engine()) as s:
        latest = latest_snapshot(s)
        alerts = list_alerts(s)
        series = snapshot_series(s)
    if latest is None:
        st.info("No monitoring snapshot yet. Run `priorwatch monitor` or wait for the scheduled one.")
        if st.button("Compute a snapshot now"):
            from monitoring.snapshot import run_snapshot

            run_snapshot()
            st.rerun()
        return
    snap, p = latest
    cur, ref = p.get("current", {}), p.get("reference", {})
    st.caption(f"Snapshot {snap.id} as of {snap.as_of:%Y-%m-%d %H:%M} UTC; current window from "
               f"{p['current_start'][:10]} ({p['n_current']} studies), reference from {p['reference_start'][:10]} "
               f"({p['n_reference']} studies).")

    if p.get("alerts"):
        for a in p["alerts"]:
            st.error(f"**{a['kind']}** {a['subject']}: {a['message']}")
    for rule in p.get("stop_rule", []):
        st.warning(f"Suggested stop-rule: {rule}")

    c = st.columns(5)
    c[0].metric("Revision rate", _pct(cur.get("revision_rate")),
                None if cur.get("revision_rate") is None or ref.get("revision_rate") is None
                else f"{(cur['revision_rate'] - ref['revision_rate']) * 100:+.1f} pt", delta_color="inverse")
    c[1].metric("Significant revisions", _pct(cur.get("significant_revision_rate")))
    c[2].metric("Accepted unchanged", _pct(cur.get("accepted_unchanged_rate")))
    c[3].metric("Urgent PPV / sensitivity", f"{_pct(cur.get('urgent_ppv'))} / {_pct(cur.get('urgent_sensitivity'))}")
    score = p.get("drift", {}).get("score")
    c[4].metric("Drift score (early warning)", "n/a" if score is None else f"{score:.2f}",
                help="Unified concordance score in z-units: inputs/outputs unlike the reference. Not accuracy.")

    st.subheader("Agreement, draft vs final labels")
    st.dataframe(pd.DataFrame([{k: cur.get(k) for k in ("precision", "recall", "f1", "kappa", "mean_edit_distance")}]),
                 hide_index=True)
    st.write("Urgent flag vs final report", cur.get("urgent_confusion"))

    ts = pd.DataFrame(p.get("timeseries", []))
    if not ts.empty:
        ts["week"] = pd.to_datetime(ts["week"])
        st.subheader("Weekly revision and urgent rates")
        st.line_chart(ts.set_index("week")[["revision_rate", "significant_revision_rate", "urgent_rate"]])
        st.bar_chart(ts.set_index("week")[["n"]])
    if series:
        sr = pd.DataFrame(series).set_index("as_of")
        st.subheader("Drift score over snapshots")
        st.line_chart(sr[["drift_score"]])

    st.subheader("Drift by column")
    cols = pd.DataFrame(p.get("drift", {}).get("columns", []))
    if not cols.empty:
        st.bar_chart(cols.set_index("column")[["z"]])
        st.dataframe(cols, hide_index=True)
    groups = p.get("drift", {}).get("groups", {})
    if groups:
        st.bar_chart(pd.Series(groups, name="score"))

    st.subheader("Subgroups (current window)")
    sub = pd.DataFrame(p.get("subgroups", []))
    if not sub.empty:
        metric = st.selectbox("Metric", sorted(sub["metric"].unique()))
        view = sub[sub["metric"] == metric].copy()
        view["label"] = view["dimension"] + "=" + view["level"].astype(str)
        st.bar_chart(view[~view["insufficient"]].set_index("label")[["rate", "rest_rate"]])
        st.dataframe(view[["dimension", "level", "n", "rate", "lo", "hi", "rest_rate", "p", "insufficient",
                           "flagged"]], hide_index=True)

    open_alerts = [a for a in alerts if not a.acknowledged]
    if open_alerts:
        st.subheader("Alerts to acknowledge")
        user = (st.session_state.get("user") or {}).get("username", "unknown")
        for a in open_alerts[:20]:
            cols = st.columns([5, 1])
            cols[0].write(f"{a.as_of:%Y-%m-%d} **{a.kind}** {a.subject}: {a.message}")
            if cols[1].button("Acknowledge", key=f"ack-{a.id}"):
                with Session(get_engine()) as s:
                    acknowledge_alert(s, a.id, user)  # type: ignore[arg-type]
                    s.commit()
                st.rerun()

    st.subheader("Alert history")
    if alerts:
        st.dataframe(pd.DataFrame([{"as_of": a.as_of, "kind": a.kind, "subject": a.subject, "value": a.value,
                                    "threshold": a.threshold, "webhook": a.webhook_state, "message": a.message,
                                    "acknowledged by": a.acknowledged_by or ""}
                                   for a in alerts]), hide_index=True)
    else:
        st.write("No alerts.")

    html = snap.report_html_path
    if html and Path(html).exists():
        st.download_button("Download the Evidently drift report (HTML)", Path(html).read_bytes(),
                           file_name=Path(html).name, mime="text/html", on_click=_audit_export,
                           args=((st.session_state.get("user") or {}).get("username", "unknown"), "drift_report_html"))
    _ = engine
