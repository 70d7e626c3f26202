"""The node's quarantine, read and resolved by operators (`priorwatch status`, `priorwatch
quarantine`, the dashboard's operations page). The node writes it (`dicom_node.quarantine`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from priorwatch.models import AuditLog, QuarantinedInstance, utcnow


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One refused instance as an operator sees it: which identifiers differ, never values."""

    id: int
    received_at: datetime
    study_uid: str
    held_study_id: int | None
    calling_ae: str
    differs: str
    attempts: int


def open_items(s: Session) -> list[Quarantined]:
    """Unresolved quarantined instances, newest first."""
    rows = s.exec(select(QuarantinedInstance).where(col(QuarantinedInstance.resolved_at).is_(None))
                  .order_by(col(QuarantinedInstance.id).desc())).all()
    return [Quarantined(r.id or 0, r.received_at, r.study_uid, r.held_study_id, r.calling_ae, r.differs, r.attempts)
            for r in rows]


def resolve(s: Session, item_id: int, user: str) -> bool:
    """Mark a quarantined instance dealt with (its file stays, for the record); audited."""
    now = utcnow()
    done = s.exec(update(QuarantinedInstance)  # type: ignore[call-overload]
                  .where(col(QuarantinedInstance.id) == item_id, col(QuarantinedInstance.resolved_at).is_(None))
                  .values(resolved_at=now, resolved_by=user[:64])).rowcount
    if done:
        held = s.get(QuarantinedInstance, item_id)
        s.add(AuditLog(at=now, user=user[:64], action="quarantine_resolved",
                       study_id=held.held_study_id if held else None, detail=json.dumps({"quarantine_id": item_id})))
    return bool(done)
