"""Step 1 and 2 against a real PACS: find the patient's studies, choose comparable priors by
the same policy as the local store, and retrieve the ones we do not already hold.

Any PACS: a PACS may return no modality, body part or count at study level (DCMTK's dcmqrscp)
or no issuer; candidates are then judged on what the series level and the description say,
and each one fetched is checked against its own headers (patient ID, issuer, modality, body
part) before it counts; a candidate that fails the check leaves room for the next one.

An unreachable PACS keeps the job waiting for it (`WaitingForPacs`, capped back-off) for
`pacs_wait_window_s` since the job began; a PACS that refuses us for good is a configuration
error (`PermanentError` with the PACS's own reason), never retried as an outage.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydicom.errors import InvalidDicomError
from pydantic import BaseModel
from sqlmodel import select

from dicom_node.pacs import PacsConfig, PacsConfigError, PacsError, PacsUnavailable, StudyHit
from dicom_node.query import find_studies, find_studies_qido
from dicom_node.retrieve import Sink, retriever_for
from priorwatch.identity import conflicts
from priorwatch.db import session_scope
from priorwatch.log import phi_safe
from priorwatch.instances import is_sr_class
from priorwatch.models import Instance, Study, StudyRole, utcnow
from priorwatch.settings import Settings
from workers.errors import PermanentError, TransientError, WaitingForPacs
from workers.node_fetch import read_header
from priorwatch.vocabulary import PriorUsed
from workers.priors import Picked, comparable, patient_identity, pick_history, select_comparable, when

log = logging.getLogger(__name__)

# Candidates fetched and found wanting (wrong issuer, body part) before we stop trying: each
# costs a retrieval; the headers of the most recent few settle it in practice.
MAX_CANDIDATES = 3


class FetchOutcome(BaseModel):
    fetched: list[str] = []  # study UIDs retrieved now
    already_held: list[str] = []
    rejected: list[str] = []  # fetched, but their headers showed them not comparable / not this patient
    reason: str | None = None  # why no prior came from the PACS (none found, not comparable, unreachable)
    not_fetched: list[PriorUsed] = []  # studies of the history that could not be had, each with why (issue 29)


def _when(hit: StudyHit) -> datetime | None:
    return datetime.combine(hit.study_date, datetime.min.time()) if hit.study_date else None


def candidates(current: Study, hits: list[StudyHit], lookback_days: int) -> tuple[list[StudyHit], str | None]:
    """Every comparable earlier study within the look-back, oldest to newest (the local policy)."""
    return select_comparable(
        current, [(h, _when(h), h.modalities, h.body_part) for h in hits if h.study_uid != current.study_uid],
        lookback_days, where=" in the PACS",
    )


def choose_hits(current: Study, hits: list[StudyHit], lookback_days: int, baseline: bool) -> tuple[list[StudyHit], str | None]:
    """The same policy as the local store: the most recent comparable, optionally the oldest too."""
    window, reason = candidates(current, hits, lookback_days)
    if not window:
        return [], reason
    return ([window[-1], window[0]] if baseline and len(window) > 1 else [window[-1]]), None


def history_hits(current: Study, window: list[StudyHit], got: StudyHit, settings: Settings) -> list[Picked[StudyHit]]:
    """The relevant history in the PACS's answers (the local policy, `pick_history`): `got` is the most
    recent usable prior, `window` the comparable candidates oldest first. With `prior_baseline` (older
    configurations) the baseline may lie anywhere in the look-back, not only within the horizon."""
    upto = window[: window.index(got) + 1]
    horizon = max(settings.history_horizon_days, settings.lookback_days if settings.prior_baseline else 0)
    return pick_history(upto, lambda h: _when(h) or datetime.min, when(current), horizon, settings.history_max_between)


def _fetch_history(current: Study, window: list[StudyHit], got: StudyHit, pacs: PacsConfig, settings: Settings,
                   sink: Sink, out: FetchOutcome) -> None:
    """Retrieve the rest of the history (baseline, studies between); one that cannot be retrieved or
    turns out not to be usable is listed in `out.not_fetched` with why, and the others still come."""
    for p in history_hits(current, window, got, settings):
        if p.item is got:
            continue
        problem = None
        try:
            if _first_usable([p.item], current, pacs, settings, sink, out) is None:
                problem = "set aside after retrieval: its headers show another patient or a study not comparable"
        except (PermanentError, TransientError, PacsUnavailable) as exc:  # the most recent came: this one's trouble
            problem = str(exc)
        if problem:
            log.warning("history study %s not fetched: %s", phi_safe(p.item.study_uid), problem)
            out.not_fetched.append(PriorUsed(study_uid=p.item.study_uid, date=p.when.date(), role=p.role,
                                             reason=p.reason, fetched=False, problem=problem))


def _held(settings: Settings, hit: StudyHit) -> bool:
    """We hold the study: at least one instance, and all of them where the PACS gave a count (a
    study filed before a retrieval that then failed holds none)."""
    with session_scope(settings) as s:
        st = s.exec(select(Study).where(Study.study_uid == hit.study_uid)).first()
        if st is None:
            return False
        n = len(s.exec(select(Instance.id).where(Instance.study_id == st.id)).all())
    return n > 0 and (hit.n_instances is None or n >= hit.n_instances)


def _expect_prior(settings: Settings, hit: StudyHit, current: Study) -> None:
    """File the study as a prior before asking for it: C-MOVE's instances reach the node as
    C-STOREs from the PACS's AE, which may also route new studies to us, so the calling AE
    alone cannot tell a prior from a new study. An existing study keeps its role. What the
    PACS did not say (issuer) is taken from the current study until the headers are read."""
    with session_scope(settings) as s:
        if s.exec(select(Study.id).where(Study.study_uid == hit.study_uid)).first() is not None:
            return
        s.add(Study(
            study_uid=hit.study_uid, patient_id=hit.patient_id, issuer=hit.issuer or current.issuer,
            accession=hit.accession, study_date=hit.study_date, modality=(hit.modalities or [""])[0],
            body_part=hit.body_part, description=hit.description, role=StudyRole.prior.value,
        ))


def check_fetched(settings: Settings, current: Study, study_uid: str) -> str | None:
    """Fetch-then-check: the held study's own headers (one image) decide. The study row takes
    their patient ID, issuer, modality and body part; returns why it is not a usable prior, or
    None. The header is read from the spool, or over the node's store by a worker without its
    disk; one that cannot be read leaves the row as filed."""
    with session_scope(settings) as s:
        st = s.exec(select(Study).where(Study.study_uid == study_uid)).first()
        if st is None:
            return "not held after retrieval"
        images = [(i, p) for i, p, c in s.exec(select(Instance.id, Instance.path, Instance.sop_class_uid)
                                                .where(Instance.study_id == st.id).order_by(Instance.id)).all()
                  if not is_sr_class(c)]
        if not images:
            return "holds no image"
        try:
            ds = read_header(settings, images[0][0], images[0][1], "check", tags=[
                "PatientID", "IssuerOfPatientID", "Modality", "BodyPartExamined"])
        except (OSError, InvalidDicomError, PermanentError, TransientError):
            ds = None
        if ds is not None:
            st.patient_id = str(ds.get("PatientID", "") or "")
            st.issuer = str(ds.get("IssuerOfPatientID", "") or "")
            st.modality = str(ds.get("Modality", "") or st.modality)
            st.body_part = str(ds.get("BodyPartExamined", "") or st.body_part).upper()
            s.add(st)
        if st.patient_id != current.patient_id or st.issuer != current.issuer:
            return "another patient (patient ID or issuer differs)"
        differs = conflicts(patient_identity(current), patient_identity(st))  # the node's rule: name and birth date too
        if differs:
            return f"another patient ({', '.join(differs)} differ)"
        if not comparable(current.modality, current.body_part, [st.modality], st.body_part):
            return "not comparable (modality/body part)"
    return None


def _outage(exc: Exception, settings: Settings, waiting_since: datetime | None, attempt: int) -> WaitingForPacs:
    waited = (utcnow() - waiting_since) if waiting_since else timedelta(0)
    passed = waited.total_seconds() >= settings.pacs_wait_window_s
    # A wait does not use up the job's attempts, so the back-off grows with the time waited
    # instead (each retry after a quarter of it: geometric), from the task back-off up to the cap.
    delay = min(settings.pacs_retry_max_s, max(settings.task_retry_backoff_s, 0.25 * waited.total_seconds()))
    minutes = int(waited.total_seconds() // 60)
    if passed:
        return WaitingForPacs(f"PACS unreachable for {minutes} min, past the {settings.pacs_wait_window_s / 3600:g} h "
                              f"wait window: {exc}", delay, window_passed=True)
    return WaitingForPacs(f"waiting for the PACS (unreachable for {minutes} min): {exc}", delay)


def fetch_priors(current: Study, pacs: PacsConfig, settings: Settings, sink: Sink, query: str = "dimse", *,
                 waiting_since: datetime | None = None, attempt: int = 1) -> FetchOutcome:
    """Pull the prior and the rest of its relevant history (`history_hits`) into our store.

    `waiting_since`: when the job began (its wait window for an unreachable PACS starts there, and
    the back-off grows with the time waited, up to `pacs_retry_max_s`); `attempt` is informative."""
    try:
        try:
            hits = (find_studies_qido(pacs, current.patient_id, current.issuer) if query == "qido"
                    else find_studies(pacs, current.patient_id, current.issuer, settings.ae_title))
        except PacsConfigError as exc:
            raise PermanentError(f"PACS configuration error: {exc}") from exc
        except PacsError as exc:
            raise PermanentError(f"PACS query failed: {exc}") from exc
        window, reason = candidates(current, hits, settings.lookback_days)
        out = FetchOutcome(reason=reason)
        newest_first = list(reversed(window))
        got = _first_usable(newest_first[:MAX_CANDIDATES], current, pacs, settings, sink, out)
        if got is None and window:
            out.reason = (f"no usable prior in the PACS: {len(out.rejected)} candidate(s) fetched were not comparable "
                          "or not this patient")
        if got is not None:
            _fetch_history(current, window, got, pacs, settings, sink, out)
        return out
    except PacsUnavailable as exc:
        raise _outage(exc, settings, waiting_since, attempt) from exc


def _first_usable(hits: list[StudyHit], current: Study, pacs: PacsConfig, settings: Settings, sink: Sink,
                  out: FetchOutcome) -> StudyHit | None:
    for hit in hits:
        held = _held(settings, hit)
        if not held:
            _expect_prior(settings, hit, current)
            try:
                report = retriever_for(pacs, settings.ae_title).retrieve(pacs, hit.study_uid, sink, settings.ae_title)
            except PacsConfigError as exc:
                raise PermanentError(f"PACS configuration error: {exc}") from exc
            except PacsError as exc:
                raise PermanentError(f"prior retrieval failed: {exc}") from exc
            if report.partial and report.stored == 0:
                raise TransientError(f"prior retrieval incomplete: {report.reason}")
            if report.partial:
                log.warning("prior %s retrieved partially: %s", phi_safe(hit.study_uid), report.reason)
        why_not = check_fetched(settings, current, hit.study_uid)
        if why_not:
            log.info("candidate prior %s set aside: %s", phi_safe(hit.study_uid), why_not)
            out.rejected.append(hit.study_uid)
            continue
        (out.already_held if held else out.fetched).append(hit.study_uid)
        return hit
    return None
