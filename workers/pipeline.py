"""One pipeline job: choose the prior, compare through the engine, store result and worklist item.

Kept free of Celery so it can be run and tested directly; `tasks.py` adds the retries.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from comparison.contract import CompareContext, EngineError, EngineUnavailable
from comparison.history import HistoryImage, compare_history
from comparison.preprocess import load_image
from comparison.triton_client import TritonComparator
from comparison.vlm.client import VlmComparator, VlmTritonClient
from priorwatch.artefacts import OVERLAY_IN_DATABASE
from priorwatch.db import session_scope
from priorwatch.log import phi_safe
from priorwatch.imagestats import image_statistics
from priorwatch.instances import SR_CLASS_PREFIX, frontal_instance
from priorwatch.limits import fit_strings
from priorwatch.models import (
    Comparison,
    ComparisonOverlay,
    ImageStatistics,
    Instance,
    Finding,
    Job,
    JobState,
    Study,
    StudyState,
    WorklistItem,
    utcnow,
)
from priorwatch.recalibration import active as active_recalibration
from priorwatch.recalibration import apply_to_result as apply_recalibration
from priorwatch.settings import Settings
from priorwatch.trajectory import StudyRef
from priorwatch.vocabulary import ComparisonResult, FindingResult, PriorRole, PriorUsed
from dicom_node.report_text import report_text
from workers.deliver import add_outbox_rows, pacs_config
from workers.errors import PermanentError, TransientError, WaitingForPacs
from workers.fetch import fetch_priors
from workers.metrics import TRITON_LATENCY
from workers.node_fetch import InstanceFiles, prior_sink
from workers.priors import PriorChoice, choose_history, when

log = logging.getLogger(__name__)

URGENT_PRIORITY = 1
ROUTINE_PRIORITY = 5


def triton_url(settings: Settings) -> str:
    return settings.triton_url or f"127.0.0.1:{settings.triton_grpc_port}"


def _start(session: Session, job_id: int, begin: bool = True) -> Job | None:
    """The job to run, or None when it already has its result. A worker has taken the job's lease
    (state running) before; a direct call without one starts an attempt here."""
    job = session.get(Job, job_id)
    if job is None:
        raise PermanentError(f"job {job_id} does not exist")
    if session.exec(select(Comparison.id).where(Comparison.job_id == job_id)).first() is not None:
        if job.state != JobState.done:  # the result is there: the job is done, whatever it said
            job.state, job.error, job.leased_by, job.updated_at = JobState.done, None, None, utcnow()
            session.add(job)
        return None  # idempotent: this instance set already has a result
    if job.state == JobState.done:
        return None
    if begin and job.state != JobState.running:
        job.state = JobState.running
        job.attempts += 1
        job.updated_at = job.started_at = utcnow()
        session.add(job)
    return job


def make_comparator(settings: Settings) -> TritonComparator | VlmComparator:
    """The registration engine, or the VLM guarded by it (falling back to it, visibly)."""
    url = triton_url(settings)
    registration = TritonComparator(url, timeout_s=settings.triton_timeout_s)
    if settings.engine != "vlm":
        return registration
    vlm = VlmTritonClient(url, timeout_s=settings.vlm_timeout_s, retries=settings.vlm_retries,
                          backoff_s=settings.vlm_backoff_s)
    return VlmComparator(registration, vlm)


def _fetch_from_pacs(study: Study, settings: Settings, final_attempt: bool,
                     waiting_since: datetime | None = None, attempt: int = 1) -> tuple[str | None, list[PriorUsed]]:
    """Pull the relevant history from the PACS into our store; returns why no prior came, if so, and
    the studies of the history that could not be fetched (each with why).
    An unreachable PACS is waited for (WaitingForPacs, even on a final attempt) until its wait
    window since `waiting_since` has passed; only then does the job go on without a prior."""
    pacs = pacs_config(settings)
    if pacs is None:
        return None, []
    sink = prior_sink(settings, pacs.ae_title)  # the node's store, so every worker can fetch what we retrieve
    try:
        outcome = fetch_priors(study, pacs, settings, sink, query=settings.pacs_query,
                               waiting_since=waiting_since, attempt=attempt)
    except WaitingForPacs as exc:
        if not exc.window_passed:
            raise
        return str(exc), []
    except TransientError as exc:
        if not final_attempt:
            raise
        return f"PACS unreachable: {exc}", []
    return outcome.reason, outcome.not_fetched


def _prior_report(session: Session, prior_id: int, files: InstanceFiles) -> str | None:
    """The prior's own report, when its study holds one as an SR document (not our AI drafts)."""
    srs = session.exec(select(Instance.id, Instance.path).where(
        Instance.study_id == prior_id, Instance.sop_class_uid.startswith(SR_CLASS_PREFIX)  # type: ignore[attr-defined]
    )).all()
    return report_text([files.path(i, p) for i, p in srs]) if srs else None


