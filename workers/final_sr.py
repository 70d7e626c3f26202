"""The `final_sr` delivery: the radiologist's signed report as a FINAL/VERIFIED SR to the PACS.

The dashboard writes the outbox row (kind ``final_sr``) in the transaction that records the
sign-off; the sweeper in `workers.deliver` sends it through this sender (registered by the
``priorwatch.deliveries`` entry point). The preliminary AI draft SR, when it was sent and we
still hold its file, is referenced in Predecessor Documents.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom

from dicom_node.sr import build_final_sr
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Delivery, Review, SignOff, Study
from priorwatch.settings import Settings
from workers.deliver import image_paths, read_evidence, save_and_store, sr_path
from workers.errors import PermanentError

log = logging.getLogger(__name__)


def preliminary_path(settings: Settings, comparison_id: int) -> Path:
    """Where `workers.deliver.send_sr` keeps the preliminary SR it sent."""
    return sr_path(settings, comparison_id)


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
        paths = image_paths(s, comp.study_id)
        prior = s.get(Study, comp.prior_study_id) if comp.prior_study_id else None
        prior_uid = prior.study_uid if prior else None
        text, labels, signer = review.final_text, json.loads(review.final_labels_json), review.reviewer
    evidence = read_evidence(paths, "signed SR")
    pre_file = preliminary_path(settings, comparison_id)
    preliminary = pydicom.dcmread(pre_file) if pre_file.is_file() else None
    sr = build_final_sr(evidence, final_text=text, final_labels=labels, signer=signer,
                        prior_study_uid=prior_uid, preliminary=preliminary)
    save_and_store(sr, d.sop_instance_uid or sr.SOPInstanceUID,
                   sr_path(settings, comparison_id, "final-sr"), pacs, settings, "signed SR")
    log.info("signed SR for comparison %s stored in %s", comparison_id, pacs.ae_title)
