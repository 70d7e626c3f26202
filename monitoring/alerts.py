"""Alerts: evaluated from a snapshot payload against the thresholds in MonitoringSettings,
stored, and POSTed as JSON to the configured webhook; plus the stop-rule the page suggests."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from monitoring.metrics import two_proportion_p
from monitoring.settings import MonitoringSettings
from priorwatch.models import MonitoringAlert

log = logging.getLogger(__name__)


def evaluate(payload: dict[str, Any], ms: MonitoringSettings) -> list[dict[str, Any]]:
    """The alerts a snapshot payload raises (not yet stored)."""
    alerts: list[dict[str, Any]] = []
    drift = payload.get("drift") or {}
    score = drift.get("score")
    if score is not None and score >= ms.drift_score_threshold:
        top = sorted(drift.get("columns", []), key=lambda c: -float(c["z"]))[:3]
        cols = ", ".join(f"{c['column']} (z={c['z']:.1f})" for c in top)
        alerts.append({"kind": "drift", "subject": "unified", "value": score, "threshold": ms.drift_score_threshold,
                       "message": f"Drift score {score:.2f} >= {ms.drift_score_threshold}; most changed: {cols}. "
                                  "An early warning that inputs or outputs differ from the reference window, not a "
                                  "measure of accuracy."})
    cur, ref = payload.get("current") or {}, payload.get("reference") or {}
    rc, rr = cur.get("revision_rate"), ref.get("revision_rate")
    if rc is not None and rr is not None:
        nc, nr = cur.get("n_signed", 0), ref.get("n_signed", 0)
        p = float(two_proportion_p(round(rc * nc), nc, round(rr * nr), nr)[0]) if nc and nr else 1.0
        rise = rc - rr
        if rise >= ms.revision_rise_threshold and p < ms.alpha and nc >= ms.min_count:
            alerts.append({"kind": "revision_rise", "subject": "revision_rate", "value": rise,
                           "threshold": ms.revision_rise_threshold,
                           "message": f"Revision rate rose from {rr:.1%} to {rc:.1%} (+{rise:.1%}, p={p:.2g}, "
                                      f"n={nc} vs {nr})."})
    for row in payload.get("subgroups", []):
        if not row.get("flagged"):
            continue
        subject = f"{row['dimension']}={row['level']} {row['metric']}"
        alerts.append({"kind": "subgroup_gap", "subject": subject, "value": row["gap"],
                       "threshold": ms.subgroup_gap_threshold,
                       "message": f"{row['dimension']}={row['level']}: {row['metric']} {row['rate']:.1%} "
                                  f"(95% CI {row['lo']:.1%}-{row['hi']:.1%}, n={row['n']}) vs {row['rest_rate']:.1%} "
                                  f"in the rest (p={row['p']:.2g})."})
    return alerts


def stop_rule(payload: dict[str, Any], alerts: list[dict[str, Any]]) -> list[str]:
    """Suggested stop-rules for the QA page. A suggestion, never an automatic action."""
    out: list[str] = []
    subs = [a for a in alerts if a["kind"] == "subgroup_gap"]
    for a in subs:
        dim_level = a["subject"].split(" ")[0]
        out.append(f"Consider pausing AI drafts for {dim_level} (route those studies to unassisted reading) until "
                   f"a QA review of that subgroup closes; {a['message']}")
    if any(a["kind"] == "revision_rise" for a in alerts) and not subs:
        out.append("Revision rate is rising across the board: consider suspending AI drafts site-wide until the "
                   "cause is found (model version, protocol or scanner change).")
    if any(a["kind"] == "drift" for a in alerts):
        out.append("Input/output drift: check the most changed columns; if a new scanner or protocol is the cause, "
                   "validate the engine on it before relying on its drafts there. Drift alone is not a stop rule.")
    return out


def post_webhook(url: str, body: dict[str, Any], timeout_s: float = 5.0) -> None:
    data = json.dumps(body, default=str).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (configured URL)
        if resp.status >= 300:
            raise urllib.error.HTTPError(url, resp.status, "webhook refused", resp.headers, None)


def store_and_send(session: Session, alerts: list[dict[str, Any]], *, as_of: datetime, snapshot_id: int | None,
                   ms: MonitoringSettings, send: bool = True) -> list[MonitoringAlert]:
    """Store each alert (unless the same kind and subject fired within `realert_days`) and send it."""
    stored: list[MonitoringAlert] = []
    since = as_of - timedelta(days=ms.realert_days)
    for a in alerts:
        recent = session.exec(
            select(MonitoringAlert).where(
                MonitoringAlert.kind == a["kind"], MonitoringAlert.subject == a["subject"],
                MonitoringAlert.as_of > since, MonitoringAlert.as_of <= as_of,
            )
        ).first()
        if recent is not None:
            continue
        row = MonitoringAlert(snapshot_id=snapshot_id, as_of=as_of, kind=a["kind"], subject=a["subject"],
                              value=float(a["value"]), threshold=float(a["threshold"]), message=a["message"])
        session.add(row)
        session.flush()
        if send and ms.webhook_url:
            try:
                post_webhook(ms.webhook_url, {"source": "priorwatch.monitoring", "alert_id": row.id,
                                              "snapshot_id": snapshot_id, "as_of": as_of.isoformat(), **a},
                             ms.webhook_timeout_s)
                row.webhook_state = "sent"
            except (OSError, urllib.error.URLError) as exc:
                row.webhook_state, row.webhook_error = "failed", str(exc)[:500]
                log.warning("alert webhook failed: %s", exc)
        stored.append(row)
    return stored
