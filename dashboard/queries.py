"""What the dashboard reads and writes, with no Streamlit in sight.

The worklist query (urgent first, then by waiting time, with filters), the detail of one
study for the review page, claims, autosaved drafts and the audit log; recording a
radiologist's decision is `dashboard.signoff`. Every function takes an open session; the
caller owns the transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import case, or_, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from priorwatch import models
from priorwatch.instances import frontal_instance
from priorwatch.models import (
    AuditLog,
    Comparison,
    Finding,
    Instance,
    Review,
    ReviewDraft,
    SignOff,
    Study,
    WorklistItem,
    WorklistStatus,
    utcnow,
)

OPEN_STATUSES: tuple[str, ...] = (WorklistStatus.pending.value, WorklistStatus.in_review.value)
ALL_STATUSES: tuple[str, ...] = tuple(s.value for s in WorklistStatus)
REVIEW_ACTIONS: tuple[str, ...] = ("accepted", "edited", "rejected")
# Which change matters most when picking a study's "top finding".
CHANGE_RANK = {"new": 0, "worsened": 1, "no_prior": 2, "stable": 3, "improved": 4, "resolved": 5}


class ReviewError(ValueError):
    """A review could not be recorded (bad input, or the item was already decided)."""


# ---------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------
def age_at(birth: date | None, on: date | None) -> int | None:
    if birth is None or on is None:
        return None
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def format_age_sex(birth: date | None, on: date | None, sex: str) -> str:
    age = age_at(birth, on)
    parts = [f"{age} y" if age is not None else "", (sex or "").strip().upper()[:1]]
    return " ".join(p for p in parts if p) or "—"


def format_interval(days: int | None) -> str:
    if days is None:
        return "—"
    if days < 61:
        return f"{days} d"
    if days < 730:
        return f"{round(days / 30.44)} mo"
    years, rem = divmod(days, 365.25)
    months = round(rem / 30.44)
    return f"{int(years)} y {months} mo" if months else f"{int(years)} y"


def format_waiting(since: datetime, now: datetime) -> str:
    secs = max(0, int((now - since).total_seconds()))
    if secs < 3600:
        return f"{secs // 60} min"
    if secs < 86400:
        return f"{secs // 3600} h {secs % 3600 // 60:02d} min"
    return f"{secs // 86400} d {secs % 86400 // 3600} h"


def finding_label(f: Finding | dict[str, Any]) -> str:
    g = (lambda k: f.get(k)) if isinstance(f, dict) else (lambda k: getattr(f, k))
    where = " ".join(x for x in (g("side"), g("zone")) if x)
    name = str(g("finding")).replace("_", " ")
    return f"{name} ({where})" if where else name


def top_finding(findings: list[Finding]) -> Finding | None:
    if not findings:
        return None
    return sorted(
        findings, key=lambda f: (not f.urgent, CHANGE_RANK.get(f.change, 9), -f.confidence)
    )[0]


def study_label(study: Study) -> str:
    desc = study.description or study.body_part or "study"
    d = study.study_date.isoformat() if study.study_date else "date unknown"
    return f"{study.modality or '?'} {desc} · {d}"


# ---------------------------------------------------------------------------------------
# Worklist
# ---------------------------------------------------------------------------------------
@dataclass
class WorklistFilters:
    statuses: tuple[str, ...] = OPEN_STATUSES
    urgency: str = "all"  # all | urgent | routine
    modalities: tuple[str, ...] = ()  # empty: all
    sites: tuple[str, ...] = ()  # empty: all


def filter_options(session: Session) -> dict[str, list[str]]:
    """Distinct modalities and sites among studies on the worklist (for filter widgets)."""
    rows = session.exec(
        select(Study.modality, Study.institution)
        .join(WorklistItem, WorklistItem.study_id == Study.id)
        .distinct()
    ).all()
    return {
        "modalities": sorted({m for m, _ in rows if m}),
        "sites": sorted({s for _, s in rows if s}),
    }


def worklist(
    session: Session, filters: WorklistFilters | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Worklist rows: urgent first, then by waiting time (longest waiting first)."""
    f = filters or WorklistFilters()
    now = now or utcnow()
    q = (
        select(WorklistItem, Comparison, Study)
        .join(Comparison, Comparison.id == WorklistItem.comparison_id)
        .join(Study, Study.id == WorklistItem.study_id)
    )
    if f.statuses:
        q = q.where(WorklistItem.status.in_(list(f.statuses)))  # type: ignore[attr-defined]
    if f.urgency == "urgent":
        q = q.where(Comparison.urgent == True)  # noqa: E712
    elif f.urgency == "routine":
        q = q.where(Comparison.urgent == False)  # noqa: E712
    if f.modalities:
        q = q.where(Study.modality.in_(list(f.modalities)))  # type: ignore[attr-defined]
    if f.sites:
        q = q.where(Study.institution.in_(list(f.sites)))  # type: ignore[attr-defined]
    q = q.order_by(
        case((Comparison.urgent == True, 0), else_=1),  # noqa: E712
        WorklistItem.priority,
        WorklistItem.created_at,
        WorklistItem.id,
    )
    rows = session.exec(q).all()
    if not rows:
        return []
    comp_ids = [c.id for _, c, _ in rows]
    by_comp: dict[int, list[Finding]] = {}
    for fd in session.exec(select(Finding).where(Finding.comparison_id.in_(comp_ids))).all():  # type: ignore[attr-defined]
        by_comp.setdefault(fd.comparison_id, []).append(fd)
    prior_ids = {c.prior_study_id for _, c, _ in rows if c.prior_study_id}
    priors = (
        {s.id: s for s in session.exec(select(Study).where(Study.id.in_(prior_ids))).all()}  # type: ignore[union-attr]
        if prior_ids
        else {}
    )
    out: list[dict[str, Any]] = []
    for item, comp, study in rows:
        prior = priors.get(comp.prior_study_id) if comp.prior_study_id else None
        top = top_finding(by_comp.get(comp.id, []))
        out.append(
            {
                "item_id": item.id,
                "comparison_id": comp.id,
                "study_id": study.id,
                "urgent": bool(comp.urgent),
                "patient": f"{study.patient_name or '—'} ({study.patient_id})",
                "age_sex": format_age_sex(study.patient_birth_date, study.study_date, study.patient_sex),
                "study": study_label(study),
                "accession": study.accession,
                "modality": study.modality,
                "site": study.institution,
                "prior_date": prior.study_date.isoformat() if prior and prior.study_date else "—",
                "interval": format_interval(comp.interval_days)
                if comp.prior_study_id
                else "no prior",
                "top_finding": finding_label(top) if top else "no finding",
                "change": top.change if top else "—",
                "confidence": round(top.confidence, 2) if top else None,
                "status": item.status,
                "claimed_by": item.claimed_by if claim_live(item, now) else None,
                "claimed_at": item.claimed_at if claim_live(item, now) else None,
                "waiting": format_waiting(item.created_at, now),
                "created_at": item.created_at,
            }
        )
    return out