def _earlier_result(session: Session, prior_id: int) -> ComparisonResult | None:
    """The most recent prior's own stored result (its latest version), whose findings the history carries
    forward (issue 29); None when it has none or it cannot be read (then nothing is carried)."""
    row = session.exec(select(Comparison.result_json).where(Comparison.study_id == prior_id)
                       .order_by(Comparison.study_version.desc(), Comparison.id.desc())).first()  # type: ignore[attr-defined, union-attr]
    if not row:
        return None
    try:
        return ComparisonResult.model_validate_json(row)
    except ValueError:
        log.warning("the most recent prior's stored result could not be read; nothing carried forward")
        return None


def _history(s: Session, study: Study, settings: Settings, files: InstanceFiles,
             not_fetched: list[PriorUsed]) -> tuple[PriorChoice, list[tuple[PriorUsed, int | None, str | None]]]:
    """The relevant history in our store (`choose_history`) plus what the PACS could not give, oldest
    first: (each prior as the result lists it, its study id, its image's path), and the choice of the
    most recent prior the draft is written against."""
    picks, reason = choose_history(s, study, settings)
    pacs_said = {u.study_uid: u.problem for u in not_fetched}  # filed before a retrieval that failed: why
    rows: list[tuple[PriorUsed, int | None, str | None]] = []
    for p in picks:
        inst = frontal_instance(s, p.item.id) if p.item.id is not None else None
        problem = None if inst else (pacs_said.get(p.item.study_uid) or "the study holds no image")
        rows.append((PriorUsed(study_uid=p.item.study_uid, date=p.when.date(), role=p.role, reason=p.reason,
                               fetched=inst is not None, problem=problem),
                     p.item.id, files.path(inst.id, inst.path) if inst else None))
    held = {u.study_uid for u, _, _ in rows}
    rows += [(u, None, None) for u in not_fetched if u.study_uid not in held]
    rows.sort(key=lambda r: (r[0].date is None, r[0].date or date.min, r[0].role == PriorRole.most_recent))
    recent = next((r for r in rows if r[0].role == PriorRole.most_recent), None)
    if recent is None or recent[2] is None:
        why = reason if recent is None else "the comparable prior holds no image"
        return PriorChoice(prior_id=None, reason=why), rows
    interval = (when(study) - datetime.combine(recent[0].date, datetime.min.time())).days if recent[0].date else None
    return PriorChoice(prior_id=recent[1], interval_days=interval), rows


def _load_priors(history: list[tuple[PriorUsed, int | None, str | None]], settings: Settings) -> list[HistoryImage]:
    """Each prior's pixels; the most recent must load (as before), another that cannot is kept with
    no pixels and its problem (not assessable in every finding's history, named in the result)."""
    out: list[HistoryImage] = []
    for used, _, path in history:
        img = None
        if path is not None:
            try:
                img = load_image(Path(path), size=settings.image_size)
            except Exception as exc:
                if used.role == PriorRole.most_recent:
                    raise
                used.fetched, used.problem = False, f"could not read its image: {type(exc).__name__}"
        out.append(HistoryImage.of(used.study_uid, used.date, img))
    return out


