"""Read-side views of results for the CLI (`results --json`, `status`) and exports."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from priorwatch.models import Comparison, Delivery, Finding, Job, JobState, Study, StudyState, WorklistItem


def comparison_records(session: Session, comparison_id: int | None = None) -> list[dict[str, Any]]:
    """Every comparison (or just one), oldest first, with its findings in the vocabulary."""
    q = select(Comparison).order_by(Comparison.id)
    if comparison_id is not None:
        q = q.where(Comparison.id == comparison_id)
    rows = session.exec(q).all()
    out: list[dict[str, Any]] = []
    for c in rows:
        cur = session.get(Study, c.study_id)
        assert cur is not None
        prior = session.get(Study, c.prior_study_id) if c.prior_study_id else None
        findings = session.exec(select(Finding).where(Finding.comparison_id == c.id)).all()
        out.append(
            {
                "comparison_id": c.id,
                "current_study_uid": cur.study_uid,
                "prior_study_uid": prior.study_uid if prior else None,
                "accession_number": cur.accession,
                "study_version": c.study_version,
                "status": c.status,
                "no_prior_reason": c.no_prior_reason,
                "interval_days": c.interval_days,
                "urgent": c.urgent,
                "draft_text": c.draft_text,
                "engine": c.engine,
                "engine_version": c.engine_version,
                "model": c.model,
                "model_version": c.model_version,
                "structured": c.structured,
                "fallback": c.fallback,
                # issue 29: the history compared (StudyInstanceUIDs, oldest first) and every prior chosen, with its
                # role, reason, and whether it could be fetched (why not); [] on results from before
                "priors": json.loads(c.priors_json) if c.priors_json else [],
                "prior_choices": json.loads(c.prior_choices_json) if c.prior_choices_json else [],
                "findings": [_finding_record(f) for f in findings],
                "created_at": c.created_at.isoformat(),
            }
        )
    return out


def _finding_record(f: Finding) -> dict[str, Any]:
    """One finding in the vocabulary, with its size and trajectory (issue 29: None/[] before)."""
    return {
        "finding": f.finding,
        "side": f.side,
        "zone": f.zone,
        "change": f.change,
        "urgent": f.urgent,
        "confidence": round(f.confidence, 3),
        "guard": f.guard,
        "evidence": json.loads(f.evidence_json) if f.evidence_json else None,
        "size_mm": f.size_mm,
        "first_seen": f.first_seen.isoformat() if f.first_seen else None,
        "trajectory": f.trajectory,
        "history": json.loads(f.history_json) if f.history_json else [],
    }


def state_counts(session: Session) -> dict[str, int]:
    """Counts by pipeline state: studies receiving/complete/queued/done/failed, plus jobs."""
    counts = {s.value: 0 for s in StudyState}
    for state, n in session.exec(select(Study.state, func.count()).group_by(Study.state)).all():
        counts[state] = n
    for state, n in session.exec(select(Job.state, func.count()).group_by(Job.state)).all():
        counts[f"jobs_{state}"] = n
    for s in JobState:
        counts.setdefault(f"jobs_{s.value}", 0)
    return counts


def failed_jobs(session: Session) -> list[tuple[str, str]]:
    rows = session.exec(
        select(Study.accession, Job.error).join(Study, Study.id == Job.study_id).where(
            Job.state == JobState.failed
        )
    ).all()
    return [(acc or "-", err or "") for acc, err in rows]


def delivery_problems(session: Session) -> list[tuple[str, str, str, str]]:
    """Deliveries (SR, urgent webhook) not sent: (accession, kind, state, error). Shown, never silent."""
    rows = session.exec(
        select(Study.accession, Delivery.kind, Delivery.state, Delivery.error)
        .join(Comparison, Comparison.id == Delivery.comparison_id)
        .join(Study, Study.id == Comparison.study_id)
        .where(Delivery.state != "sent")
    ).all()
    return [(acc or "-", kind, state, err or "") for acc, kind, state, err in rows]


def _ago(now: datetime, t: datetime | None) -> str:
    return f"{(now - t).total_seconds():.0f}s" if t else "?"


def wait_reason(job: Job, now: datetime) -> str:
    """Why a queued or running job has no result yet, in words, from its row alone."""
    retry = f" after: {job.error.removeprefix('retrying: ')}" if job.error else ""
    if job.state == JobState.running:
        if job.lease_expires_at is not None and job.lease_expires_at < now:
            return (f"its worker ({job.leased_by or '?'}) stopped answering {_ago(now, job.lease_expires_at)} ago "
                    f"(lease expired); the sweeper hands it out again")
        return (f"running on {job.leased_by or '?'} (attempt {job.attempts}, "
                f"heartbeat {_ago(now, job.heartbeat_at or job.started_at)} ago)")
    if job.next_attempt_at is not None and job.next_attempt_at > now:
        return f"retry {job.attempts + 1} due in {(job.next_attempt_at - now).total_seconds():.0f}s{retry}"
    if job.enqueued_at is None:
        return "not yet handed to the broker (the node sends it; is the broker up?)" + retry
    return f"in the broker for {_ago(now, job.enqueued_at)}, waiting for a free worker" + retry


def waiting_jobs(session: Session, now: datetime | None = None) -> list[tuple[str, int, str]]:
    """(accession, job id, why it waits) for every queued or running job, oldest first."""
    from priorwatch.models import utcnow

    now = now or utcnow()
    rows = session.exec(
        select(Study.accession, Job).join(Study, Study.id == Job.study_id)
        .where(Job.state.in_([JobState.queued, JobState.running]))  # type: ignore[attr-defined]
        .order_by(Job.id)
    ).all()
    return [(acc or "-", int(job.id or 0), wait_reason(job, now)) for acc, job in rows]


def worklist_rows(session: Session) -> list[dict[str, Any]]:
    """Open worklist items, urgent first, then by waiting time (oldest first)."""
    q = (
        select(WorklistItem, Comparison, Study)
        .join(Comparison, Comparison.id == WorklistItem.comparison_id)
        .join(Study, Study.id == WorklistItem.study_id)
        .where(WorklistItem.status.in_(["pending", "in_review"]))  # type: ignore[attr-defined]
        .order_by(WorklistItem.priority, WorklistItem.created_at)
    )
    out = []
    for item, comp, study in session.exec(q).all():
        findings = session.exec(select(Finding).where(Finding.comparison_id == comp.id)).all()
        out.append(
            {
                "item_id": item.id,
                "priority": item.priority,
                "accession": study.accession,
                "study_uid": study.study_uid,
                "urgent": comp.urgent,
                "status": comp.status,
                "findings": [
                    f"{f.finding} {f.side or ''} {f.zone or ''} {f.change} ({f.confidence:.2f})"
                    + (" URGENT" if f.urgent else "")
                    for f in findings
                ],
                "draft_text": comp.draft_text,
            }
        )
    return out