# ---------------------------------------------------------------------------------------
# Study detail
# ---------------------------------------------------------------------------------------
@dataclass
class StudyDetail:
    item: WorklistItem
    comparison: Comparison
    study: Study
    prior: Study | None
    findings: list[Finding]
    current_instance: Instance | None
    prior_instance: Instance | None
    prior_report: str | None
    reviews: list[Review] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.item.status in OPEN_STATUSES


def patient_priors(session: Session, study: Study) -> list[tuple[Study, Instance]]:
    """The patient's earlier studies that have an image (the engine's image rule), newest first."""
    q = select(Study).where(Study.patient_id == study.patient_id, Study.id != study.id)
    out: list[tuple[Study, Instance]] = []
    for p in session.exec(q).all():
        if study.study_date and p.study_date and p.study_date > study.study_date:
            continue
        inst = frontal_instance(session, p.id)  # type: ignore[arg-type]
        if inst is not None:
            out.append((p, inst))
    out.sort(key=lambda t: (t[0].study_date or date.min), reverse=True)
    return out


def prior_report(session: Session, prior_study_id: int | None, comp: Comparison | None = None) -> str | None:
    """The prior's report: its latest signed report (HL7 or review page), else the SR report the
    pipeline found in the prior study, else the final text of the prior's own review."""
    if prior_study_id is None:
        return None
    signed = session.exec(
        select(models.SignedReport).where(models.SignedReport.study_id == prior_study_id)
        .order_by(models.SignedReport.id.desc())  # type: ignore[union-attr]
    ).first()
    if signed is not None and signed.text:
        return signed.text
    if comp is not None and comp.prior_report:
        return comp.prior_report
    rev = session.exec(
        select(Review)
        .join(Comparison, Comparison.id == Review.comparison_id)
        .where(Comparison.study_id == prior_study_id)
        .where(Review.action.in_(["accepted", "edited"]))  # type: ignore[attr-defined]
        .order_by(Review.finished_at.desc())  # type: ignore[attr-defined]
    ).first()
    return rev.final_text if rev and rev.final_text else None