def run_job(job_id: int, settings: Settings, comparator: TritonComparator | VlmComparator | None = None,
            final_attempt: bool = False) -> int | None:
    """Run job `job_id`; returns the comparison id, or None if it was already done."""
    with session_scope(settings) as s:
        job = _start(s, job_id)
        if job is None:
            log.info("job %s already has a result; skipping", job_id)
            return None
        study = s.get(Study, job.study_id)
        assert study is not None
        study_id, version = study.id, job.study_version
        waiting_since, attempt = job.created_at, max(job.attempts, 1)
    pacs_reason, not_fetched = _fetch_from_pacs(study, settings, final_attempt, waiting_since, attempt)
    files = InstanceFiles(settings, job_id)  # the node's spool, or this worker's copies of it

    with session_scope(settings) as s:
        study = s.get(Study, study_id)
        assert study is not None and study_id is not None
        current = frontal_instance(s, study_id, version)
        if current is None:
            raise PermanentError("the study holds no image to compare")
        choice, history = _history(s, study, settings, files, not_fetched)
        if choice.prior_id is None and pacs_reason:
            choice.reason = pacs_reason
        prior_report = _prior_report(s, choice.prior_id, files) if choice.prior_id else None
        earlier = _earlier_result(s, choice.prior_id) if choice.prior_id else None
        ctx = CompareContext(interval_days=choice.interval_days, reason=study.reason or None, prior_report=prior_report)
        cur_path = files.path(current.id, current.path)
        cur_instance_id, cur_ref = current.id, StudyRef(study_uid=study.study_uid, date=when(study).date())

    engine_started_at = utcnow()  # priors in hand: comparison starts (image decoding included)
    try:
        cur_img = load_image(Path(cur_path), size=settings.image_size)
        priors = _load_priors(history, settings)
    except FileNotFoundError as exc:
        raise PermanentError(f"image file missing from the spool: {Path(exc.filename or '').name}") from exc
    except Exception as exc:  # unreadable pixel data is not going to improve on retry
        raise PermanentError(f"could not read image: {type(exc).__name__}: {exc}") from exc
    finally:
        files.cleanup()  # decoded pixels are in memory; fetched copies go
    # sizes in mm from the prepared image's spacing; a lateral or oblique is not compared (by ViewPosition, or the
    # orientation when that is all there is); pixels are in the standard display where PatientOrientation said how.
    # compare_history sets each prior's own view, orientation and interval.
    ctx = ctx.with_current(cur_img)

    threadsafe = comparator is None  # ours, over gRPC; one passed in (an in-process engine in tests) is called serially
    comparator = comparator or make_comparator(settings)
    try:
        with TRITON_LATENCY.time():
            out = compare_history(comparator, cur_img.pixels, cur_ref, priors, ctx, [u for u, _, _ in history],
                                  parallel=settings.history_parallel if threadsafe else 1, earlier=earlier)
    except EngineUnavailable as exc:
        raise TransientError(f"comparison engine unavailable: {exc}") from exc
    except EngineError as exc:
        raise PermanentError(f"comparison engine rejected the input: {exc}") from exc

    result: ComparisonResult = out.result
    try:
        return _store_result(settings, job_id, study_id, version, choice, ctx, result, out.heatmap,
                             engine_started_at, cur_instance_id, cur_img.pixels)
    except IntegrityError:
        # Another attempt of this job (a lease taken over from a worker thought dead) wrote first:
        # exactly one comparison per job, and this attempt's is dropped.
        with session_scope(settings) as s:
            existing = s.exec(select(Comparison.id).where(Comparison.job_id == job_id)).first()
            if existing is None:
                raise
            _start(s, job_id, begin=False)  # marks the job done if it was not yet
        log.info("job %s: a concurrent attempt stored the result first; keeping that one", job_id)
        return None


def _store_result(settings: Settings, job_id: int, study_id: int, version: int, choice: PriorChoice,
                  ctx: CompareContext, result: ComparisonResult, heatmap: np.ndarray | None,
                  engine_started_at: datetime, cur_instance_id: int | None, pixels: np.ndarray) -> int | None:
    """One transaction: the comparison, its findings, worklist item, statistics, the outbox rows
    of its deliveries, and the job done. The unique job_id makes a second write fail whole."""
    with session_scope(settings) as s:
        if _start(s, job_id, begin=False) is None:  # another attempt finished it meanwhile: write nothing
            return None
        # An admin-accepted recalibration of the confidence (issue 30): read here, per result, so accepting
        # or reverting one applies to the next result without restarting workers; the raw values are kept.
        raws: list[float | None] = [None] * len(result.findings)
        recal = active_recalibration(s)
        if recal is not None:
            result, applied = apply_recalibration(result, recal)
            raws = list(applied)
        comp = Comparison(
            job_id=job_id,
            study_id=study_id,
            prior_study_id=choice.prior_id,
            study_version=version,
            status="done" if choice.prior_id else "no_prior",
            no_prior_reason=None if choice.prior_id else choice.reason,
            interval_days=choice.interval_days,
            prior_report=ctx.prior_report,
            urgent=result.urgent,
            draft_text=result.draft_text,
            engine=result.engine,
            engine_version=result.engine_version,
            model=result.model,
            model_version=result.model_version,
            structured=result.structured,
            fallback=result.fallback,
            result_json=result.model_dump_json(),
            priors_json=json.dumps(result.priors),
            prior_choices_json=json.dumps([c.model_dump(mode="json") for c in result.prior_choices]),
            engine_started_at=engine_started_at,
        )
        fit_strings(comp)  # engine-made strings (versions, model names) fit their columns on any database
        s.add(comp)
        s.flush()
        assert comp.id is not None
        if heatmap is not None:
            comp.overlay_path = _save_heatmap(s, comp.id, heatmap)
        s.add_all([_finding_row(comp.id, f, raw) for f, raw in zip(result.findings, raws)])
        # Drift monitoring watches these; they come from pixels already decoded here.
        s.add(ImageStatistics(study_id=study_id, instance_id=cur_instance_id, **image_statistics(pixels)))
        s.add(
            WorklistItem(
                comparison_id=comp.id,
                study_id=study_id,
                priority=URGENT_PRIORITY if result.urgent else ROUTINE_PRIORITY,
            )
        )
        add_outbox_rows(s, comp.id, settings, comp.urgent)  # sent by the sweeper, never lost with a worker
        job = s.get(Job, job_id)
        assert job is not None
        job.state, job.error, job.updated_at = JobState.done, None, utcnow()
        job.leased_by = job.lease_expires_at = job.next_attempt_at = None
        study = s.get(Study, study_id)
        assert study is not None
        if study.version == version:  # a newer version (late series) keeps its own state
            study.state = StudyState.done
        s.add_all([job, study])
        log.info(
            "job %s study %s v%s: %s, urgent=%s, %d findings",
            job_id, phi_safe(study.study_uid), version, comp.status, comp.urgent, len(result.findings),
        )
        return comp.id


