"""One monitoring snapshot at an as-of time: load the windows (current, rolling reference, the
fixed baseline, and the weeks the charts show), compute concordance metrics, drift and
subgroups, derive the conditions, advance the alert lifecycle, store the payload, and prune
old Evidently HTML reports. Everything is bounded by the windows, never by the history."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from monitoring import alerts as alerts_mod
from monitoring import calibration
from monitoring.dataset import load_frame
from monitoring.drift import analyse, drift_columns, evidently_html
from monitoring.metrics import subgroup_table, window_metrics
from monitoring.settings import MonitoringSettings, get_monitoring_settings
from priorwatch.db import get_engine, init_db
from priorwatch.models import MonitoringSnapshot, utcnow
from priorwatch.settings import Settings, get_settings


def _clean(o: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, (pd.Timestamp, datetime)):
        return o.isoformat()
    return o


def timeseries(df: pd.DataFrame, freq: str = "W-MON") -> list[dict[str, Any]]:
    """Weekly series over the loaded windows (reference + current) for the page's charts."""
    if df.empty:
        return []
    d = df.set_index(pd.to_datetime(df["at"]))
    signed = d["has_final"].astype(bool)
    g = pd.DataFrame({
        "n": d["study_id"], "signed": signed.astype(int), "revised": (d["revised"] & signed).astype(int),
        "minor": (d["minor_revision"] & signed).astype(int), "urgent": d["urgent"].astype(int),
        "confidence": pd.to_numeric(d["mean_confidence"], errors="coerce"),
        "delay": pd.to_numeric(d["report_delay_h"], errors="coerce"),
    }).resample(freq, label="left", closed="left")
    out = pd.DataFrame({"n": g["n"].count(), "signed": g["signed"].sum(), "revised": g["revised"].sum(),
                        "minor": g["minor"].sum(), "urgent": g["urgent"].sum(),
                        "mean_confidence": g["confidence"].mean(), "report_delay_median_h": g["delay"].median()})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["revision_rate"] = out["revised"] / out["signed"].replace(0, np.nan)
        out["minor_revision_rate"] = out["minor"] / out["signed"].replace(0, np.nan)
        out["urgent_rate"] = out["urgent"] / out["n"].replace(0, np.nan)
    out.index.name = "week"
    return out.reset_index().to_dict("records")


def windows(as_of: datetime, ms: MonitoringSettings) -> dict[str, tuple[datetime, datetime]]:
    cur_start = as_of - timedelta(days=ms.current_days)
    w = {"current": (cur_start, as_of), "reference": (cur_start - timedelta(days=ms.reference_days), cur_start)}
    if ms.baseline_start and ms.baseline_end and ms.baseline_start < as_of:
        w["baseline"] = (ms.baseline_start, min(ms.baseline_end, as_of))
    return w


def load(engine: Engine, as_of: datetime, ms: MonitoringSettings) -> dict[str, pd.DataFrame]:
    """The frames a snapshot needs, each read as known at `as_of`."""
    w = windows(as_of, ms)
    lo = w["reference"][0]  # the charts' longer history comes from stored snapshots, not from reloading studies
    frame = load_frame(engine, lo, as_of, ms, as_of=as_of)
    at = pd.to_datetime(frame["at"])
    out = {"all": frame}
    for name in ("current", "reference"):
        a, b = w[name]
        out[name] = frame[(at >= a) & (at < b)]
    if "baseline" in w:
        a, b = w["baseline"]
        out["baseline"] = frame[(at >= a) & (at < b)] if a >= lo else _baseline(engine, a, b, ms, as_of)
    return out


_BASELINE_CACHE: dict[tuple[str, datetime, datetime], tuple[datetime, pd.DataFrame]] = {}


def _baseline(engine: Engine, a: datetime, b: datetime, ms: MonitoringSettings, as_of: datetime) -> pd.DataFrame:
    """The fixed baseline's frame, kept in the process: it is the same period every hour. A cached copy
    read at an earlier as-of may lack a late report but never holds one from after `as_of`."""
    key = (str(engine.url), a, b)
    hit = _BASELINE_CACHE.get(key)
    if hit is not None and hit[0] <= as_of:
        return hit[1]
    frame = load_frame(engine, a, b, ms, as_of=as_of)
    _BASELINE_CACHE.clear()  # one baseline per process is all a deployment has
    _BASELINE_CACHE[key] = (as_of, frame)
    return frame