def study_detail(session: Session, item_id: int) -> StudyDetail | None:
    item = session.get(WorklistItem, item_id)
    if item is None:
        return None
    comp = session.get(Comparison, item.comparison_id)
    study = session.get(Study, item.study_id)
    if comp is None or study is None:
        return None
    prior = session.get(Study, comp.prior_study_id) if comp.prior_study_id else None
    findings = list(
        session.exec(
            select(Finding).where(Finding.comparison_id == comp.id).order_by(Finding.id)
        ).all()
    )
    findings.sort(key=lambda f: (not f.urgent, CHANGE_RANK.get(f.change, 9), -f.confidence))
    reviews = list(
        session.exec(select(Review).where(Review.worklist_item_id == item.id).order_by(Review.id)).all()
    )
    return StudyDetail(
        item=item,
        comparison=comp,
        study=study,
        prior=prior,
        findings=findings,
        current_instance=frontal_instance(session, study.id, comp.study_version),  # type: ignore[arg-type]  # the engine's image
        prior_instance=frontal_instance(session, prior.id) if prior else None,  # type: ignore[arg-type]
        prior_report=prior_report(session, prior.id if prior else None, comp),
        reviews=reviews,
    )


# ---------------------------------------------------------------------------------------
# Audit and reviews
# ---------------------------------------------------------------------------------------
def audit(
    session: Session,
    user: str,
    action: str,
    study_id: int | None = None,
    detail: dict[str, Any] | str | None = None,
) -> AuditLog:
    """One audit row. `detail` must carry no PHI (ids, labels, counts only)."""
    text = json.dumps(detail, sort_keys=True) if isinstance(detail, dict) else detail
    row = AuditLog(user=user, action=action, study_id=study_id, detail=text)
    session.add(row)
    session.flush()
    return row


def claim_live(item: WorklistItem, now: datetime | None = None) -> bool:
    """Someone holds an unexpired claim on the item."""
    now = now or utcnow()
    return bool(item.claimed_by) and item.claim_expires_at is not None and item.claim_expires_at > now


@dataclass(frozen=True)
class ClaimResult:
    mine: bool  # the caller holds the claim now
    holder: str | None  # who holds it (the caller, someone else, or nobody: closed item)
    since: datetime | None


def open_condition():  # type: ignore[no-untyped-def]
    """SQL: the item is still open (pending or in review); claims and sign-off both test it."""
    return WorklistItem.status.in_(list(OPEN_STATUSES))  # type: ignore[attr-defined]


def claim(session: Session, item_id: int, user: str, ttl_s: float, *, take_over: bool = False) -> ClaimResult:
    """Claim an open item for `user` (or renew their claim). One conditional UPDATE: it succeeds
    only if nobody else holds a live claim, unless `take_over` (an explicit, audited act).
    The caller commits; the claim is the database's, never the page's belief."""
    now = utcnow()
    cond = [WorklistItem.id == item_id, open_condition()]
    if not take_over:
        cond.append(
            or_(
                WorklistItem.claimed_by.is_(None),  # type: ignore[union-attr]
                WorklistItem.claimed_by == user,
                WorklistItem.claim_expires_at < now,  # type: ignore[operator, arg-type]
            )
        )
    previous: str | None = None
    if take_over:  # who loses it, for the audit (a rare, explicit act: a read first is fine)
        cur = session.get(WorklistItem, item_id)
        previous = cur.claimed_by if cur is not None and claim_live(cur, now) else None
    mine_live = (WorklistItem.claimed_by == user) & (WorklistItem.claim_expires_at > now)  # type: ignore[operator]
    values: dict[str, Any] = {
        "claimed_by": user,
        "claimed_at": case((mine_live, WorklistItem.claimed_at), else_=now),
        "claim_expires_at": now + _td(ttl_s),
        "status": WorklistStatus.in_review.value,
    }
    try:
        res = session.execute(update(WorklistItem).where(*cond).values(**values))
    except OperationalError:  # SQLite: a concurrent writer moved the item under our snapshot
        session.rollback()
        res = None
    session.expire_all()
    item = session.get(WorklistItem, item_id)
    if item is None:
        return ClaimResult(False, None, None)
    if res is not None and res.rowcount == 1:  # type: ignore[attr-defined]
        if take_over and previous and previous != user:
            audit(session, user, "claim_takeover", item.study_id, {"worklist_item_id": item_id, "from": previous})
        return ClaimResult(True, user, item.claimed_at)
    return ClaimResult(False, item.claimed_by if claim_live(item, now) else None, item.claimed_at)


