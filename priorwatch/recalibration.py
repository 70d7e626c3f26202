"""Applying and deciding reviewed recalibrations of the engine's confidence (issue 30).

Monitoring fits and proposes a per-finding-type Platt map (`monitoring.recalibration`); nothing
changes until an admin accepts it here. The worker reads the one accepted row when it stores a
result (one small indexed read) and maps each finding's confidence, keeping the raw value, and
tags the result's model version with "+cal<version>", so every later result says which map made
its numbers. Rejecting changes nothing; reverting restores the map the reverted one replaced.
Every decision is an audit row. Lives in the shared core because both the worker (apply) and the
dashboard and CLI (decide) need it, and neither may import the other.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from sqlmodel import Session, select

from priorwatch.limits import column_limits
from priorwatch.models import AuditLog, Comparison, Recalibration, User, utcnow
from priorwatch.vocabulary import ComparisonResult

__all__ = ["TAG", "RecalibrationError", "active", "apply_map", "calibrated", "apply_to_result", "tag_version",
           "accept", "reject", "revert", "DECIDER_ROLE"]

TAG = "+cal"  # model-version suffix: "<engine's model version>+cal<version>"
DECIDER_ROLE = "admin"  # only an admin may change what every later result's confidence means
_EPS = 1e-4  # keeps logit finite at confidence 0 or 1
_CONF_RE = re.compile(r"\(confidence (\d\.\d\d)")  # how comparison.draft writes a finding's confidence


class RecalibrationError(ValueError):
    """A decision that cannot be made (unknown id, wrong state, not an admin)."""


def apply_map(raw: float, a: float, b: float) -> float:
    """Platt map of one confidence: sigmoid(a * logit(raw) + b), in [0, 1]."""
    p = min(max(float(raw), _EPS), 1 - _EPS)
    z = a * math.log(p / (1 - p)) + b
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def calibrated(params: dict[str, Any], finding: str, raw: float) -> float:
    """The confidence shown for a finding of this type (its raw one when the type has no map)."""
    m = params.get(str(finding))
    return float(raw) if not m else apply_map(raw, float(m["a"]), float(m["b"]))


def active(session: Session) -> Recalibration | None:
    """The accepted recalibration, if any (at most one is accepted at a time)."""
    return session.exec(select(Recalibration).where(Recalibration.status == "accepted")
                        .order_by(Recalibration.id.desc())).first()  # type: ignore[union-attr]


def tag_version(model_version: str, version: int) -> str:
    """The model version with its calibration tag, cut (base first) to fit Comparison.model_version."""
    tag = f"{TAG}{version}"
    limit = column_limits(Comparison).get("model_version", 64)
    return model_version[: max(0, limit - len(tag))] + tag


def apply_to_result(result: ComparisonResult, recal: Recalibration) -> tuple[ComparisonResult, list[float]]:
    """(the result with calibrated confidences and tagged model version, the raw confidences).
    The draft's "(confidence x.xx" figures are rewritten when they match the findings one for one
    (urgent first, as the draft lists them); otherwise a note says the figures are raw."""
    params = json.loads(recal.params_json or "{}")
    raws = [f.confidence for f in result.findings]
    findings = [f.model_copy(update={"confidence": round(calibrated(params, str(f.finding), f.confidence), 4)})
                for f in result.findings]
    order = [i for i, f in enumerate(findings) if f.urgent] + [i for i, f in enumerate(findings) if not f.urgent]
    found = _CONF_RE.findall(result.draft_text)
    draft = result.draft_text
    notes = list(result.notes)
    if found and len(found) == len(order) and all(found[k] == f"{raws[i]:.2f}" for k, i in enumerate(order)):
        it = iter(order)
        draft = _CONF_RE.sub(lambda m: f"(confidence {findings[next(it)].confidence:.2f}", draft)
    elif found:
        notes.append(f"Confidence figures in the text are the engine's raw ones; the findings carry "
                     f"recalibrated ones (calibration {recal.version}).")
    notes.append(f"Confidence recalibrated (calibration {recal.version}, accepted by {recal.decided_by}).")
    out = result.model_copy(update={"findings": findings, "draft_text": draft, "notes": notes,
                                    "model_version": tag_version(result.model_version, recal.version)})
    return out, raws


def _audit(session: Session, user: str, action: str, recal: Recalibration, **extra: Any) -> None:
    detail = {"recalibration_id": recal.id, "version": recal.version, **extra}
    session.add(AuditLog(user=user, action=action, detail=json.dumps(detail, sort_keys=True)))


def _decider(session: Session, user: str) -> None:
    role = session.exec(select(User.role).where(User.username == user)).first()
    if role != DECIDER_ROLE:
        raise RecalibrationError(f"only an {DECIDER_ROLE} may decide on a recalibration ({user!r} is {role or 'unknown'})")


def _get(session: Session, recal_id: int, want: str) -> Recalibration:
    recal = session.get(Recalibration, recal_id)
    if recal is None:
        raise RecalibrationError(f"no recalibration {recal_id}")
    if recal.status != want:
        raise RecalibrationError(f"recalibration {recal_id} is {recal.status}, not {want}")
    return recal


def accept(session: Session, recal_id: int, user: str, note: str | None = None) -> Recalibration:
    """Accept a proposal: it applies to every result stored from now on; the one it replaces is superseded."""
    _decider(session, user)
    recal = _get(session, recal_id, "proposed")
    prev = active(session)
    now = utcnow()
    if prev is not None:
        prev.status = "superseded"
        session.add(prev)
        _audit(session, user, "recal_supersede", prev, by=recal.id)
    recal.status, recal.decided_by, recal.decided_at, recal.decision_note = "accepted", user, now, note
    recal.supersedes_id = prev.id if prev is not None else None
    session.add(recal)
    _audit(session, user, "recal_accept", recal, supersedes=recal.supersedes_id)
    session.flush()
    return recal


def reject(session: Session, recal_id: int, user: str, note: str | None = None) -> Recalibration:
    """Reject a proposal: nothing applied changes."""
    _decider(session, user)
    recal = _get(session, recal_id, "proposed")
    recal.status, recal.decided_by, recal.decided_at, recal.decision_note = "rejected", user, utcnow(), note
    session.add(recal)
    _audit(session, user, "recal_reject", recal)
    session.flush()
    return recal


def revert(session: Session, recal_id: int, user: str, note: str | None = None) -> Recalibration | None:
    """Take back the accepted recalibration; the one it superseded (if any) applies again. Returns that one."""
    _decider(session, user)
    recal = _get(session, recal_id, "accepted")
    recal.status, recal.decided_by, recal.decided_at, recal.decision_note = "reverted", user, utcnow(), note
    session.add(recal)
    restored = session.get(Recalibration, recal.supersedes_id) if recal.supersedes_id else None
    if restored is not None:
        restored.status = "accepted"
        session.add(restored)
    _audit(session, user, "recal_revert", recal, restored=restored.id if restored else None)
    session.flush()
    return restored