def _finding_row(comparison_id: int, f: FindingResult, raw: float | None) -> Finding:
    """A finding's row: what the worklist, monitoring and the export read without parsing the result."""
    return Finding(
        comparison_id=comparison_id, finding=f.finding, side=f.side, zone=f.zone, change=f.change, urgent=f.urgent,
        confidence=f.confidence, raw_confidence=raw, guard=f.guard,
        evidence_json=f.evidence.model_dump_json() if f.evidence else None,
        size_mm=f.size_mm, first_seen=f.first_seen, trajectory=f.trajectory,
        history_json=json.dumps([o.model_dump(mode="json") for o in f.history]) if f.history else None,
    )


def _save_heatmap(s: Session, comparison_id: int, heatmap: np.ndarray) -> str:
    """The heat-map as PNG bytes in the result's own transaction (a `ComparisonOverlay` row), not a
    file in this worker's results folder: the dashboard, on another machine, reads the database.
    Returns the reference `Comparison.overlay_path` holds."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(heatmap, dtype=np.uint8)).save(buf, format="PNG")
    s.add(ComparisonOverlay(comparison_id=comparison_id, png=buf.getvalue()))
    return OVERLAY_IN_DATABASE


def mark_failed(job_id: int, reason: str, settings: Settings) -> None:
    """A permanently failed job stays visible, with its reason, on the job and its study.
    A job that already has its result (another attempt finished it) stays done."""
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        if job is None or job.state == JobState.done:
            return
        if s.exec(select(Comparison.id).where(Comparison.job_id == job_id)).first() is not None:
            return
        job.state, job.error, job.updated_at = JobState.failed, reason[:2000], utcnow()
        job.leased_by = job.lease_expires_at = job.next_attempt_at = None
        study = s.get(Study, job.study_id)
        if study is not None and study.version == job.study_version:
            study.state = StudyState.failed
            s.add(study)
        s.add(job)
    log.warning("job %s failed: %s", job_id, reason)


def note_retry(job_id: int, reason: str, settings: Settings, delay_s: float = 0.0, sent: bool = True,
               count_attempt: bool = True) -> None:
    """Back to queued, lease released, with the retry's due time; `sent`: its message is in the
    broker (else the node or the sweeper sends it); `count_attempt=False`: a wait (for the PACS)
    that does not use up one of the job's attempts."""
    now = utcnow()
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        if job is not None and job.state == JobState.running:
            job.state, job.error, job.updated_at = JobState.queued, f"retrying: {reason}"[:2000], now
            job.leased_by = job.lease_expires_at = None
            job.next_attempt_at = now + timedelta(seconds=delay_s)
            job.enqueued_at = now if sent else None
            if not count_attempt:
                job.attempts = max(job.attempts - 1, 0)
            s.add(job)


def result_summary(comp: Comparison) -> str:
    return json.dumps({"id": comp.id, "urgent": comp.urgent, "status": comp.status})
