"""The database schema: the node's index, the pipeline's jobs, results, worklist and reviews.

Shaped for what follows: the dashboard reads worklist items and writes reviews and audit
rows; monitoring reads studies (metadata for drift), comparisons, findings and reviews.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from enum import StrEnum

from pydantic import NaiveDatetime
from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Naive UTC: every timestamp in the database is naive UTC (DICOM dates are naive local)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class StudyState(StrEnum):
    receiving = "receiving"  # instances arriving
    complete = "complete"  # closed; a job is about to be queued
    queued = "queued"  # a pipeline job is queued or running
    done = "done"  # the latest version has a result
    failed = "failed"  # the latest version's job failed permanently


class StudyRole(StrEnum):
    incoming = "incoming"  # sent to us for comparison: runs the pipeline
    prior = "prior"  # fetched because we asked for it: never starts a job


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class WorklistStatus(StrEnum):
    pending = "pending"
    in_review = "in_review"
    accepted = "accepted"
    edited = "edited"
    rejected = "rejected"


class Study(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    study_uid: str = Field(index=True, unique=True, max_length=64)
    patient_id: str = Field(index=True, max_length=64)
    issuer: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=128)
    patient_sex: str = Field(default="", max_length=16)
    patient_birth_date: date | None = None
    accession: str = Field(default="", index=True, max_length=64)
    study_date: date | None = None
    study_datetime: NaiveDatetime | None = None
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=128)
    institution: str = Field(default="", max_length=128)
    reason: str = Field(default="", max_length=256)  # indication / reason for study
    calling_ae: str = Field(default="", max_length=16)
    role: str = Field(default=StudyRole.incoming, max_length=16)
    state: str = Field(default=StudyState.receiving, index=True, max_length=16)
    version: int = 1  # bumped when instances arrive after completion
    n_instances: int = 0
    first_received_at: NaiveDatetime = Field(default_factory=utcnow)
    last_received_at: NaiveDatetime = Field(default_factory=utcnow)
    released_at: NaiveDatetime | None = None  # sender released an association carrying this study
    completed_at: NaiveDatetime | None = None


class Instance(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(index=True, unique=True, max_length=64)
    study_id: int = Field(foreign_key="study.id", index=True)
    series_uid: str = Field(max_length=64)
    sop_class_uid: str = Field(max_length=64)
    transfer_syntax: str = Field(default="", max_length=64)
    path: str = Field(max_length=1024)
    size: int = 0
    received_at: NaiveDatetime = Field(default_factory=utcnow)
    study_version: int = 1  # the study version this instance arrived in
    # Metadata kept for prior selection, image choice and drift monitoring.
    modality: str = Field(default="", max_length=16)
    view_position: str = Field(default="", max_length=16)
    manufacturer: str = Field(default="", max_length=64)
    model_name: str = Field(default="", max_length=64)
    station_name: str = Field(default="", max_length=64)
    photometric: str = Field(default="", max_length=16)
    rows: int | None = None
    columns: int | None = None
    pixel_spacing: float | None = None
    kvp: float | None = None
    exposure: float | None = None


class Job(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    study_version: int = 1
    idempotency_key: str = Field(unique=True, max_length=64)  # study + instance set + engine
    state: str = Field(default=JobState.queued, index=True, max_length=16)
    attempts: int = 0
    enqueued_at: NaiveDatetime | None = None  # None: not yet handed to the broker (retry sending)
    started_at: NaiveDatetime | None = None  # a worker picked it up (latest attempt)
    error: str | None = Field(default=None, sa_column=Column(Text))
    # The lease of the worker running it: refreshed by a heartbeat; once expired, the sweeper
    # hands the job out again (the worker died: kill -9, OOM, lost machine).
    leased_by: str | None = Field(default=None, max_length=128)
    lease_expires_at: NaiveDatetime | None = None
    heartbeat_at: NaiveDatetime | None = None
    next_attempt_at: NaiveDatetime | None = None  # a transient failure's retry is due then
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class Comparison(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True, unique=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    prior_study_id: int | None = Field(default=None, foreign_key="study.id")
    study_version: int = 1
    status: str = Field(default="done", max_length=16)  # done | no_prior
    no_prior_reason: str | None = None
    interval_days: int | None = None
    urgent: bool = False
    draft_text: str = Field(default="", sa_column=Column(Text))
    engine: str = Field(default="", max_length=64)
    engine_version: str = Field(default="", max_length=256)  # the guarded VLM names both engines (~100 chars)
    model: str = Field(default="", max_length=128)
    model_version: str = Field(default="", max_length=64)
    structured: bool = True
    fallback: bool = False
    overlay_path: str | None = None
    prior_report: str | None = Field(default=None, sa_column=Column(Text))  # the prior's SR report text
    result_json: str = Field(default="{}", sa_column=Column(Text))
    # issue 29: the StudyInstanceUIDs of the history compared (JSON list) and every prior chosen, with its role,
    # reason, and whether it could be fetched (JSON list of vocabulary.PriorUsed); None on results from before
    priors_json: str | None = Field(default=None, sa_column=Column(Text))
    prior_choices_json: str | None = Field(default=None, sa_column=Column(Text))
    engine_started_at: NaiveDatetime | None = None  # priors in hand, the engine was called
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Finding(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    finding: str = Field(max_length=32)
    side: str | None = Field(default=None, max_length=16)
    zone: str | None = Field(default=None, max_length=16)
    change: str = Field(max_length=16)
    urgent: bool = False
    confidence: float = 0.0
    guard: str | None = Field(default=None, max_length=16)
    evidence_json: str | None = Field(default=None, sa_column=Column(Text))
    # The engine's own confidence when an accepted recalibration changed `confidence` (issue 30); None: not recalibrated.
    raw_confidence: float | None = None
    # issue 29: size on the current, first seen, the trajectory in words, the history (JSON list of
    # vocabulary.Observation, oldest first, the current last); None when only one prior was compared before 0018
    size_mm: float | None = None
    first_seen: date | None = None
    trajectory: str | None = Field(default=None, sa_column=Column(Text))
    history_json: str | None = Field(default=None, sa_column=Column(Text))


class WorklistItem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("comparison_id"),)
    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    priority: int = Field(default=5, index=True)  # 1 = urgent first
    status: str = Field(default=WorklistStatus.pending, index=True, max_length=16)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    # The claim of the radiologist reading it (dashboard): set and moved only by conditional
    # UPDATEs, so two readers never both hold it; expired claims are free to take.
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: NaiveDatetime | None = None
    claim_expires_at: NaiveDatetime | None = None


class Delivery(SQLModel, table=True):
    """One delivery of one result (an SR to the PACS, an urgent webhook). Unique per kind, so a
    retried job never sends twice; the SR's UID is fixed before the first attempt."""

    __table_args__ = (UniqueConstraint("comparison_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    kind: str = Field(max_length=16)  # sr | webhook | ... (a sender per kind in workers.deliver)
    state: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed
    sop_instance_uid: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    sent_at: NaiveDatetime | None = None
    # Outbox: written in the comparison's transaction, sent by a sweeper. The key travels with
    # the notice (Idempotency-Key) so a receiver can drop a repeat after a crash mid-send.
    idempotency_key: str | None = Field(default=None, unique=True, index=True, max_length=96)
    next_attempt_at: NaiveDatetime | None = None  # back-off: not before this
    claimed_until: NaiveDatetime | None = None  # a sender holds it ("sending") until then
    created_at: NaiveDatetime | None = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=64)
    password_hash: str = Field(max_length=256)
    role: str = Field(default="radiologist", max_length=16)  # radiologist | qa | admin
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Review(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    worklist_item_id: int = Field(foreign_key="worklistitem.id", index=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    reviewer: str = Field(max_length=64)
    action: str = Field(max_length=16)  # accepted | edited | rejected
    reason: str | None = None
    final_text: str = Field(default="", sa_column=Column(Text))
    final_labels_json: str = Field(default="[]", sa_column=Column(Text))
    started_at: NaiveDatetime | None = None
    finished_at: NaiveDatetime = Field(default_factory=utcnow)
    time_spent_s: float | None = None


class AuditLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: NaiveDatetime = Field(default_factory=utcnow, index=True)
    user: str = Field(max_length=64)
    action: str = Field(max_length=32)  # view | edit | accept | reject | login ...
    study_id: int | None = Field(default=None, foreign_key="study.id")
    detail: str | None = Field(default=None, sa_column=Column(Text))


# --- monitoring (appended by the monitoring room) ------------------------------------------


class SignedReport(SQLModel, table=True):
    """A signed (final) report for a study: from HL7 ORU^R01 over MLLP, or from the review page.

    Matched to the study by accession number. A re-sent message (same sender control id) is
    acknowledged again but stored once."""

    __table_args__ = (UniqueConstraint("source", "message_control_id"),)
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    accession: str = Field(default="", index=True, max_length=64)
    source: str = Field(default="hl7", max_length=16)  # hl7 | review | simulate
    message_control_id: str = Field(default="", max_length=64)
    result_status: str = Field(default="F", max_length=4)  # OBR-25: F final, C corrected, P prelim
    text: str = Field(default="", sa_column=Column(Text))
    critical: bool = False  # OBX-8 abnormal flag of critical (HH/LL/AA) or an explicit critical cue
    signed_by: str = Field(default="", max_length=64)
    signed_at: NaiveDatetime | None = None
    received_at: NaiveDatetime = Field(default_factory=utcnow, index=True)


class HL7Inbox(SQLModel, table=True):
    """An HL7 message that could not be filed (malformed, wrong type, unknown accession):
    kept verbatim for inspection after an error ACK was sent."""

    id: int | None = Field(default=None, primary_key=True)
    received_at: NaiveDatetime = Field(default_factory=utcnow, index=True)
    peer: str = Field(default="", max_length=64)
    message_control_id: str = Field(default="", max_length=64)
    ack_code: str = Field(default="AE", max_length=4)  # AE application error | AR rejected
    error: str = Field(default="", sa_column=Column(Text))
    raw: str = Field(default="", sa_column=Column(Text))


class ImageStatistics(SQLModel, table=True):
    """Intensity statistics of one image (normalised to 0-1), kept for drift monitoring."""

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    instance_id: int | None = Field(default=None, foreign_key="instance.id", index=True)
    mean: float = 0.0
    std: float = 0.0
    p05: float = 0.0
    p95: float = 0.0
    entropy: float = 0.0


class MonitoringSnapshot(SQLModel, table=True):
    """One monitoring computation: windows, headline figures and the full payload as JSON."""

    id: int | None = Field(default=None, primary_key=True)
    computed_at: NaiveDatetime = Field(default_factory=utcnow, index=True)
    as_of: NaiveDatetime = Field(index=True)
    current_start: NaiveDatetime
    reference_start: NaiveDatetime
    n_current: int = 0
    n_reference: int = 0
    drift_score: float | None = None
    revision_rate: float | None = None
    payload_json: str = Field(default="{}", sa_column=Column(Text))
    report_html_path: str | None = None


class MonitoringAlert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    snapshot_id: int | None = Field(default=None, foreign_key="monitoringsnapshot.id", index=True)
    created_at: NaiveDatetime = Field(default_factory=utcnow, index=True)
    as_of: NaiveDatetime = Field(index=True)
    kind: str = Field(max_length=32, index=True)  # drift | revision_rise | subgroup_gap
    subject: str = Field(default="", max_length=128)  # e.g. "site=B metric=revision_rate"
    value: float = 0.0
    threshold: float = 0.0
    message: str = Field(default="", sa_column=Column(Text))
    webhook_state: str = Field(default="none", max_length=16)  # none | sent | failed
    webhook_error: str | None = Field(default=None, sa_column=Column(Text))
    acknowledged: bool = False
    acknowledged_by: str | None = Field(default=None, max_length=64)
    acknowledged_at: NaiveDatetime | None = None
    # Lifecycle (issue 13): open -> acknowledged (the same condition stays quiet) -> resolved when it clears.
    severity: str = Field(default="warning", max_length=16)  # critical | warning | info
    route: str = Field(default="qa", max_length=32)  # who is told: qa | engineering | clinical_lead
    last_seen_at: NaiveDatetime | None = None  # the latest snapshot where the condition held
    resolved_at: NaiveDatetime | None = Field(default=None, index=True)  # the snapshot where it cleared
    n_seen: int = 1  # snapshots where the condition held


class SignedReportLabels(SQLModel, table=True):
    """The labeler's reading of a signed report, kept so a snapshot labels each report once
    (labeler_version changes invalidate it)."""

    signed_report_id: int = Field(foreign_key="signedreport.id", primary_key=True)
    labeler_version: str = Field(max_length=16)
    labels_json: str = Field(default="[]", sa_column=Column(Text))
    urgent: bool = False


# Monitoring reads studies by time window: the window is an index range, not a table scan.
Index("ix_study_study_datetime", Study.study_datetime)  # type: ignore[arg-type]


# --- dashboard: sign-off, sessions, drafts, login throttling (appended by the dashboard room) ---


class SignOff(SQLModel, table=True):
    """The one sign-off of one comparison version: its primary key makes a second sign-off of
    the same comparison fail in the database, whatever the application checked before."""

    comparison_id: int = Field(foreign_key="comparison.id", primary_key=True)
    review_id: int = Field(foreign_key="review.id", unique=True)
    worklist_item_id: int = Field(foreign_key="worklistitem.id", index=True)
    signer: str = Field(max_length=64)
    signed_at: NaiveDatetime = Field(default_factory=utcnow)
    session_id: int | None = None  # the dashboard session it was signed in


class DashboardSession(SQLModel, table=True):
    """A logged-in browser: the cookie carries a signed random token whose hash is stored here.
    Ended on logout; refused after the idle timeout or the absolute lifetime."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    username: str = Field(index=True, max_length=64)
    address: str = Field(default="", max_length=64)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    last_seen_at: NaiveDatetime = Field(default_factory=utcnow)
    expires_at: NaiveDatetime
    ended_at: NaiveDatetime | None = None
    end_reason: str | None = Field(default=None, max_length=16)  # logout | idle | expired
    grant_hash: str | None = Field(default=None, max_length=64)  # one-time cookie grant, cleared on use
    grant_expires_at: NaiveDatetime | None = None
    current_item_id: int | None = None  # the study open on the review page (restored on reload)
    page: str = Field(default="", max_length=32)


class ReviewDraft(SQLModel, table=True):
    """The draft a user is editing for one worklist item, autosaved as they type."""

    __table_args__ = (UniqueConstraint("username", "worklist_item_id"),)
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64)
    worklist_item_id: int = Field(foreign_key="worklistitem.id", index=True)
    text: str = Field(default="", sa_column=Column(Text))
    state_json: str = Field(default="{}", sa_column=Column(Text))  # finding corrections
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Failed logins per key in a window, and the lock they caused: "pair:<tag of an existing
    name, or ?>:<address>" or "addr:<address>" (rule in dashboard.security). Unknown typed
    usernames are never stored."""

    key: str = Field(primary_key=True, max_length=96)
    failures: int = 0
    window_start: NaiveDatetime = Field(default_factory=utcnow)
    locked_until: NaiveDatetime | None = None


class QuarantinedInstance(SQLModel, table=True):
    """An instance the node refused because its study is held for another patient.

    The file is kept (never filed into the study, never compared) for an operator to look at:
    `priorwatch status` and the dashboard's operations page list it; an operator resolves it
    (`resolved_at`, `resolved_by`). `differs` names identifiers (codes from
    `priorwatch.identity`), never their values."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    received_at: NaiveDatetime = Field(default_factory=utcnow, index=True)
    sop_instance_uid: str = Field(index=True, max_length=64)
    study_uid: str = Field(index=True, max_length=64)
    held_study_id: int | None = Field(default=None, foreign_key="study.id")
    calling_ae: str = Field(default="", max_length=16)
    role: str = Field(default="", max_length=16)
    reason: str = Field(default="patient_mismatch", max_length=32)
    differs: str = Field(default="", max_length=64)
    path: str = Field(max_length=1024)
    size: int = 0
    attempts: int = 1  # re-sends of the same instance add here, not a row each
    resolved_at: NaiveDatetime | None = None
    resolved_by: str | None = Field(default=None, max_length=64)


# --- recalibration of the engine's confidence (issue 30; proposed by monitoring, accepted by an admin) ---


class Recalibration(SQLModel, table=True):
    """A per-finding-type calibration map of the engine's confidence (Platt: p = sigmoid(a * logit(raw) + b)),
    fitted on one window and evaluated on a later one. Nothing is applied until an admin accepts it:
    proposed -> accepted | rejected; an accepted one is superseded by the next accepted or reverted (which
    restores the one it superseded). Workers apply the one accepted row to every later result."""

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True)  # shown in results' model version as "+cal<version>"
    status: str = Field(default="proposed", index=True, max_length=16)  # proposed|accepted|rejected|superseded|reverted
    method: str = Field(default="platt", max_length=16)
    params_json: str = Field(default="{}", sa_column=Column(Text))  # {finding: {"a", "b", "n_fit"}}
    metrics_json: str = Field(default="{}", sa_column=Column(Text))  # before/after ECE per type on the eval window
    fit_start: NaiveDatetime
    fit_end: NaiveDatetime
    eval_start: NaiveDatetime
    eval_end: NaiveDatetime
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    created_by: str = Field(default="", max_length=64)
    decided_at: NaiveDatetime | None = None
    decided_by: str | None = Field(default=None, max_length=64)
    decision_note: str | None = Field(default=None, sa_column=Column(Text))
    supersedes_id: int | None = Field(default=None, foreign_key="recalibration.id")  # restored on revert


# --- artefacts every reader can get, whatever machine wrote them (issue 32) ---------------------


class ComparisonOverlay(SQLModel, table=True):
    """A result's difference heat-map as PNG bytes. Kept in the database, not a file: a worker on
    another machine writes it in the result's own transaction and the dashboard (anywhere) reads it,
    with no shared disk and no second service; a heat-map PNG is tens of kB. `Comparison.overlay_path`
    names it as ``db:overlay`` (`priorwatch.artefacts`)."""

    __tablename__ = "comparison_overlay"
    comparison_id: int = Field(foreign_key="comparison.id", primary_key=True)
    png: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: NaiveDatetime = Field(default_factory=utcnow)
