"""Signing a study: the signed text, the corrected findings and the one decision per comparison.

Streamlit-free like `dashboard.queries` (whose audit, claim and draft helpers it uses): every
function takes an open session and the caller owns the transaction. The sentences come from
`priorwatch.sentences`, the same wording as the AI draft's; the signed report's outbox row uses
`priorwatch.outbox`'s key, the same as the worker's deliveries.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from dashboard.queries import (
    CHANGE_RANK,
    OPEN_STATUSES,
    REVIEW_ACTIONS,
    ReviewError,
    audit,
    claim_live,
    drop_drafts,
    format_interval,
    open_condition,
)
from priorwatch.models import Comparison, Delivery, Finding, Review, SignOff, Study, WorklistItem, utcnow
from priorwatch.outbox import FINAL_SR_KIND, idempotency_key
from priorwatch.sentences import DRAFT_BANNER_PREFIX, change_sentence
from priorwatch.vocabulary import Change, FindingType, Side, Zone

__all__ = [
    "AI_BANNER_PREFIX",
    "AlreadySigned",
    "FINAL_SR_KIND",
    "ReviewError",
    "apply_corrections",
    "label_sentence",
    "model_labels",
    "normalise_label",
    "queue_final_sr",
    "record_review",
    "signed_text",
    "strip_ai_banner",
    "structured_text",
]

AI_BANNER_PREFIX = DRAFT_BANNER_PREFIX


def strip_ai_banner(text: str) -> str:
    """The text without the AI draft's banner sentence (the signed report is the radiologist's)."""
    t = text.strip()
    if t.upper().startswith(AI_BANNER_PREFIX):
        end = t.find(".", len(AI_BANNER_PREFIX))
        end2 = t.find("\n")
        cut = min(x for x in (end, end2) if x >= 0) if max(end, end2) >= 0 else len(t)
        t = t[cut + 1 :].strip()
    return t


def label_sentence(lab: dict[str, Any]) -> str:
    """The draft's own sentence for a label (`priorwatch.sentences`), marked when urgent."""
    sentence = change_sentence(lab["finding"], lab["change"], lab.get("side"), lab.get("zone"))
    return sentence[:-1] + " (urgent)." if lab.get("urgent") else sentence


def structured_text(labels: list[dict[str, Any]], comp: Comparison, prior: Study | None) -> str:
    """Report text regenerated from the (corrected) finding labels, urgent ones first."""
    parts: list[str] = []
    if prior is not None:
        when = prior.study_date.isoformat() if prior.study_date else "an earlier date"
        parts.append(f"Compared with the prior study of {when} ({format_interval(comp.interval_days)}).")
    else:
        parts.append("No prior study was available for comparison.")
    ordered = sorted(labels, key=lambda lab: (not lab.get("urgent"), CHANGE_RANK.get(lab["change"], 9)))
    parts.extend(label_sentence(lab) for lab in ordered)
    if not labels:
        parts.append("No significant interval change." if prior is not None else "No acute finding.")
    return " ".join(parts)


def signed_text(body: str, signer: str, signed_at: datetime) -> str:
    """The final text: the radiologist's body (no AI banner) and who signed, when."""
    return f"{strip_ai_banner(body)}\n\nSigned by {signer} on {signed_at:%Y-%m-%d %H:%M} UTC."


def model_labels(findings: list[Finding]) -> list[dict[str, Any]]:
    return [
        {"finding": f.finding, "side": f.side, "zone": f.zone, "change": f.change, "urgent": bool(f.urgent)}
        for f in findings
    ]


def normalise_label(label: dict[str, Any]) -> dict[str, Any]:
    """A final label in the vocabulary: {finding, side, zone, change, urgent}."""
    try:
        finding = FindingType(label["finding"]).value
        change = Change(label["change"]).value
        side = Side(label["side"]).value if label.get("side") else None
        zone = Zone(label["zone"]).value if label.get("zone") else None
    except (KeyError, ValueError) as exc:
        raise ReviewError(f"finding label outside the vocabulary: {exc}") from None
    return {"finding": finding, "side": side, "zone": zone, "change": change, "urgent": bool(label.get("urgent"))}


