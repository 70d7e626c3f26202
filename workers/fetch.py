"""Step 1 and 2 against a real PACS: find the patient's studies, choose comparable priors by
the same policy as the local store, and retrieve the ones we do not already hold."""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import select

from dicom_node.pacs import PacsConfig, PacsError, PacsUnavailable, StudyHit
from dicom_node.query import find_studies, find_studies_qido
from dicom_node.retrieve import Sink, retriever_for
from priorwatch.db import session_scope
from priorwatch.log import phi_safe
from priorwatch.models import Instance, Study, StudyRole
from priorwatch.settings import Settings
from workers.errors import PermanentError, TransientError
from workers.priors import select_comparable

log = logging.getLogger(__name__)


class FetchOutcome(BaseModel):
    fetched: list[str] = []  # study UIDs retrieved now
    already_held: list[str] = []
    reason: str | None = None  # why no prior came from the PACS (none found, not comparable, unreachable)


def choose_hits(current: Study, hits: list[StudyHit], lookback_days: int, baseline: bool) -> tuple[list[StudyHit], str | None]:
    """The same policy as the local store: the most recent comparable, optionally the oldest too."""
    window, reason = select_comparable(
        current,
        [(h, datetime.combine(h.study_date, datetime.min.time()) if h.study_date else None, h.modalities, h.body_part)
         for h in hits if h.study_uid != current.study_uid],
        lookback_days, where=" in the PACS",
    )
    if not window:
        return [], reason
    return ([window[-1], window[0]] if baseline and len(window) > 1 else [window[-1]]), None


def _held(settings: Settings, hit: StudyHit) -> bool:
    with session_scope(settings) as s:
        st = s.exec(select(Study).where(Study.study_uid == hit.study_uid)).first()
        if st is None:
            return False
        n = len(s.exec(select(Instance.id).where(Instance.study_id == st.id)).all())
    return hit.n_instances is None or n >= hit.n_instances


def _expect_prior(settings: Settings, hit: StudyHit) -> None:
    """File the study as a prior before asking for it: C-MOVE's instances reach the node as
    C-STOREs from the PACS's AE, which may also route new studies to us, so the calling AE
    alone cannot tell a prior from a new study. An existing study keeps its role."""
    with session_scope(settings) as s:
        if s.exec(select(Study.id).where(Study.study_uid == hit.study_uid)).first() is not None:
            return
        s.add(Study(
            study_uid=hit.study_uid, patient_id=hit.patient_id, issuer=hit.issuer, accession=hit.accession,
            study_date=hit.study_date, modality=(hit.modalities or [""])[0], body_part=hit.body_part,
            description=hit.description, role=StudyRole.prior.value,
        ))


def fetch_priors(current: Study, pacs: PacsConfig, settings: Settings, sink: Sink, query: str = "dimse") -> FetchOutcome:
    try:
        hits = (find_studies_qido(pacs, current.patient_id, current.issuer) if query == "qido"
                else find_studies(pacs, current.patient_id, current.issuer, settings.ae_title))
    except PacsUnavailable as exc:
        raise TransientError(f"PACS unreachable while finding priors: {exc}") from exc
    except PacsError as exc:
        raise PermanentError(f"PACS query failed: {exc}") from exc
    chosen, reason = choose_hits(current, hits, settings.lookback_days, settings.prior_baseline)
    out = FetchOutcome(reason=reason)
    for hit in chosen:
        if _held(settings, hit):
            out.already_held.append(hit.study_uid)
            continue
        _expect_prior(settings, hit)
        try:
            report = retriever_for(pacs, settings.ae_title).retrieve(pacs, hit.study_uid, sink, settings.ae_title)
        except PacsUnavailable as exc:
            raise TransientError(f"PACS unreachable while retrieving a prior: {exc}") from exc
        except PacsError as exc:
            raise PermanentError(f"prior retrieval failed: {exc}") from exc
        if report.partial and report.stored == 0:
            raise TransientError(f"prior retrieval incomplete: {report.reason}")
        if report.partial:
            log.warning("prior %s retrieved partially: %s", phi_safe(hit.study_uid), report.reason)
        out.fetched.append(hit.study_uid)
    return out
