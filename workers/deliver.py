"""Deliver a stored result: a Comprehensive SR to the PACS, and a webhook call for urgent ones.

Each delivery is a row, unique per (comparison, kind): a retried task resumes it and never
sends twice. The SR's SOP Instance UID is fixed before the first attempt, so even a send that
succeeded but whose answer was lost is the same instance to the PACS.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
from sqlmodel import Session, select

from dicom_node.pacs import PacsConfig
from dicom_node.scu import send_files
from dicom_node.sr import build_result_sr
from priorwatch.db import session_scope
from priorwatch.export import comparison_records
from priorwatch.models import Comparison, Delivery, Instance, Study, utcnow
from priorwatch.settings import Settings
from workers.errors import PermanentError, TransientError

log = logging.getLogger(__name__)


def pacs_config(settings: Settings) -> PacsConfig | None:
    if not settings.pacs_ae_title:
        return None
    return PacsConfig(
        ae_title=settings.pacs_ae_title,
        host=settings.pacs_host,
        port=settings.pacs_port,
        query_model=settings.pacs_query_model,
        retrieve=settings.pacs_retrieve,  # type: ignore[arg-type]
        dicomweb_url=settings.pacs_dicomweb_url,
        timeout_s=settings.pacs_timeout_s,
    )


def _delivery(s: Session, comparison_id: int, kind: str) -> Delivery:
    d = s.exec(select(Delivery).where(Delivery.comparison_id == comparison_id, Delivery.kind == kind)).first()
    if d is None:
        d = Delivery(comparison_id=comparison_id, kind=kind, sop_instance_uid=pydicom.uid.generate_uid())
        s.add(d)
        s.flush()
    return d


def wanted(settings: Settings, urgent: bool) -> list[str]:
    kinds = []
    if settings.send_sr_to_pacs and settings.pacs_ae_title:
        kinds.append("sr")
    if urgent and settings.urgent_webhook_url:
        kinds.append("webhook")
    return kinds


def deliver(comparison_id: int, settings: Settings) -> dict[str, str]:
    """Run every pending delivery of one comparison; raises TransientError if one should retry."""
    with session_scope(settings) as s:
        comp = s.get(Comparison, comparison_id)
        if comp is None:
            raise PermanentError(f"comparison {comparison_id} does not exist")
        record = comparison_records(s, comparison_id)[0]
        kinds = wanted(settings, comp.urgent)
        states = {}
        for kind in kinds:
            states[kind] = _delivery(s, comparison_id, kind).state
    transient: list[str] = []
    for kind, state in states.items():
        if state == "sent":
            continue
        try:
            if kind == "sr":
                _send_sr(comparison_id, record, settings)
            else:
                _call_webhook(record, settings)
            _mark(settings, comparison_id, kind, "sent", None)
            states[kind] = "sent"
        except TransientError as exc:
            _mark(settings, comparison_id, kind, "pending", str(exc))
            transient.append(f"{kind}: {exc}")
        except PermanentError as exc:
            _mark(settings, comparison_id, kind, "failed", str(exc))
            states[kind] = "failed"
    if transient:
        raise TransientError("; ".join(transient))
    return states


def _mark(settings: Settings, comparison_id: int, kind: str, state: str, error: str | None) -> None:
    with session_scope(settings) as s:
        d = _delivery(s, comparison_id, kind)
        d.state, d.error, d.attempts = state, error, d.attempts + 1
        if state == "sent":
            d.sent_at = utcnow()
        s.add(d)


def _send_sr(comparison_id: int, record: dict, settings: Settings) -> None:  # type: ignore[type-arg]
    pacs = pacs_config(settings)
    assert pacs is not None
    with session_scope(settings) as s:
        d = _delivery(s, comparison_id, "sr")
        comp = s.get(Comparison, comparison_id)
        assert comp is not None
        paths = [i.path for i in s.exec(select(Instance).where(Instance.study_id == comp.study_id)).all()
                 if not i.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88.")]
        prior = s.get(Study, comp.prior_study_id) if comp.prior_study_id else None
        prior_desc = f"{prior.modality} {prior.body_part} {prior.study_date or ''}".strip() if prior else None
        uid = d.sop_instance_uid
    evidence = []
    for p in paths:
        try:
            evidence.append(pydicom.dcmread(p, stop_before_pixels=True))
        except FileNotFoundError as exc:
            raise PermanentError(f"evidence instance missing from the spool: {Path(p).name}") from exc
    if not evidence:
        raise PermanentError("no image instance to reference in the SR")
    sr = build_result_sr(evidence, record, prior_description=prior_desc)
    sr.SOPInstanceUID = uid
    sr.file_meta.MediaStorageSOPInstanceUID = uid
    out = settings.results_dir / f"comparison-{comparison_id}-sr.dcm"
    sr.save_as(out, enforce_file_format=True)
    try:
        statuses = send_files([out], pacs.host, pacs.port, pacs.ae_title, calling_ae=settings.ae_title)
    except (ConnectionError, OSError, RuntimeError) as exc:
        raise TransientError(f"SR send to {pacs.ae_title} failed: {exc}") from exc
    if not statuses or statuses[0] is None or statuses[0] < 0:
        raise TransientError(f"SR send to {pacs.ae_title}: no answer")
    if statuses[0] in (0xA700, 0xA701, 0xA702):
        raise TransientError(f"{pacs.ae_title} is out of resources (0x{statuses[0]:04X})")
    if statuses[0] not in (0x0000, 0xB000, 0xB007, 0xB006):
        raise PermanentError(f"{pacs.ae_title} refused the SR with status 0x{statuses[0]:04X}")
    log.info("SR for comparison %s stored in %s", comparison_id, pacs.ae_title)


def _call_webhook(record: dict, settings: Settings) -> None:  # type: ignore[type-arg]
    """Urgent notice: identifiers and the finding summary; the receiver looks up the patient."""
    payload = {
        "event": "priorwatch.urgent",
        "comparison_id": record["comparison_id"],
        "accession_number": record["accession_number"],
        "study_uid": record["current_study_uid"],
        "findings": [f for f in record["findings"] if f["urgent"]],
        "draft_text": record["draft_text"],
        "note": "Preliminary AI draft; requires radiologist review.",
    }
    req = urllib.request.Request(
        settings.urgent_webhook_url or "", data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": f"priorwatch-{record['comparison_id']}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as rsp:
            rsp.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise TransientError(f"webhook HTTP {exc.code}") from exc
        raise PermanentError(f"webhook refused: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransientError(f"webhook unreachable: {exc}") from exc
