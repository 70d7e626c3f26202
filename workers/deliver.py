"""Deliver a stored result through a transactional outbox: a Comprehensive SR to the PACS, and a
signed webhook call for urgent ones (other kinds register a sender).

The outbox rows are written in the comparison's own transaction (`add_outbox_rows`), so a
result never exists without its deliveries. A sweeper (`send_due`) sends what is due, with
exponential back-off; a row is claimed by one conditional UPDATE (pending -> sending) and
marked sent by another, so one sender sends it, carrying its idempotency key. A sender that died
mid-send releases its claim after `delivery_claim_s` and the row is sent again with the same key:
whether the dead send arrived cannot be known, so on the wire a notice is sent at least once and
at most once more per death, and the receiver de-duplicates on `Idempotency-Key` (its purpose).
A delivery that gives up is `failed` with its reason (`priorwatch status`; `priorwatch retry` sends it again). The SR's
SOP Instance UID is fixed on the row, so a send whose answer was lost is the same instance.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

import pydicom
from sqlalchemy import and_, or_, select as sa_select, update
from sqlmodel import Session, select

from dicom_node.pacs import PacsConfig
from dicom_node.scu import send_files
from dicom_node.sr import build_result_sr
from dicom_node.tls import client_context
from priorwatch.db import get_engine, session_scope
from priorwatch.export import comparison_records
from priorwatch.models import Comparison, Delivery, Instance, Study, utcnow
from priorwatch.instances import is_sr_class
from priorwatch.outbox import idempotency_key
from priorwatch.settings import Settings
from workers.errors import PermanentError, TransientError
from workers.node_fetch import InstanceFiles, InstanceNotHeld

log = logging.getLogger(__name__)

delivery_t = Delivery.__table__  # type: ignore[attr-defined]

SIGNATURE_HEADER = "X-PriorWatch-Signature"  # "sha256=" + HMAC-SHA256(secret, "<timestamp>.<body>")
TIMESTAMP_HEADER = "X-PriorWatch-Timestamp"  # unix seconds; receivers reject old ones (replay)
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
        tls=client_context(settings),  # DICOM TLS when pacs_tls is on
    )


Sender = Callable[[int, Delivery, Settings], None]  # (comparison id, row, settings); raises Transient/Permanent


def wanted(settings: Settings, urgent: bool) -> list[str]:
    """The deliveries a new result gets, by settings."""
    kinds = []
    if settings.send_sr_to_pacs and settings.pacs_ae_title:
        kinds.append("sr")
    if urgent and settings.urgent_webhook_url:
        kinds.append("webhook")
    return kinds


def add_outbox_rows(s: Session, comparison_id: int, settings: Settings, urgent: bool,
                    kinds: list[str] | None = None) -> list[Delivery]:
    """Outbox rows for a result, in the caller's transaction (the one that writes the result)."""
    rows = []
    for kind in kinds if kinds is not None else wanted(settings, urgent):
        d = s.exec(select(Delivery).where(Delivery.comparison_id == comparison_id, Delivery.kind == kind)).first()
        if d is None:
            d = Delivery(comparison_id=comparison_id, kind=kind, idempotency_key=idempotency_key(comparison_id, kind),
                         sop_instance_uid=pydicom.uid.generate_uid() if "sr" in kind else None)
            s.add(d)
        rows.append(d)
    s.flush()
    return rows


def backoff_s(settings: Settings, attempts: int) -> float:
    return float(min(settings.delivery_backoff_s * 2 ** max(attempts - 1, 0), settings.delivery_backoff_max_s))


def _claim(settings: Settings, delivery_id: int, ignore_backoff: bool) -> Delivery | None:
    """pending (and due) -> sending, or a dead sender's expired claim; None if not ours to send."""
    now = utcnow()
    due = or_(delivery_t.c.next_attempt_at.is_(None), delivery_t.c.next_attempt_at <= now)
    pending = and_(delivery_t.c.state == "pending", due) if not ignore_backoff else delivery_t.c.state == "pending"
    stale = and_(delivery_t.c.state == "sending", delivery_t.c.claimed_until < now)
    with get_engine(settings).begin() as conn:
        n = conn.execute(
            update(delivery_t).where(and_(delivery_t.c.id == delivery_id, or_(pending, stale))).values(
                state="sending", claimed_until=now + timedelta(seconds=settings.delivery_claim_s),
                attempts=delivery_t.c.attempts + 1)
        ).rowcount
    if n != 1:
        return None
    with session_scope(settings) as s:
        return s.get(Delivery, delivery_id)


