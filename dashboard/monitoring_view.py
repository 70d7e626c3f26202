"""The QA monitoring page: open problems first (with since when), the finding-level revision
rate with its interval and what the arrow means, agreement per finding type, urgent-flag
confusion as a table, charts with threshold lines and alert markers, drift per scope, the
engine's calibration per finding type (reliability diagrams, ECE, confidence bands) with the
recalibration proposals an admin decides on, and subgroups as side-by-side intervals. Read from the latest stored snapshot and the alerts table.
Imported lazily by the dashboard app for QA users: `from dashboard.monitoring_view import render`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
from sqlmodel import Session

from dashboard.queries import acknowledge_alert, audit_export
from monitoring.alerts import state
from monitoring.read import latest_snapshot, list_alerts, list_recalibrations, snapshot_series
from priorwatch.db import get_engine, init_db

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
STATE_ORDER = {"open": 0, "acknowledged": 1, "resolved": 2}
OPEN_SHOWN = 50  # open problems listed before "more"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"{lo:.0%}-{hi:.0%}"


def _problems(alerts: list[Any], user: str) -> None:
    live = [a for a in alerts if state(a) != "resolved"]
    live.sort(key=lambda a: (STATE_ORDER[state(a)], SEVERITY_ORDER.get(a.severity, 3), a.as_of))
    st.subheader(f"Open problems ({sum(state(a) == 'open' for a in live)} open, "
                 f"{sum(state(a) == 'acknowledged' for a in live)} acknowledged)")
    if not live:
        st.success("No open problem.")
    show_all = st.session_state.get("pw_mon_all_problems", False)
    for a in live if show_all else live[:OPEN_SHOWN]:
        since = f"since {a.as_of:%Y-%m-%d}"
        seen = f", last seen {a.last_seen_at:%Y-%m-%d}" if a.last_seen_at else ""
        head = f"**{a.severity.upper()} · {a.kind}** {a.subject} — {since}{seen} · to {a.route}"
        cols = st.columns([6, 1])
        if state(a) == "open":
            box = cols[0].error if a.severity == "critical" else cols[0].warning
            box(f"{head}\n\n{a.message}")
            if cols[1].button("Acknowledge", key=f"ack-{a.id}"):
                with Session(get_engine()) as s:
                    acknowledge_alert(s, a.id, user)
                    s.commit()
                st.rerun()
        else:
            cols[0].info(f"{head} · acknowledged by {a.acknowledged_by} on {a.acknowledged_at:%Y-%m-%d}"
                         f"\n\n{a.message}")
    if len(live) > OPEN_SHOWN and not show_all:
        if st.button(f"Show {len(live) - OPEN_SHOWN} more"):
            st.session_state["pw_mon_all_problems"] = True
            st.rerun()


def _headline(p: dict[str, Any], any_open: bool) -> None:
    cur = p.get("current", {})
    ref = p.get("baseline") if (p.get("baseline") or {}).get("n_signed") else p.get("reference", {})
    ref_name = "the baseline" if ref is p.get("baseline") else "the previous four weeks"
    rc, rr = cur.get("revision_rate"), (ref or {}).get("revision_rate")
    c = st.columns(4)
    delta = None if rc is None or rr is None else f"{(rc - rr) * 100:+.1f} pt vs {ref_name}"
    # Red = more significant revisions (worse); green = fewer. While a problem is open the arrow stays
    # grey: fewer revisions overall must not read as "all is well".
    c[0].metric("Significant revisions", _pct(rc), delta, delta_color="off" if any_open else "inverse",
                help="Share of signed studies whose final findings differ from the AI's in a way that matters "
                     "(a missed or invented finding, another change direction, another urgency). Rewording is "
                     "not a revision. Arrow: change against " + ref_name + "; red = more revisions (worse), "
                     "green = fewer, grey while a problem is open.")
    c[1].metric("95% interval", _ci(cur.get("revision_lo"), cur.get("revision_hi")) or "n/a",
                f"n = {cur.get('n_signed', 0)} signed", delta_color="off", delta_arrow="off")
    k = cur.get("kappa")
    c[2].metric("Kappa (findings)", "n/a" if k is None else f"{k:.2f}",
                (f"95% {cur['kappa_lo']:.2f}-{cur['kappa_hi']:.2f}" if cur.get("kappa_lo") is not None else None),
                delta_color="off", delta_arrow="off",
                help="Cohen's kappa of AI vs final presence over studies x finding types; bootstrap 95% interval.")
    d = cur.get("report_delay_median_h")
    c[3].metric("Median report delay", "n/a" if d is None else f"{d:.1f} h", None, delta_color="off",
                help="Signed time minus study time (UTC).")
    if any_open:
        st.caption("Arrow colours are off while a problem is open. Red means more revisions, green fewer.")


def _concordance(cur: dict[str, Any]) -> None:
    st.subheader("Agreement with the final report (current window)")
    cats = cur.get("categories") or {}
    left, right = st.columns([3, 2])
    per = pd.DataFrame.from_dict(cur.get("per_finding") or {}, orient="index")
    if not per.empty:
        per = per[(per["tp"] + per["fp"] + per["fn"]) > 0]
        view = pd.DataFrame({
            "finding": per.index, "both": per["tp"], "AI only": per["fp"], "final only": per["fn"],
            "PPV": [f"{_pct(v)} ({_ci(lo, hi)})" if v is not None else "n/a"
                    for v, lo, hi in zip(per["ppv"], per["ppv_lo"], per["ppv_hi"])],
            "sensitivity": [f"{_pct(v)} ({_ci(lo, hi)})" if v is not None else "n/a"
                            for v, lo, hi in zip(per["sensitivity"], per["sens_lo"], per["sens_hi"])],
        })
        left.dataframe(view, hide_index=True, use_container_width=True)
    mix = pd.DataFrame({"studies": [cats.get(k, 0) for k in cats]}, index=list(cats))
    right.dataframe(mix, use_container_width=True)
    uc = cur.get("urgent_confusion") or {}
    right.markdown("**Urgent flag: AI vs final**")
    right.table(pd.DataFrame({"final urgent": [uc.get("tp", 0), uc.get("fn", 0)],
                              "final not urgent": [uc.get("fp", 0), uc.get("tn", 0)]},
                             index=["AI urgent", "AI not urgent"]))
    right.caption(f"Urgent PPV {_pct(cur.get('urgent_ppv'))}, sensitivity {_pct(cur.get('urgent_sensitivity'))}.")


def _trend(series: list[dict[str, Any]], alerts: list[Any], p: dict[str, Any]) -> None:
    if not series:
        return
    sr = pd.DataFrame(series)
    sr = sr[sr["revision_rate"].notna()]
    if sr.empty:
        return
    st.subheader("Significant revisions over snapshots")
    ref = p.get("baseline") if (p.get("baseline") or {}).get("n_signed") else p.get("reference", {})
    base = (ref or {}).get("revision_rate")
    thr = (p.get("thresholds") or {}).get("revision_rise_threshold")
    line = alt.Chart(sr).mark_line(point=True).encode(
        x=alt.X("as_of:T", title="snapshot (UTC)"), y=alt.Y("revision_rate:Q", title="revision rate", axis=alt.Axis(format="%")))
    layers = [line]
    rules = []
    if base is not None:
        rules.append({"y": base, "what": "reference rate"})
        if thr is not None:
            rules.append({"y": base + thr, "what": "alert threshold"})
    if rules:
        layers.append(alt.Chart(pd.DataFrame(rules)).mark_rule(strokeDash=[6, 4]).encode(
            y="y:Q", color=alt.Color("what:N", title=None, scale=alt.Scale(
                domain=["reference rate", "alert threshold"], range=["#888888", "#d62728"]))))
    marks = pd.DataFrame([{"at": a.as_of, "alert": f"{a.kind}: {a.subject}"} for a in alerts
                          if a.as_of >= pd.to_datetime(sr["as_of"]).min()])
    if not marks.empty:
        layers.append(alt.Chart(marks).mark_rule(color="#ff7f0e", opacity=0.6).encode(x="at:T", tooltip=["alert", "at:T"]))
    st.altair_chart(alt.layer(*layers).properties(height=260), use_container_width=True)
    st.caption("Dashed lines: the reference rate and the alert threshold (reference + rise threshold). "
               "Orange lines: when an alert opened (hover for which).")


def _drift(p: dict[str, Any]) -> None:
    drift = p.get("drift") or {}
    st.subheader("Drift by scope (Evidently per-column tests)")
    rows = []
    for sc in drift.get("scopes", []):
        top = sorted(sc["columns"].items(), key=lambda kv: kv[1]["value"])[:3]
        rows.append({"scope": sc["scope"], "against": sc["reference"], "n current": sc["n_current"],
                     "n reference": sc["n_reference"],
                     "most changed (p-value)": ", ".join(f"{c} ({v['value']:.1e})" for c, v in top)})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    novel = {k: v for k, v in (drift.get("novel") or {}).items() if v}
    if novel:
        st.caption("New since the reference: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in novel.items()))
    st.caption(f"A column drifts when its p-value is at or under {(p.get('thresholds') or {}).get('drift_threshold')}. "
               "Drift is an early warning that inputs or outputs changed, not a measure of accuracy.")


def _subgroups(p: dict[str, Any]) -> None:
    sub = pd.DataFrame(p.get("subgroups", []))
    if sub.empty:
        return
    st.subheader("Subgroups (current window) against the rest")
    metric = st.selectbox("Metric", sorted(sub["metric"].unique()), key="pw_mon_metric")
    view = sub[(sub["metric"] == metric) & ~sub["insufficient"].astype(bool)].copy()
    if view.empty:
        st.write("No subgroup has enough studies.")
        return
    view["label"] = view["dimension"] + " = " + view["level"].astype(str)
    view["status"] = view["flagged"].map({True: "flagged", False: "ok"})
    height = max(120, 26 * len(view))
    y = alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=320))
    bars = alt.Chart(view).mark_rule(strokeWidth=3).encode(
        y=y, x=alt.X("lo:Q", title=f"{metric} (95% interval; tick = rest of the window)", axis=alt.Axis(format="%")),
        x2="hi:Q", color=alt.Color("status:N", scale=alt.Scale(domain=["ok", "flagged"], range=["#4c78a8", "#d62728"])))
    point = alt.Chart(view).mark_point(filled=True, size=60, color="black").encode(y=y, x="rate:Q",
                                                                                    tooltip=["label", "n", "rate", "p"])
    rest = alt.Chart(view).mark_tick(color="#888888", thickness=2, size=18).encode(y=y, x="rest_rate:Q")
    st.altair_chart(alt.layer(bars, point, rest).properties(height=height), use_container_width=True)
    st.dataframe(view[["dimension", "level", "n", "rate", "lo", "hi", "rest_rate", "gap", "p", "flagged"]],
                 hide_index=True, use_container_width=True)


CAL_FACET_COLUMNS = 5  # reliability diagrams per row: ten finding types read as two rows at a glance


def _reliability_frame(types: list[dict[str, Any]]) -> pd.DataFrame:
    """Long frame for the faceted reliability diagrams: current bins, reference bins, and the diagonal."""
    rows: list[dict[str, Any]] = []
    for t in types:
        for which, key in (("this window", "reliability"), ("reference", "reference_reliability")):
            for b in t.get(key) or []:
                rows.append({"finding": t["finding"], "which": which, "confidence": b["mean_confidence"],
                             "right": b["accuracy"], "lo": b["lo"], "hi": b["hi"], "n": b["n"]})
        rows += [{"finding": t["finding"], "which": "perfect", "confidence": v, "right": v, "lo": v, "hi": v, "n": 0}
                 for v in (0.0, 1.0)]
    return pd.DataFrame(rows)


def _calibration(p: dict[str, Any], alerts: list[Any]) -> None:
    cal = p.get("calibration") or {}
    types = [t for t in cal.get("types", []) if t.get("n")]
    if not types:
        return
    ref = cal.get("reference_name", "baseline")
    flagged = {a.subject.split("=", 1)[1] for a in alerts
               if a.kind in ("calibration", "ppv_drop") and state(a) != "resolved" and "=" in a.subject}
    st.subheader("Does the engine's confidence mean what it says? (current window)")
    st.caption(f"Each panel: AI claims of one finding type binned by confidence; a dot is the share the final report "
               f"confirmed (bar: 95% Wilson interval; size: claims). On the diagonal a 0.9 is right 9 times in 10; "
               f"below it the engine is overconfident. Grey: the {ref}. Types with an open alert are marked (!). "
               f"ECE is biased upwards on few claims: judge a type by its interval and its alert, not its rank.")
    df = _reliability_frame(types)
    df["finding"] = df["finding"].map(lambda f: f"{f} (!)" if f in flagged else f)
    base = alt.Chart(df)
    x = alt.X("confidence:Q", title="confidence", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("right:Q", title="share right", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    diag = base.transform_filter("datum.which == 'perfect'").mark_line(strokeDash=[4, 4], color="#999999").encode(x=x, y=y)
    refl = base.transform_filter("datum.which == 'reference'").mark_line(color="#b0b0b0", point=alt.OverlayMarkDef(color="#b0b0b0")).encode(x=x, y=y)
    cur = base.transform_filter("datum.which == 'this window'")
    bars = cur.mark_rule(color="#d62728").encode(x=x, y="lo:Q", y2="hi:Q")
    dots = cur.mark_circle(color="#d62728", opacity=0.9).encode(
        x=x, y=y, size=alt.Size("n:Q", legend=None, scale=alt.Scale(range=[15, 160])),
        tooltip=["finding", "n", alt.Tooltip("confidence:Q", format=".2f"), alt.Tooltip("right:Q", format=".0%")])
    chart = alt.layer(diag, refl, bars, dots).properties(width=170, height=170).facet(
        facet=alt.Facet("finding:N", title=None), columns=CAL_FACET_COLUMNS)
    st.altair_chart(chart)

    def ci(lo: Any, hi: Any) -> str:
        return "" if lo is None or hi is None else f" ({lo:.2f}-{hi:.2f})"

    table = pd.DataFrame([{
        "finding": t["finding"] + (" (!)" if t["finding"] in flagged else ""), "claims": t["n"],
        "ECE (95% CI)": f"{t['ece']:.3f}{ci(t.get('ece_lo'), t.get('ece_hi'))}",
        f"ECE {ref}": f"{t['reference']['ece']:.3f}" if t.get("reference") else "n/a",
        "Brier": round(t["brier"], 3), "mean confidence": round(t["mean_confidence"], 2),
        "share right (PPV)": _pct(t["accuracy"]),
        f"PPV {ref}": _pct(t["reference"]["accuracy"]) if t.get("reference") else "n/a",
    } for t in sorted(types, key=lambda t: (t["finding"] not in flagged, -t["n"]))])
    st.dataframe(table, hide_index=True, use_container_width=True)
    left, right = st.columns(2)
    names = [t["finding"] for t in sorted(types, key=lambda t: (t["finding"] not in flagged, -t["ece"]))]
    pick = left.selectbox("Confidence bands of", names, key="pw_mon_cal_type")
    chosen = next(t for t in types if t["finding"] == pick)
    left.dataframe(pd.DataFrame([{"confidence": b["band"], "claims": b["n"],
                                  "PPV (95% CI)": "n/a" if b["ppv"] is None else
                                  f"{b['ppv']:.0%} ({b['ppv_lo']:.0%}-{b['ppv_hi']:.0%})",
                                  "sensitivity if only this band and above": _pct(b["sensitivity_at_or_above"])}
                                 for b in chosen["bands"]]), hide_index=True, use_container_width=True)
    dim = right.selectbox("ECE by", ["site", "model_version"], key="pw_mon_cal_dim")
    rows = pd.DataFrame([r for r in cal.get(f"by_{dim}", []) if r.get("ece_lo") is not None])
    if rows.empty:
        right.write("Too few claims per group for an interval.")
        return
    rows["group"] = rows["finding"] + " · " + rows[dim].astype(str)
    yy = alt.Y("group:N", sort=None, title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False))
    right.altair_chart(alt.layer(
        alt.Chart(rows).mark_rule(strokeWidth=3, color="#4c78a8").encode(
            y=yy, x=alt.X("ece_lo:Q", title="ECE (95% bootstrap interval)"), x2="ece_hi:Q"),
        alt.Chart(rows).mark_point(filled=True, color="black").encode(y=yy, x="ece:Q", tooltip=["group", "n", "ece"]),
    ).properties(height=max(120, 22 * len(rows))), use_container_width=True)


def _recalibration(user: dict[str, Any]) -> None:
    """Proposals with before/after ECE on their later window; an admin accepts, rejects or reverts (audited)."""
    from priorwatch import recalibration as rc

    with Session(get_engine()) as s:
        rows = list_recalibrations(s)
    st.subheader("Recalibration of the confidence (reviewed proposals)")
    st.caption("A proposal fits a per-type Platt map on one window and is judged on a later window it never saw. "
               "Nothing changes until an admin accepts it; results made after that carry the raw and the "
               "recalibrated confidence and '+cal<version>' in their model version. Reverting restores the previous map.")
    if not rows:
        st.write("No proposal yet (`priorwatch recalibration propose`).")
        return
    admin = user.get("role") == rc.DECIDER_ROLE
    for r in rows[:10]:
        metrics = json.loads(r.metrics_json or "{}")
        head = (f"Calibration {r.version} — {r.status}; fit {r.fit_start:%Y-%m-%d}..{r.fit_end:%Y-%m-%d}, judged on "
                f"{r.eval_start:%Y-%m-%d}..{r.eval_end:%Y-%m-%d}; proposed by {r.created_by}"
                + (f", {r.status} by {r.decided_by}" if r.decided_by else ""))
        with st.expander(head, expanded=r.status == "proposed"):
            st.dataframe(pd.DataFrame([{"finding": t, "fit claims": m["n_fit"], "judged claims": m["n_eval"],
                                        "ECE before": m.get("ece_before"), "ECE after": m.get("ece_after"),
                                        "note": m.get("note", "")} for t, m in metrics.items()]),
                         hide_index=True, use_container_width=True)
            if not admin or r.status not in ("proposed", "accepted"):
                continue
            cols = st.columns(3)
            actions = [("accept", "Accept"), ("reject", "Reject")] if r.status == "proposed" else [("revert", "Revert")]
            for col, (action, label) in zip(cols, actions):
                if col.button(label, key=f"recal-{action}-{r.id}"):
                    try:
                        with Session(get_engine()) as s:
                            getattr(rc, action)(s, r.id, user["username"])
                            s.commit()
                    except rc.RecalibrationError as exc:  # decided meanwhile, or no longer an admin
                        st.error(str(exc))
                        continue
                    st.rerun()


def render() -> None:
    st.header("Monitoring")
    init_db()
    with Session(get_engine()) as s:
        latest = latest_snapshot(s)
        alerts = list_alerts(s, limit=500)
        series = snapshot_series(s)
    user = (st.session_state.get("user") or {}).get("username", "unknown")
    if latest is None:
        st.info("No monitoring snapshot yet. Run `priorwatch monitor` or wait for the scheduled one.")
        if st.button("Compute a snapshot now"):
            from monitoring.snapshot import run_snapshot

            run_snapshot()
            st.rerun()
        return
    snap, p = latest
    st.caption(f"Snapshot {snap.id} as of {snap.as_of:%Y-%m-%d %H:%M} UTC; current window from "
               f"{p['current_start'][:10]} ({p['n_current']} studies), reference from {p['reference_start'][:10]} "
               f"({p['n_reference']} studies)" + (f", baseline {p['baseline_window'][0][:10]} to "
                                                  f"{p['baseline_window'][1][:10]} ({p['n_baseline']} studies)"
                                                  if p.get("baseline_window") else "") + ".")
    _problems(alerts, user)
    for rule in p.get("stop_rule", []):
        st.warning(f"Suggested stop-rule: {rule}")
    _headline(p, any(state(a) == "open" for a in alerts))
    _concordance(p.get("current", {}))
    _trend(series, alerts, p)
    _drift(p)
    _calibration(p, alerts)
    _recalibration(st.session_state.get("user") or {})
    _subgroups(p)
    st.subheader("Alert history")
    if alerts:
        st.dataframe(pd.DataFrame([{"opened": a.as_of, "state": state(a), "severity": a.severity, "kind": a.kind,
                                    "subject": a.subject, "last seen": a.last_seen_at, "resolved": a.resolved_at,
                                    "route": a.route, "webhook": a.webhook_state,
                                    "acknowledged by": a.acknowledged_by or ""} for a in alerts]),
                     hide_index=True, use_container_width=True)
    html = snap.report_html_path
    if html and Path(html).exists():
        st.download_button("Download the Evidently drift report (HTML)", Path(html).read_bytes(),
                           file_name=Path(html).name, mime="text/html", on_click=audit_export,
                           args=(user, "drift_report_html", st.session_state.get("sid")))