def apply_corrections(
    findings: list[Finding],
    wrong_ids: set[int] | frozenset[int] = frozenset(),
    relabel: dict[int, dict[str, Any]] | None = None,
    missed: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Final labels: the model's findings minus those marked wrong, with per-finding fixes
    (e.g. a different change or urgency), plus findings the model missed."""
    relabel = relabel or {}
    out: list[dict[str, Any]] = []
    for f in findings:
        if f.id in wrong_ids:
            continue
        lab = model_labels([f])[0]
        lab.update(relabel.get(f.id or -1, {}))
        out.append(normalise_label(lab))
    for m in missed or []:
        out.append(normalise_label(m))
    return out


def queue_final_sr(session: Session, comparison_id: int) -> Delivery | None:
    """The signed report's outbox row, in the sign-off's own transaction, when SRs go to a
    PACS (settings); the sweeper sends it. Its SOP Instance UID is fixed now."""
    from pydicom.uid import generate_uid

    from priorwatch.settings import get_settings

    st = get_settings()
    if not (st.send_sr_to_pacs and st.pacs_ae_title):
        return None
    row = Delivery(comparison_id=comparison_id, kind=FINAL_SR_KIND, sop_instance_uid=generate_uid(),
                   idempotency_key=idempotency_key(comparison_id, FINAL_SR_KIND))
    session.add(row)
    session.flush()
    return row


class AlreadySigned(ReviewError):
    """Someone else signed (or holds) the study: says who, and when."""

    def __init__(self, message: str, signer: str | None = None, signed_at: datetime | None = None) -> None:
        super().__init__(message)
        self.signer, self.signed_at = signer, signed_at


def _loser_error(session: Session, item_id: int, reviewer: str) -> AlreadySigned:
    session.rollback()
    item = session.get(WorklistItem, item_id)
    if item is None:
        return AlreadySigned(f"worklist item {item_id} does not exist")
    so = session.get(SignOff, item.comparison_id)
    if so is not None:
        who = f"{so.signer} (you, in another window)" if so.signer == reviewer else so.signer
        return AlreadySigned(
            f"Already signed by {who} at {so.signed_at:%H:%M:%S} UTC ({item.status}); your decision was not saved.",
            so.signer, so.signed_at,
        )
    if item.status not in OPEN_STATUSES:
        return AlreadySigned(f"This study was already reviewed ({item.status}); your decision was not saved.")
    if claim_live(item):
        return AlreadySigned(
            f"{item.claimed_by} took this study over at {item.claimed_at:%H:%M} UTC; your decision was not saved. "
            "Take it back to sign it."
        )
    return AlreadySigned("The study changed while you were deciding; reload it.")


def _close_item(session: Session, item_id: int, reviewer: str, action: str, finished_at: datetime) -> None:
    """The decision's first statement: close the item if it is open and not claimed by someone
    else, or raise `AlreadySigned`. On SQLite this write takes the write lock before any read,
    so a racing transaction waits and then finds the item closed (no stale snapshot to act on)."""
    try:
        res = session.execute(
            update(WorklistItem)
            .where(
                WorklistItem.id == item_id,
                open_condition(),
                or_(
                    WorklistItem.claimed_by.is_(None),  # type: ignore[union-attr]
                    WorklistItem.claimed_by == reviewer,
                    WorklistItem.claim_expires_at < finished_at,  # type: ignore[operator, arg-type]
                ),
            )
            .values(status=action, claimed_by=None, claimed_at=None, claim_expires_at=None)
        )
    except OperationalError:
        raise _loser_error(session, item_id, reviewer) from None
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise _loser_error(session, item_id, reviewer)


def _audit_decision(session: Session, reviewer: str, action: str, item: WorklistItem, comp: Comparison,
                    review: Review, final_text: str, corrections: dict[str, Any] | None, session_id: int | None) -> None:
    """The decision's audit rows: an `edit` row when the text or findings changed, then accept/reject."""
    text_changed = final_text != comp.draft_text
    if action == "edited" or (action == "rejected" and (text_changed or corrections)):
        audit(
            session,
            reviewer,
            "edit",
            item.study_id,
            {
                "review_id": review.id,
                "text_changed": text_changed,
                "chars_before": len(comp.draft_text),
                "chars_after": len(final_text),
                "session": session_id,
                **(corrections or {}),
            },
        )
    audit(
        session,
        reviewer,
        "reject" if action == "rejected" else "accept",
        item.study_id,
        {"review_id": review.id, "worklist_item_id": item.id, "action": action, "session": session_id},
    )


def record_review(
    session: Session,
    item_id: int,
    reviewer: str,
    action: str,
    final_text: str,
    final_labels: list[dict[str, Any]],
    *,
    reason: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    corrections: dict[str, Any] | None = None,
    session_id: int | None = None,
) -> Review:
    """Store one decision as a Review, close the worklist item and write the audit rows.

    Exactly one decision per comparison, decided by the database: the first statement is a
    conditional UPDATE (open, and not claimed by someone else) and the `SignOff` row's primary
    key is the comparison; a loser gets `AlreadySigned` naming who signed. Accepted and edited
    texts are stored as signed: without the AI banner, with the signer and time."""
    if action not in REVIEW_ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(REVIEW_ACTIONS)}")
    reason = (reason or "").strip() or None
    if action == "rejected" and not reason:
        raise ReviewError("a rejection needs a reason")
    if action != "rejected" and not final_text.strip():
        raise ReviewError("the report text is empty")
    labels = [normalise_label(lab) for lab in final_labels]
    finished_at = finished_at or utcnow()
    _close_item(session, item_id, reviewer, action, finished_at)
    item = session.get(WorklistItem, item_id)
    assert item is not None
    comp = session.get(Comparison, item.comparison_id)
    assert comp is not None
    stored_text = final_text if action == "rejected" else signed_text(final_text, reviewer, finished_at)
    spent = (finished_at - started_at).total_seconds() if started_at else None
    review = Review(
        worklist_item_id=item_id,
        comparison_id=comp.id,  # type: ignore[arg-type]
        reviewer=reviewer,
        action=action,
        reason=reason,
        final_text=stored_text,
        final_labels_json=json.dumps(labels),
        started_at=started_at,
        finished_at=finished_at,
        time_spent_s=round(spent, 3) if spent is not None else None,
    )
    session.add(review)
    session.flush()
    session.add(SignOff(comparison_id=comp.id, review_id=review.id, worklist_item_id=item_id,  # type: ignore[arg-type]
                        signer=reviewer, signed_at=finished_at, session_id=session_id))
    try:
        session.flush()
    except IntegrityError:
        raise _loser_error(session, item_id, reviewer) from None
    drop_drafts(session, item_id)
    if action != "rejected":
        queue_final_sr(session, comp.id)  # type: ignore[arg-type]
    _audit_decision(session, reviewer, action, item, comp, review, final_text, corrections, session_id)
    return review
