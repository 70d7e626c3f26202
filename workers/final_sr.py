"""The `final_sr` delivery: the radiologist's signed report as a FINAL/VERIFIED SR to the PACS.

The dashboard writes the outbox row (kind ``final_sr``) in the transaction that records the
sign-off; the sweeper in `workers.deliver` sends it through this sender (registered by the
``priorwatch.deliveries`` entry point). The preliminary AI draft SR, when it was sent, is
referenced in Predecessor Documents, by any sweeper: no file of another machine is needed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
from pydicom.uid import ComprehensiveSRStorage
from sqlmodel import select

from dicom_node.sr import build_final_sr
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Delivery, Review, SignOff, Study
from priorwatch.settings import Settings
from workers.deliver import image_instances, read_evidence, save_and_store, sr_path, sr_series_uid
from workers.errors import PermanentError

log = logging.getLogger(__name__)


def preliminary_path(settings: Settings, comparison_id: int) -> Path:
    """Where `workers.deliver.send_sr` keeps the preliminary SR it sent (on the sender's disk)."""
    return sr_path(settings, comparison_id)


def preliminary_reference(settings: Settings, comparison_id: int, study_uid: str) -> pydicom.Dataset | None:
    """The sent preliminary draft as the signed report's predecessor, wherever this sweeper runs:
    the file when this process sent it, else its identifiers from the draft's outbox row (its SOP
    Instance UID is fixed there, its series derived from it: `deliver.sr_series_uid`). None when
    no draft was sent."""
    f = preliminary_path(settings, comparison_id)
    if f.is_file():
        return pydicom.dcmread(f, stop_before_pixels=True)
    with session_scope(settings) as s:
        draft = s.exec(select(Delivery).where(Delivery.comparison_id == comparison_id, Delivery.kind == "sr",
                                              Delivery.state == "sent")).first()
        uid = draft.sop_instance_uid if draft is not None else None
    if not uid:
        return None
    ref = pydicom.Dataset()
    ref.StudyInstanceUID, ref.SeriesInstanceUID = study_uid, sr_series_uid(uid)
    ref.SOPClassUID, ref.SOPInstanceUID = ComprehensiveSRStorage, uid
    return ref


def send_final_sr(comparison_id: int, d: Delivery, settings: Settings) -> None:
    from workers.deliver import pacs_config

    pacs = pacs_config(settings)
    if pacs is None:
        raise PermanentError("no PACS configured (pacs_ae_title) to send the signed report to")
    with session_scope(settings) as s:
        so = s.get(SignOff, comparison_id)
        comp = s.get(Comparison, comparison_id)
        if so is None or comp is None:
            raise PermanentError(f"comparison {comparison_id} has no sign-off")
        review = s.get(Review, so.review_id)
        assert review is not None
        if review.action == "rejected":
            raise PermanentError("a rejected draft has no signed report to send")
        current = image_instances(s, comp.study_id)
        study = s.get(Study, comp.study_id)
        prior = s.get(Study, comp.prior_study_id) if comp.prior_study_id else None
        prior_uid = prior.study_uid if prior else None
        study_uid = study.study_uid if study else ""
        text, labels, signer = review.final_text, json.loads(review.final_labels_json), review.reviewer
    evidence = read_evidence(settings, current, "signed SR")
    preliminary = preliminary_reference(settings, comparison_id, study_uid)
    sr = build_final_sr(evidence, final_text=text, final_labels=labels, signer=signer,
                        prior_study_uid=prior_uid, preliminary=preliminary)
    save_and_store(sr, d.sop_instance_uid or sr.SOPInstanceUID,
                   sr_path(settings, comparison_id, "final-sr"), pacs, settings, "signed SR")
    log.info("signed SR for comparison %s stored in %s", comparison_id, pacs.ae_title)