def _finish(settings: Settings, d: Delivery, state: str, error: str | None) -> None:
    """sending -> sent | pending (retry later) | failed; only from our own claim."""
    now = utcnow()
    values: dict[str, object] = {"state": state, "error": error, "claimed_until": None}
    if state == "sent":
        values["sent_at"] = now
    elif state == "pending":
        values["next_attempt_at"] = now + timedelta(seconds=backoff_s(settings, d.attempts))
    with get_engine(settings).begin() as conn:
        conn.execute(update(delivery_t).where(and_(delivery_t.c.id == d.id, delivery_t.c.state == "sending"))
                     .values(**values))


def _sender(kind: str) -> Sender | None:
    if kind in SENDERS:
        return SENDERS[kind]
    for ep in entry_points(group="priorwatch.deliveries"):  # other rooms' kinds (e.g. a final SR)
        if ep.name == kind:
            SENDERS[kind] = ep.load()
            return SENDERS[kind]
    return None


def send_one(settings: Settings, delivery_id: int, ignore_backoff: bool = False) -> str | None:
    """Send one outbox row if it is ours to send; returns its new state (None: not claimed)."""
    d = _claim(settings, delivery_id, ignore_backoff)
    if d is None:
        return None
    send = _sender(d.kind)
    try:
        if send is None:
            raise TransientError(f"no sender for delivery kind {d.kind!r} in this worker")
        send(d.comparison_id, d, settings)
    except PermanentError as exc:
        _finish(settings, d, "failed", str(exc)[:2000])
        log.error("delivery %s (%s) of comparison %s failed: %s", d.id, d.kind, d.comparison_id, exc)
        return "failed"
    except Exception as exc:  # TransientError, or anything unexpected: back off and try again
        reason = str(exc) if isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}"
        if d.attempts >= settings.delivery_max_attempts:
            _finish(settings, d, "failed", f"gave up after {d.attempts} attempts: {reason}"[:2000])
            log.error("delivery %s (%s) of comparison %s gave up after %d attempts", d.id, d.kind,
                      d.comparison_id, d.attempts)
            return "failed"
        _finish(settings, d, "pending", reason[:2000])
        log.warning("delivery %s (%s) of comparison %s: attempt %d failed; retrying with back-off", d.id, d.kind,
                    d.comparison_id, d.attempts)
        return "pending"
    _finish(settings, d, "sent", None)
    return "sent"


def send_due(settings: Settings, limit: int = 200) -> dict[str, int]:
    """The sweeper's pass over the outbox: every due pending row, and rows of dead senders."""
    now = utcnow()
    with get_engine(settings).connect() as conn:
        ids = conn.execute(
            sa_select(delivery_t.c.id).where(or_(
                and_(delivery_t.c.state == "pending",
                     or_(delivery_t.c.next_attempt_at.is_(None), delivery_t.c.next_attempt_at <= now)),
                and_(delivery_t.c.state == "sending", delivery_t.c.claimed_until < now),
            )).order_by(delivery_t.c.id).limit(limit)
        ).scalars().all()
    counts: dict[str, int] = {}
    for i in ids:
        state = send_one(settings, int(i))
        if state is not None:
            counts[state] = counts.get(state, 0) + 1
    return counts


