"""Alerts with a lifecycle. A snapshot yields conditions (kind + subject: "drift site=SITE_B /
scanner", "revision_rise revision_rate"...). A condition that holds and has no live alert opens
one (stored, routed, sent to the webhook once); while it holds, its alert is only updated
(last seen, count), so an acknowledged alert stays quiet; when the condition has been clear
for `resolve_quiet_days` (settings) the alert is resolved, and a later recurrence opens a new one."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from monitoring.calibration import conditions as calibration_conditions
from monitoring.metrics import two_proportion_p
from monitoring.settings import MonitoringSettings
from priorwatch.models import MonitoringAlert

log = logging.getLogger(__name__)

def state(a: MonitoringAlert) -> str:
    """open | acknowledged | resolved."""
    if a.resolved_at is not None:
        return "resolved"
    return "acknowledged" if a.acknowledged else "open"


def evaluate(payload: dict[str, Any], ms: MonitoringSettings) -> list[dict[str, Any]]:
    """The conditions a snapshot payload shows (not yet stored): drift and novelty from the drift
    analysis, a revision-rate rise, subgroup gaps, a report-delay rise, and per finding type a
    calibration change or PPV drop against the baseline (monitoring.calibration)."""
    conds: list[dict[str, Any]] = [dict(c) for c in (payload.get("drift") or {}).get("conditions", [])]
    cur = payload.get("current") or {}
    ref = payload.get("baseline") if (payload.get("baseline") or {}).get("n_signed") else payload.get("reference")
    ref = ref or {}
    rc, rr = cur.get("revision_rate"), ref.get("revision_rate")
    if rc is not None and rr is not None:
        nc, nr = cur.get("n_signed", 0), ref.get("n_signed", 0)
        p = float(two_proportion_p(round(rc * nc), nc, round(rr * nr), nr)[0]) if nc and nr else 1.0
        rise = rc - rr
        if rise >= ms.revision_rise_threshold and p < ms.alpha and nc >= ms.min_count:
            conds.append({"kind": "revision_rise", "subject": "revision_rate", "value": rise,
                          "threshold": ms.revision_rise_threshold,
                          "message": f"Significant revisions (finding-level) rose from {rr:.1%} to {rc:.1%} "
                                     f"(+{rise:.1%}, p={p:.2g}, n={nc} vs {nr})."})
    for row in payload.get("subgroups", []):
        if not row.get("flagged"):
            continue
        conds.append({"kind": "subgroup_gap", "subject": f"{row['dimension']}={row['level']} {row['metric']}",
                      "value": row["gap"], "threshold": ms.subgroup_gap_threshold,
                      "message": f"{row['dimension']}={row['level']}: {row['metric']} {row['rate']:.1%} "
                                 f"(95% CI {row['lo']:.1%}-{row['hi']:.1%}, n={row['n']}) vs {row['rest_rate']:.1%} "
                                 f"in the rest (p={row['p']:.2g})."})
    med, nd = cur.get("report_delay_median_h"), cur.get("n_delay", 0)
    if med is not None and nd >= ms.report_delay_min_count and med > ms.report_delay_alert_h:
        conds.append({"kind": "report_delay", "subject": "report_delay", "value": med,
                      "threshold": ms.report_delay_alert_h,
                      "message": f"Median report delay (signed minus study time) {med:.1f} h over {nd} signed reports "
                                 f"(limit {ms.report_delay_alert_h:.0f} h); the revision figures lag by as much."})
    conds.extend(calibration_conditions(payload.get("calibration"), ms))
    for c in conds:
        sev, route = ms.alert_routes.get(c["kind"], ("warning", "qa"))
        c.setdefault("severity", sev)
        c.setdefault("route", route)
    return conds


def stop_rule(payload: dict[str, Any], alerts: list[dict[str, Any]]) -> list[str]:
    """Suggested stop-rules for the QA page. A suggestion, never an automatic action."""
    out: list[str] = []
    subs = [a for a in alerts if a["kind"] == "subgroup_gap" and a["subject"].endswith("revision_rate")]
    for a in subs:
        dim_level = a["subject"].split(" ")[0]
        out.append(f"Consider pausing AI drafts for {dim_level} (route those studies to unassisted reading) until "
                   f"a QA review of that subgroup closes; {a['message']}")
    if any(a["kind"] == "revision_rise" for a in alerts) and not subs:
        out.append("Significant revisions are rising across the board: consider suspending AI drafts site-wide until "
                   "the cause is found (model version, protocol or scanner change).")
    if any(a["kind"] in ("new_scanner", "new_site") for a in alerts):
        out.append("A new scanner or site: validate the engine on its studies before relying on its drafts there.")
    return out


def post_webhook(url: str, body: dict[str, Any], timeout_s: float = 5.0) -> None:
    data = json.dumps(body, default=str).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (configured URL)
        if resp.status >= 300:
            raise urllib.error.HTTPError(url, resp.status, "webhook refused", resp.headers, None)


def live_alerts(session: Session) -> list[MonitoringAlert]:
    return list(session.exec(select(MonitoringAlert).where(MonitoringAlert.resolved_at.is_(None))).all())  # type: ignore[union-attr]


def apply(session: Session, conditions: list[dict[str, Any]], *, as_of: datetime, snapshot_id: int | None,
          ms: MonitoringSettings, send: bool = True) -> dict[str, list[MonitoringAlert]]:
    """Advance the lifecycle with one snapshot's conditions: {"opened", "updated", "resolved"}."""
    live = {(a.kind, a.subject): a for a in live_alerts(session)}
    opened: list[MonitoringAlert] = []
    updated: list[MonitoringAlert] = []
    seen: set[tuple[str, str]] = set()
    for c in conditions:
        key = (c["kind"], c["subject"])
        if key in seen:
            continue
        seen.add(key)
        row = live.get(key)
        if row is not None:
            if row.as_of > as_of:  # a snapshot for an earlier moment (a re-run): history is not rewritten
                continue
            row.last_seen_at = max(row.last_seen_at or row.as_of, as_of)
            row.n_seen += 1
            row.value = float(c["value"])
            row.message = c["message"]  # the latest figures; `as_of` keeps when it opened
            session.add(row)
            updated.append(row)
            continue
        row = MonitoringAlert(snapshot_id=snapshot_id, as_of=as_of, kind=c["kind"], subject=c["subject"][:128],
                              value=float(c["value"]), threshold=float(c["threshold"]), message=c["message"],
                              severity=c["severity"], route=c["route"], last_seen_at=as_of, n_seen=1)
        session.add(row)
        session.flush()
        if send and ms.webhook_url:
            try:
                post_webhook(ms.webhook_url, {"source": "priorwatch.monitoring", "event": "opened", "alert_id": row.id,
                                              "snapshot_id": snapshot_id, "as_of": as_of.isoformat(),
                                              **{k: v for k, v in c.items() if k != "columns"}}, ms.webhook_timeout_s)
                row.webhook_state = "sent"
            except (OSError, urllib.error.URLError) as exc:
                row.webhook_state, row.webhook_error = "failed", type(exc).__name__
                log.warning("alert webhook failed: %s", type(exc).__name__)
        opened.append(row)
    resolved: list[MonitoringAlert] = []
    quiet = timedelta(days=ms.resolve_quiet_days)
    for key, row in live.items():
        if key in seen or row.as_of > as_of:
            continue
        if as_of - (row.last_seen_at or row.as_of) >= quiet:
            row.resolved_at = as_of
            session.add(row)
            resolved.append(row)
    return {"opened": opened, "updated": updated, "resolved": resolved}
