"""Prior selection from the node's own store: the most recent comparable earlier study.

A real PACS comes in its own issue; this policy is the part that stays the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel
from sqlmodel import Session, select

from priorwatch.identity import PatientIdentity, conflicts
from priorwatch.instances import frontal_instance  # noqa: F401 - the worker's image rule, shared with the dashboard
from priorwatch.models import Study

# Modalities that image the same thing the same way: a CR chest and a DX chest compare.
_MODALITY_GROUPS: dict[str, str] = {"CR": "XR", "DX": "XR", "DR": "XR"}


class PriorChoice(BaseModel):
    prior_id: int | None
    reason: str | None = None  # why there is no prior
    interval_days: int | None = None


def comparable(modality: str, body_part: str, other_modalities: list[str], other_body_part: str) -> bool:
    """A CR chest and a DX chest compare; a CT head and a CR chest do not. An unknown body part
    does not rule a study out."""
    group = _MODALITY_GROUPS.get(modality, modality)
    if not any(_MODALITY_GROUPS.get(m, m) == group for m in other_modalities):
        return False
    a, b = body_part.upper().strip(), other_body_part.upper().strip()
    return not a or not b or a == b


def when(study: Study) -> datetime:
    """When a study was acquired: its study date/time, else when we first received it."""
    if study.study_datetime:
        return study.study_datetime
    if study.study_date:
        return datetime.combine(study.study_date, datetime.min.time())
    return study.first_received_at


T = TypeVar("T")


def select_comparable(current: Study, candidates: list[tuple[T, datetime | None, list[str], str]],
                      lookback_days: int, where: str = "") -> tuple[list[T], str | None]:
    """The prior policy, for the local store and the PACS alike: earlier, comparable, within the
    look-back; returns the candidates oldest to newest (the last is the prior, the first the
    baseline) or the reason there is none. Candidates are (item, when, modalities, body part)."""
    cur = when(current)
    earlier = [c for c in candidates if c[1] is not None and c[1] < cur]
    if not earlier:
        return [], f"no earlier study for this patient{where}"
    comp = [c for c in earlier if comparable(current.modality, current.body_part, c[2], c[3])]
    if not comp:
        return [], f"no comparable earlier study{where} (modality/body part)"
    window = [c for c in comp if cur - c[1] <= timedelta(days=lookback_days)]  # type: ignore[operator]
    if not window:
        return [], f"no comparable study{where} within {lookback_days} days"
    window.sort(key=lambda c: c[1])  # type: ignore[arg-type,return-value]
    return [c[0] for c in window], None


def patient_identity(study: Study) -> PatientIdentity:
    return PatientIdentity(study.patient_id, study.issuer or "", study.patient_name or "", study.patient_birth_date)


def choose_prior(session: Session, current: Study, lookback_days: int) -> PriorChoice:
    """The most recent comparable earlier study of the same patient and issuer in our store."""
    others = session.exec(
        select(Study).where(
            Study.patient_id == current.patient_id,
            Study.issuer == current.issuer,
            Study.id != current.id,
        )
    ).all()
    # Same ID and issuer but another name or birth date: another person (the node's rule).
    mine = patient_identity(current)
    others = [s for s in others if not conflicts(mine, patient_identity(s))]
    chosen, reason = select_comparable(
        current, [(s, when(s), [s.modality], s.body_part) for s in others], lookback_days
    )
    if not chosen:
        return PriorChoice(prior_id=None, reason=reason)
    best = chosen[-1]
    return PriorChoice(prior_id=best.id, interval_days=(when(current) - when(best)).days)
