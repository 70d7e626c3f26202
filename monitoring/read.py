"""Read side for the dashboard: latest snapshot, alerts and recalibration proposals."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from priorwatch.models import MonitoringAlert, MonitoringSnapshot, Recalibration


def latest_snapshot(session: Session) -> tuple[MonitoringSnapshot, dict[str, Any]] | None:
    snap = session.exec(select(MonitoringSnapshot).order_by(MonitoringSnapshot.as_of.desc(),  # type: ignore[attr-defined]
                                                            MonitoringSnapshot.id.desc())).first()  # type: ignore[union-attr]
    if snap is None:
        return None
    return snap, json.loads(snap.payload_json)


def snapshot_series(session: Session, limit: int = 500) -> list[dict[str, Any]]:
    rows = session.exec(select(MonitoringSnapshot).order_by(MonitoringSnapshot.as_of.desc()).limit(limit)).all()  # type: ignore[attr-defined]
    return [{"as_of": r.as_of, "drift_score": r.drift_score, "revision_rate": r.revision_rate,
             "n_current": r.n_current} for r in reversed(rows)]


def list_alerts(session: Session, limit: int = 200) -> list[MonitoringAlert]:
    return list(session.exec(select(MonitoringAlert).order_by(MonitoringAlert.as_of.desc(),  # type: ignore[attr-defined]
                                                              MonitoringAlert.id.desc()).limit(limit)).all())  # type: ignore[union-attr]


def list_recalibrations(session: Session, limit: int = 50) -> list[Recalibration]:
    """Recalibration proposals and decisions, newest first."""
    return list(session.exec(select(Recalibration).order_by(Recalibration.id.desc()).limit(limit)).all())  # type: ignore[union-attr]