def release_claim(session: Session, item_id: int, user: str) -> bool:
    """Give up `user`'s claim (leave the study, log out): the item is pending again."""
    res = session.execute(
        update(WorklistItem)
        .where(WorklistItem.id == item_id, WorklistItem.claimed_by == user, open_condition())
        .values(claimed_by=None, claimed_at=None, claim_expires_at=None, status=WorklistStatus.pending.value)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def release_all_claims(session: Session, user: str) -> int:
    res = session.execute(
        update(WorklistItem)
        .where(WorklistItem.claimed_by == user, open_condition())
        .values(claimed_by=None, claimed_at=None, claim_expires_at=None, status=WorklistStatus.pending.value)
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def _td(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(seconds=seconds)


def open_review(session: Session, item_id: int, user: str, session_id: int | None = None) -> StudyDetail | None:
    """Load an item for review and log the view (the claim is `claim`'s business)."""
    detail = study_detail(session, item_id)
    if detail is None:
        return None
    audit(session, user, "view", detail.study.id, {"worklist_item_id": item_id, "session": session_id})
    return detail


def sign_off(session: Session, comparison_id: int) -> SignOff | None:
    return session.get(SignOff, comparison_id)


# ---------------------------------------------------------------------------------------
# Drafts being edited (autosaved per user)
# ---------------------------------------------------------------------------------------
MAX_DRAFT_CHARS = 20_000  # far beyond any chest report; bounds what a browser can make us store


def save_draft(session: Session, user: str, item_id: int, text: str, state: dict[str, Any] | None = None) -> None:
    if len(text) > MAX_DRAFT_CHARS:
        raise ReviewError(f"the draft is longer than {MAX_DRAFT_CHARS} characters")
    row = session.exec(
        select(ReviewDraft).where(ReviewDraft.username == user, ReviewDraft.worklist_item_id == item_id)
    ).first()
    if row is None:
        row = ReviewDraft(username=user, worklist_item_id=item_id)
    row.text = text
    if state is not None:
        row.state_json = json.dumps(state, sort_keys=True)
    row.updated_at = utcnow()
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same user's other tab saved first: update theirs
        session.rollback()
        save_draft(session, user, item_id, text, state)


def load_draft(session: Session, user: str, item_id: int) -> ReviewDraft | None:
    return session.exec(
        select(ReviewDraft).where(ReviewDraft.username == user, ReviewDraft.worklist_item_id == item_id)
    ).first()


def drop_drafts(session: Session, item_id: int) -> None:
    for row in session.exec(select(ReviewDraft).where(ReviewDraft.worklist_item_id == item_id)).all():
        session.delete(row)


def audit_export(user: str, what: str, session_id: int | None) -> None:
    """A download button's on_click: every export leaves an audit row with its session."""
    from priorwatch.db import session_scope

    with session_scope() as s:
        audit(s, user, "export", detail={"what": what, "session": session_id})


def acknowledge_alert(session: Session, alert_id: int, user: str) -> models.MonitoringAlert | None:
    """A QA user has seen an alert and acts on it: recorded once, with who and when, and audited."""
    alert = session.get(models.MonitoringAlert, alert_id)
    if alert is None or alert.acknowledged:
        return alert
    alert.acknowledged, alert.acknowledged_by, alert.acknowledged_at = True, user, utcnow()
    session.add(alert)
    audit(session, user, "alert_ack", detail={"alert_id": alert_id, "kind": alert.kind})
    return alert