def deliver(comparison_id: int, settings: Settings) -> dict[str, str]:
    """Send every unsent delivery of one comparison now (back-off ignored: an explicit call);
    raises TransientError when one is left to retry. Rows missing for an older result are added."""
    with session_scope(settings) as s:
        comp = s.get(Comparison, comparison_id)
        if comp is None:
            raise PermanentError(f"comparison {comparison_id} does not exist")
        add_outbox_rows(s, comparison_id, settings, comp.urgent)
        rows = s.exec(select(Delivery).where(Delivery.comparison_id == comparison_id).order_by(Delivery.id)).all()
        states = {d.kind: d.state for d in rows}
        ids = {d.kind: d.id for d in rows if d.state == "pending"}
    transient: list[str] = []
    for kind, did in ids.items():
        assert did is not None
        new = send_one(settings, did, ignore_backoff=True)
        if new is not None:
            states[kind] = new
        if new == "pending":
            with session_scope(settings) as s:
                d = s.get(Delivery, did)
                transient.append(f"{kind}: {d.error if d else ''}")
    if transient:
        raise TransientError("; ".join(transient))
    return states


def retry_failed(settings: Settings) -> int:
    """`priorwatch retry`: failed deliveries back to pending, due now, with a fresh attempt count."""
    with get_engine(settings).begin() as conn:
        return int(conn.execute(
            update(delivery_t).where(delivery_t.c.state == "failed").values(
                state="pending", attempts=0, next_attempt_at=None, claimed_until=None,
                error="retry requested by the operator")
        ).rowcount)


def _record(comparison_id: int, settings: Settings) -> dict:  # type: ignore[type-arg]
    with session_scope(settings) as s:
        recs = comparison_records(s, comparison_id)
    if not recs:
        raise PermanentError(f"comparison {comparison_id} does not exist")
    return recs[0]


def send_sr(comparison_id: int, d: Delivery, settings: Settings) -> None:
    """The result as a Comprehensive SR to the PACS, under the row's fixed SOP Instance UID."""
    pacs = pacs_config(settings)
    if pacs is None:
        raise PermanentError("no PACS configured (pacs_ae_title) to send the SR to")
    record = _record(comparison_id, settings)
    with session_scope(settings) as s:
        comp = s.get(Comparison, comparison_id)
        assert comp is not None
        current = image_instances(s, comp.study_id)
        prior = s.get(Study, comp.prior_study_id) if comp.prior_study_id else None
        prior_desc = f"{prior.modality} {prior.body_part} {prior.study_date or ''}".strip() if prior else None
        prior_instances = image_instances(s, prior.id) if prior and prior.id is not None else []
    uid = d.sop_instance_uid or pydicom.uid.generate_uid()
    evidence = read_evidence(settings, current, "SR")
    # the prior compared with, referenced in the SR's evidence where we still hold it
    prior_evidence = read_evidence(settings, prior_instances, "SR", required=False) if prior_instances else []
    sr = build_result_sr(evidence, record, prior_evidence=prior_evidence, prior_description=prior_desc)
    save_and_store(sr, uid, sr_path(settings, comparison_id), pacs, settings, "SR")
    log.info("SR for comparison %s stored in %s", comparison_id, pacs.ae_title)


def sr_path(settings: Settings, comparison_id: int, kind: str = "sr") -> Path:
    """Where a sent SR is kept: `sr` the preliminary draft (the signed report names it as its
    predecessor), `final-sr` the signed report. One rule for both senders."""
    return settings.results_dir / f"comparison-{comparison_id}-{kind}.dcm"


def sr_series_uid(sop_instance_uid: str) -> str:
    """The series of an SR we send, derived from its fixed SOP Instance UID: a re-send is the same
    series too, and the signed report can name its predecessor from the outbox row alone."""
    return pydicom.uid.generate_uid(entropy_srcs=[sop_instance_uid, "priorwatch-sr-series"])


def save_and_store(sr: pydicom.Dataset, uid: str, out: Path, pacs: PacsConfig, settings: Settings,
                   what: str) -> None:
    """Give `sr` its outbox row's SOP Instance UID (a re-send is the same instance), keep it in
    the results folder and C-STORE it. Both SR senders (draft, signed) end here."""
    sr.SOPInstanceUID = uid
    sr.file_meta.MediaStorageSOPInstanceUID = uid
    sr.SeriesInstanceUID = sr_series_uid(uid)
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    sr.save_as(out, enforce_file_format=True)
    store_sr(out, pacs, settings, what)