def compute(frames: dict[str, pd.DataFrame], as_of: datetime, ms: MonitoringSettings, *,
            html_path: Path | None = None) -> dict[str, Any]:
    """The payload of a snapshot over `frames` (from `load`) at `as_of`."""
    w = windows(as_of, ms)
    cur, ref = frames["current"], frames["reference"]
    base = frames.get("baseline")
    payload: dict[str, Any] = {
        "as_of": as_of, "current_start": w["current"][0], "reference_start": w["reference"][0],
        "baseline_window": list(w["baseline"]) if "baseline" in w else None,
        "n_current": len(cur), "n_reference": len(ref), "n_baseline": len(base) if base is not None else 0,
        "current": window_metrics(cur), "reference": window_metrics(ref),
        "baseline": window_metrics(base) if base is not None else None,
        "thresholds": ms.model_dump(include={"drift_threshold", "drift_ratio_alert", "revision_rise_threshold",
                                             "subgroup_gap_threshold", "min_count", "alpha", "report_delay_alert_h"}),
    }
    payload["drift"] = analyse(cur, ref, base, threshold=ms.drift_threshold, ratio=ms.drift_ratio_alert,
                               min_count=ms.drift_min_count)
    if html_path is not None and len(cur) >= 2 and len(ref) >= 2:
        payload["drift"]["html_path"] = evidently_html(drift_columns(ref), drift_columns(cur), html_path)
    sub = subgroup_table(cur, min_count=ms.min_count, gap_threshold=ms.subgroup_gap_threshold, alpha=ms.alpha)
    payload["subgroups"] = sub.to_dict("records")
    payload["timeseries"] = timeseries(frames["all"])
    use_base = base is not None and bool((payload["baseline"] or {}).get("n_signed"))
    payload["calibration"] = calibration.summarise(cur, base if use_base else ref, ms, as_of,
                                                   "baseline" if use_base else "reference")
    payload = _clean(payload)
    found = alerts_mod.evaluate(payload, ms)
    payload["alerts"] = found
    payload["stop_rule"] = alerts_mod.stop_rule(payload, found)
    return payload


def store(session: Session, payload: dict[str, Any], ms: MonitoringSettings, *, send: bool = True,
          html_path: str | None = None) -> tuple[MonitoringSnapshot, dict[str, list[Any]]]:
    as_of = datetime.fromisoformat(payload["as_of"])
    snap = MonitoringSnapshot(
        as_of=as_of, current_start=datetime.fromisoformat(payload["current_start"]),
        reference_start=datetime.fromisoformat(payload["reference_start"]),
        n_current=payload["n_current"], n_reference=payload["n_reference"],
        drift_score=max((c["value"] for c in payload["drift"]["conditions"] if c["kind"] == "drift"), default=None),
        revision_rate=payload["current"].get("revision_rate"),
        payload_json=json.dumps(payload, default=str), report_html_path=html_path,
    )
    session.add(snap)
    session.flush()
    changes = alerts_mod.apply(session, payload["alerts"], as_of=as_of, snapshot_id=snap.id, ms=ms, send=send)
    return snap, changes


def prune_html(session: Session, html_dir: Path, keep_days: int, now: datetime) -> int:
    """Delete Evidently HTML reports older than `keep_days` (and forget their paths); returns the count."""
    cutoff = now - timedelta(days=keep_days)
    n = 0
    old = session.exec(select(MonitoringSnapshot).where(MonitoringSnapshot.computed_at < cutoff,
                                                         MonitoringSnapshot.report_html_path.is_not(None))).all()  # type: ignore[union-attr]
    for snap in old:
        p = Path(snap.report_html_path or "")
        if p.exists():
            p.unlink()
            n += 1
        snap.report_html_path = None
        session.add(snap)
    if html_dir.exists():  # files whose snapshot row is gone
        for p in html_dir.glob("evidently-*.html"):
            if datetime.utcfromtimestamp(p.stat().st_mtime) < cutoff:
                p.unlink()
                n += 1
    return n


def run_snapshot(settings: Settings | None = None, ms: MonitoringSettings | None = None,
                 as_of: datetime | None = None, *, send: bool = True) -> dict[str, Any]:
    """Compute a snapshot from the database and store it with its alerts (the beat task)."""
    s = settings or get_settings()
    ms = ms or get_monitoring_settings()
    engine = init_db(s)
    as_of = as_of or utcnow()
    frames = load(engine, as_of, ms)
    html_dir = s.data_dir / "monitoring"
    html = (html_dir / f"evidently-{as_of:%Y%m%dT%H%M%S}.html") if ms.evidently_html else None
    payload = compute(frames, as_of, ms, html_path=html)
    with Session(get_engine(s), expire_on_commit=False) as session:
        snap, changes = store(session, payload, ms, send=send,
                              html_path=str(html) if html and html.exists() else None)
        pruned = prune_html(session, html_dir, ms.html_keep_days, utcnow())
        session.commit()
        payload["snapshot_id"] = snap.id
        payload["stored_alerts"] = [a.id for a in changes["opened"]]
        payload["resolved_alerts"] = [a.id for a in changes["resolved"]]
        payload["pruned_html"] = pruned
    return payload
