"""A monitoring snapshot: revision metrics, drift, subgroups and alerts for one moment,
stored as a MonitoringSnapshot row (plus the Evidently HTML report) and its alerts."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import Session

from monitoring import alerts as alerts_mod
from monitoring.dataset import load_frame
from monitoring.drift import concordance, drift_columns, evidently_drift
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
    """Weekly series over the whole history, for the page's charts."""
    if df.empty:
        return []
    d = df.set_index(pd.to_datetime(df["at"]))
    signed = d["has_final"].astype(bool)
    g = pd.DataFrame({
        "n": d["study_id"],
        "signed": signed.astype(int),
        "revised": (d["revised"] & signed).astype(int),
        "significant": (d["significant_revision"] & signed).astype(int),
        "urgent": d["urgent"].astype(int),
        "confidence": d["mean_confidence"].astype(float),
        "edit_distance": d["edit_distance"].astype(float),
        "draft_words": d["draft_words"].astype(float),
        "with_prior": (d["has_prior"] == "with_prior").astype(int),
    }).resample(freq, label="left", closed="left")
    out = pd.DataFrame({
        "n": g["n"].count(), "signed": g["signed"].sum(), "revised": g["revised"].sum(),
        "significant": g["significant"].sum(), "urgent": g["urgent"].sum(), "mean_confidence": g["confidence"].mean(),
        "mean_edit_distance": g["edit_distance"].mean(), "mean_draft_words": g["draft_words"].mean(),
        "with_prior": g["with_prior"].sum(),
    })
    with np.errstate(invalid="ignore", divide="ignore"):
        out["revision_rate"] = out["revised"] / out["signed"].replace(0, np.nan)
        out["significant_revision_rate"] = out["significant"] / out["signed"].replace(0, np.nan)
        out["urgent_rate"] = out["urgent"] / out["n"].replace(0, np.nan)
        out["prior_rate"] = out["with_prior"] / out["n"].replace(0, np.nan)
    out.index.name = "week"
    return out.reset_index().to_dict("records")


def compute(frame: pd.DataFrame, as_of: datetime, ms: MonitoringSettings, *, with_evidently: bool = True,
            html_path: Path | None = None, with_timeseries: bool = True) -> dict[str, Any]:
    """The payload of a snapshot over `frame` (from `load_frame`) at `as_of`."""
    cur_start = as_of - timedelta(days=ms.current_days)
    ref_start = cur_start - timedelta(days=ms.reference_days)
    at = pd.to_datetime(frame["at"]) if len(frame) else pd.Series([], dtype="datetime64[ns]")
    cur = frame[(at >= cur_start) & (at < as_of)]
    ref = frame[(at >= ref_start) & (at < cur_start)]
    payload: dict[str, Any] = {
        "as_of": as_of, "current_start": cur_start, "reference_start": ref_start,
        "n_current": len(cur), "n_reference": len(ref),
        "current": window_metrics(cur), "reference": window_metrics(ref),
        "thresholds": ms.model_dump(include={"drift_score_threshold", "revision_rise_threshold",
                                             "subgroup_gap_threshold", "min_count", "alpha"}),
    }
    dcur, dref = drift_columns(cur), drift_columns(ref)
    dr = concordance(dref, dcur, n_boot=ms.drift_bootstrap, z_clip=ms.drift_z_clip)
    drift: dict[str, Any] = {"score": dr.score, "groups": dr.groups, "columns": dr.columns}
    if with_evidently and len(cur) >= 2 and len(ref) >= 2:
        ev = evidently_drift(dref, dcur, html_path)
        drift["evidently"] = {k: v for k, v in ev.items() if k != "columns"}
        for c in drift["columns"]:
            e = ev["columns"].get(c["column"])  # type: ignore[union-attr]
            if e:
                c["evidently_method"], c["evidently_value"], c["evidently_drifted"] = e["method"], e["value"], e["drifted"]
    payload["drift"] = drift
    sub = subgroup_table(cur, min_count=ms.min_count, gap_threshold=ms.subgroup_gap_threshold, alpha=ms.alpha)
    payload["subgroups"] = sub.to_dict("records")
    if with_timeseries:
        payload["timeseries"] = timeseries(frame[at < as_of])
    payload = _clean(payload)
    found = alerts_mod.evaluate(payload, ms)
    payload["alerts"] = found
    payload["stop_rule"] = alerts_mod.stop_rule(payload, found)
    return payload


def store(session: Session, payload: dict[str, Any], ms: MonitoringSettings, *, send: bool = True,
          html_path: str | None = None) -> tuple[MonitoringSnapshot, list[Any]]:
    as_of = datetime.fromisoformat(payload["as_of"])
    snap = MonitoringSnapshot(
        as_of=as_of, current_start=datetime.fromisoformat(payload["current_start"]),
        reference_start=datetime.fromisoformat(payload["reference_start"]),
        n_current=payload["n_current"], n_reference=payload["n_reference"],
        drift_score=payload["drift"].get("score"), revision_rate=payload["current"].get("revision_rate"),
        payload_json=json.dumps(payload, default=str), report_html_path=html_path,
    )
    session.add(snap)
    session.flush()
    stored = alerts_mod.store_and_send(session, payload["alerts"], as_of=as_of, snapshot_id=snap.id, ms=ms, send=send)
    return snap, stored


def run_snapshot(settings: Settings | None = None, ms: MonitoringSettings | None = None,
                 as_of: datetime | None = None, *, send: bool = True) -> dict[str, Any]:
    """Compute a snapshot now from the database and store it with its alerts (the beat task)."""
    s = settings or get_settings()
    ms = ms or get_monitoring_settings()
    engine = init_db(s)
    as_of = as_of or utcnow()
    frame = load_frame(engine, until=as_of, uncertain_as_positive=ms.uncertain_as_positive)
    html = (s.data_dir / "monitoring" / f"evidently-{as_of:%Y%m%dT%H%M%S}.html") if ms.evidently_html else None
    payload = compute(frame, as_of, ms, html_path=html)
    with Session(get_engine(s), expire_on_commit=False) as session:
        snap, stored = store(session, payload, ms, send=send,
                             html_path=str(html) if html and html.exists() else None)
        session.commit()
        payload["snapshot_id"] = snap.id
        payload["stored_alerts"] = [a.id for a in stored]
    return payload