def image_instances(s: Session, study_id: int) -> list[tuple[int | None, str]]:
    """(index id, recorded path) of a study's image instances (our own SRs are not evidence)."""
    rows = s.exec(select(Instance).where(Instance.study_id == study_id).order_by(Instance.id)).all()  # type: ignore[arg-type]
    return [(i.id, i.path) for i in rows if not is_sr_class(i.sop_class_uid)]


def read_evidence(settings: Settings, instances: list[tuple[int | None, str]], what: str,
                  required: bool = True) -> list[pydicom.Dataset]:
    """Headers of the instances an SR references, read where this process can: the spool when it
    has the node's disk, else over the node's HTTP store (`worker_fetch=node`: a sweeper on any
    machine). A missing required one is permanent (never a guess); a missing prior is left out
    with a warning; an unreachable node is transient."""
    evidence = []
    with InstanceFiles(settings, f"{what.replace(' ', '-')}") as files:
        for instance_id, recorded in instances:
            try:
                evidence.append(pydicom.dcmread(files.path(instance_id, recorded), stop_before_pixels=True))
            except (FileNotFoundError, InstanceNotHeld) as exc:
                if required:
                    raise PermanentError(f"evidence instance missing from the spool: {Path(recorded).name}") from exc
                log.warning("prior instance %s no longer held: not referenced in the %s", Path(recorded).name, what)
    if required and not evidence:
        raise PermanentError(f"no image instance to reference in the {what}")
    return evidence


def store_sr(path: Path, pacs: PacsConfig, settings: Settings, what: str) -> None:
    """C-STORE one SR file to the PACS: out of resources or no answer is transient (the
    sweeper tries again with back-off); any other failure status is permanent."""
    try:
        statuses = send_files([path], pacs.host, pacs.port, pacs.ae_title, calling_ae=settings.ae_title,
                              tls_args=pacs.tls)
    except (ConnectionError, OSError, RuntimeError) as exc:
        raise TransientError(f"{what} send to {pacs.ae_title} failed: {exc}") from exc
    if not statuses or statuses[0] is None or statuses[0] < 0:
        raise TransientError(f"{what} send to {pacs.ae_title}: no answer")
    if statuses[0] in (0xA700, 0xA701, 0xA702):
        raise TransientError(f"{pacs.ae_title} is out of resources (0x{statuses[0]:04X})")
    if statuses[0] not in (0x0000, 0xB000, 0xB007, 0xB006):
        raise PermanentError(f"{pacs.ae_title} refused the {what} with status 0x{statuses[0]:04X}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: HMAC-SHA256 over "<timestamp>.<body>" (hex), as Stripe/GitHub-style receivers check."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def call_webhook(comparison_id: int, d: Delivery, settings: Settings) -> None:
    """Urgent notice: identifiers and the finding summary; the receiver looks up the patient.
    Signed when `urgent_webhook_secret` is set; the Idempotency-Key is the outbox row's."""
    if not settings.urgent_webhook_url:
        raise PermanentError("no urgent_webhook_url configured")
    record = _record(comparison_id, settings)
    payload = {
        "event": "priorwatch.urgent",
        "comparison_id": record["comparison_id"],
        "accession_number": record["accession_number"],
        "study_uid": record["current_study_uid"],
        "findings": [f for f in record["findings"] if f["urgent"]],
        "draft_text": record["draft_text"],
        "note": "Preliminary AI draft; requires radiologist review.",
    }
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json",
               "Idempotency-Key": d.idempotency_key or idempotency_key(comparison_id, d.kind)}
    if settings.urgent_webhook_secret:
        ts = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = ts
        headers[SIGNATURE_HEADER] = sign(settings.urgent_webhook_secret, ts, body)
    req = urllib.request.Request(settings.urgent_webhook_url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=settings.webhook_timeout_s) as rsp:
            rsp.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise TransientError(f"webhook HTTP {exc.code}") from exc
        raise PermanentError(f"webhook refused: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise TransientError(f"webhook unreachable: {exc}") from exc


SENDERS: dict[str, Sender] = {"sr": send_sr, "webhook": call_webhook}


def register_sender(kind: str, send: Sender) -> None:
    """Another kind of delivery (e.g. the signed final report as SR): rows of `kind` go through `send`."""
    SENDERS[kind] = send
