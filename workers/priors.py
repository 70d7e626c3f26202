"""Prior selection from the node's own store: the most recent comparable earlier study, and the
relevant history around it (issue 29): the baseline (the oldest comparable study within the
horizon) and at most a few studies between, spread evenly in time, each with its reason.

The same policy picks from a PACS's answers (`workers.fetch`): `select_comparable` and
`pick_history` take any items with a time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from pydantic import BaseModel
from sqlmodel import Session, select

from priorwatch.identity import PatientIdentity, conflicts
from priorwatch.instances import frontal_instance  # noqa: F401 - the worker's image rule, shared with the dashboard
from priorwatch.models import Study
from priorwatch.settings import Settings
from priorwatch.vocabulary import PriorRole

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


def _same_patient(session: Session, current: Study) -> list[Study]:
    """The patient's other studies in our store: same ID and issuer, and not another person by name or
    birth date (the node's rule)."""
    others = session.exec(select(Study).where(
        Study.patient_id == current.patient_id, Study.issuer == current.issuer, Study.id != current.id)).all()
    mine = patient_identity(current)
    return [s for s in others if not conflicts(mine, patient_identity(s))]


def choose_prior(session: Session, current: Study, lookback_days: int) -> PriorChoice:
    """The most recent comparable earlier study of the same patient and issuer in our store."""
    chosen, reason = select_comparable(
        current, [(s, when(s), [s.modality], s.body_part) for s in _same_patient(session, current)], lookback_days
    )
    if not chosen:
        return PriorChoice(prior_id=None, reason=reason)
    best = chosen[-1]
    return PriorChoice(prior_id=best.id, interval_days=(when(current) - when(best)).days)


class Picked(BaseModel, Generic[T]):
    """One study of the relevant history and why it is there."""

    item: T
    when: datetime
    role: PriorRole
    reason: str


def pick_history(window: list[T], when_of: Callable[[T], datetime], current: datetime, horizon_days: int,
                 max_between: int) -> list[Picked[T]]:
    """The relevant history from the comparable earlier studies `window` (oldest first): the most recent,
    the oldest within `horizon_days` of `current` as the baseline, and at most `max_between` between them,
    each the one nearest to evenly spaced times between the two. Oldest first."""
    if not window:
        return []
    recent = window[-1]
    d = when_of(recent)
    out = [Picked[T](item=recent, when=d, role=PriorRole.most_recent,
                     reason=f"most recent comparable study ({d.date().isoformat()})")]
    inside = [c for c in window[:-1] if current - when_of(c) <= timedelta(days=horizon_days)]
    if not inside:
        return out
    base = inside[0]
    b = when_of(base)
    out.insert(0, Picked[T](item=base, when=b, role=PriorRole.baseline, reason=(
        f"baseline: the oldest comparable study within {horizon_days} days ({b.date().isoformat()})")))
    between = list(inside[1:])
    n = min(max_between, len(between))
    for k in range(1, n + 1):
        target = b + (d - b) * k / (n + 1)
        best = min(between, key=lambda c: abs(when_of(c) - target))
        between.remove(best)
        w = when_of(best)
        out.insert(-1, Picked[T](item=best, when=w, role=PriorRole.intermediate, reason=(
            f"between baseline and most recent ({w.date().isoformat()}), the nearest to {target.date().isoformat()}: "
            f"{n} at most {max_between}, spread evenly in time")))
    out[1:-1] = sorted(out[1:-1], key=lambda p: p.when)
    return out


def choose_history(session: Session, current: Study, settings: Settings) -> tuple[list[Picked[Study]], str | None]:
    """The relevant history in our store (`pick_history` over `choose_prior`'s candidates), oldest
    first, or why there is none."""
    chosen, reason = select_comparable(current, [(s, when(s), [s.modality], s.body_part)
                                                 for s in _same_patient(session, current)], settings.lookback_days)
    return pick_history(chosen, when, when(current), settings.history_horizon_days,
                        settings.history_max_between), reason
