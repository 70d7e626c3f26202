"""Quarantine: where an instance goes when its study is held for another patient.

Refusing alone would lose the evidence an operator needs (which modality reused the UID, what
it sent); filing it would put one patient's image in another's study. So the file the node
already made durable in the spool is moved, unread, to `<data dir>/quarantine/`, listed in the
`quarantine` table (no identifiers' values: only which ones differ) and audited; the C-STORE is
answered with a failure so the sender's log shows the refusal. A re-send of the same instance
counts an attempt on its row instead of a second copy.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection, Engine

from priorwatch.log import phi_safe
from priorwatch.models import AuditLog, QuarantinedInstance, utcnow
from priorwatch.settings import Settings

from dicom_node.index import PatientMismatch, with_retry
from dicom_node.spool import FOLDER_MODE, copy_new, fsync_dir

log = logging.getLogger(__name__)

FOLDER = "quarantine"  # under the data dir, beside the spool (same file system: a rename)
AUDIT_USER = "node"  # audit rows written by the DICOM node itself, not a person
AUDIT_ACTION = "quarantine"

q_t = QuarantinedInstance.__table__  # type: ignore[attr-defined]
audit_t = AuditLog.__table__  # type: ignore[attr-defined]


def folder(settings: Settings) -> Path:
    return Path(settings.data_dir) / FOLDER


def comment(differs: tuple[str, ...]) -> str:
    """The C-STORE ErrorComment (LO, 64 characters): which identifiers differ, never values."""
    return f"refused: other patient's study ({'/'.join(differs)})"[:64]  # <= 58 with all four


def quarantine(engine: Engine, settings: Settings, *, spool_path: Path, size: int, sop_instance_uid: str,
               study_uid: str, calling_ae: str, role: str, mismatch: PatientMismatch) -> None:
    """Move the spooled file into quarantine and record it (one row per instance, re-sends
    counted). Raises OSError / database errors: the caller still refuses the instance."""
    dest_dir = folder(settings)
    dest_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    dest = dest_dir / spool_path.name
    try:
        os.replace(spool_path, dest)
    except OSError:  # another file system: copy durably (0600, as spooled), then drop the spool copy
        copy_new(spool_path, dest)
        spool_path.unlink(missing_ok=True)
    fsync_dir(dest_dir)
    differs = ",".join(mismatch.differs)

    def txn(conn: Connection) -> bool:
        now = utcnow()
        existing = conn.execute(select(q_t.c.id).where(and_(
            q_t.c.sop_instance_uid == sop_instance_uid, q_t.c.study_uid == study_uid, q_t.c.resolved_at.is_(None)))
        ).first()
        if existing is not None:
            conn.execute(update(q_t).where(q_t.c.id == existing[0]).values(attempts=q_t.c.attempts + 1))
            return False
        conn.execute(insert(q_t).values(
            received_at=now, sop_instance_uid=sop_instance_uid, study_uid=study_uid, held_study_id=mismatch.study_id,
            calling_ae=calling_ae[:16], role=role[:16], reason="patient_mismatch", differs=differs[:64],
            path=str(dest), size=size, attempts=1))
        conn.execute(insert(audit_t).values(
            at=now, user=AUDIT_USER, action=AUDIT_ACTION, study_id=mismatch.study_id,
            detail=json.dumps({"sop_instance_uid": sop_instance_uid, "calling_ae": calling_ae, "differs": differs,
                               "file": dest.name})))
        return True

    first = with_retry(engine, txn, what="quarantine")
    if not first:
        dest.unlink(missing_ok=True)  # the first copy is the one listed
    log.warning("quarantined instance %s from %s: its study (id %d) is held for another patient (%s differ)",
                phi_safe(sop_instance_uid), calling_ae or "-", mismatch.study_id, differs)
