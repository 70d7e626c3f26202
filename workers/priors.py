"""Prior selection from the node's own store: the most recent comparable earlier study.

A real PACS comes in its own issue; this policy is the part that stays the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlmodel import Session, select

from priorwatch.models import Instance, Study

# Modalities that image the same thing the same way: a CR chest and a DX chest compare.
_MODALITY_GROUPS: dict[str, str] = {"CR": "XR", "DX": "XR", "DR": "XR"}

_IMAGE_SKIP_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # structured reports are not images
_FRONTAL = ("PA", "AP")


class PriorChoice(BaseModel):
    prior_id: int | None
    reason: str | None = None  # why there is no prior
    interval_days: int | None = None


def comparable(a: Study, b: Study) -> bool:
    ma, mb = (_MODALITY_GROUPS.get(a.modality, a.modality), _MODALITY_GROUPS.get(b.modality, b.modality))
    if ma != mb:
        return False
    pa, pb = a.body_part.upper().strip(), b.body_part.upper().strip()
    return not pa or not pb or pa == pb


def when(study: Study) -> datetime:
    """When a study was acquired: its study date/time, else when we first received it."""
    if study.study_datetime:
        return study.study_datetime
    if study.study_date:
        return datetime.combine(study.study_date, datetime.min.time())
    return study.first_received_at


def choose_prior(session: Session, current: Study, lookback_days: int) -> PriorChoice:
    """Same patient and issuer, comparable modality and body part, earlier, within look-back."""
    candidates = session.exec(
        select(Study).where(
            Study.patient_id == current.patient_id,
            Study.issuer == current.issuer,
            Study.id != current.id,
        )
    ).all()
    if not candidates:
        return PriorChoice(prior_id=None, reason="no earlier study for this patient")
    cur_when = when(current)
    earlier = [s for s in candidates if when(s) < cur_when]
    if not earlier:
        return PriorChoice(prior_id=None, reason="no earlier study for this patient")
    comp = [s for s in earlier if comparable(current, s)]
    if not comp:
        return PriorChoice(prior_id=None, reason="no comparable earlier study (modality/body part)")
    window = [s for s in comp if cur_when - when(s) <= timedelta(days=lookback_days)]
    if not window:
        return PriorChoice(prior_id=None, reason=f"no comparable study within {lookback_days} days")
    best = max(window, key=when)
    return PriorChoice(prior_id=best.id, interval_days=(cur_when - when(best)).days)


def frontal_instance(session: Session, study_id: int, up_to_version: int | None = None) -> Instance | None:
    """The image to compare: a PA/AP view if there is one, else the first image."""
    q = select(Instance).where(Instance.study_id == study_id).order_by(Instance.id)
    if up_to_version is not None:
        q = q.where(Instance.study_version <= up_to_version)
    images = [i for i in session.exec(q).all() if not i.sop_class_uid.startswith(_IMAGE_SKIP_PREFIX)]
    if not images:
        return None
    for inst in images:
        if inst.view_position.upper() in _FRONTAL:
            return inst
    return images[0]
