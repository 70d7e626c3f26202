"""Typed configuration of a PACS we query and retrieve from, and what a query returns."""

from __future__ import annotations

import ssl
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RetrieveMethod(StrEnum):
    c_get = "c-get"
    c_move = "c-move"
    wado_rs = "wado-rs"


class PacsConfig(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    ae_title: str
    host: str = "127.0.0.1"
    port: int = 104
    query_model: str = Field(default="study", pattern="^(study|patient)$")  # C-FIND root
    retrieve: RetrieveMethod = RetrieveMethod.c_get
    dicomweb_url: str | None = None  # e.g. http://pacs:8042/dicom-web, for QIDO-RS / WADO-RS
    timeout_s: float = 30.0
    # DICOM TLS: pynetdicom's tls_args (client context, the name the PACS's certificate carries)
    tls: tuple[ssl.SSLContext, str] | None = Field(default=None, exclude=True)


class StudyHit(BaseModel):
    study_uid: str
    patient_id: str
    issuer: str = ""
    study_date: date | None = None
    modalities: list[str] = Field(default_factory=list)
    description: str = ""
    body_part: str = ""
    accession: str = ""
    n_instances: int | None = None


class PacsUnavailable(Exception):
    """The PACS could not be reached or refused us for now: try again later."""


class PacsError(Exception):
    """The PACS answered with a failure that retrying will not fix."""


class PacsConfigError(PacsError):
    """The PACS refuses us for good (e.g. "called AE title not recognised"): a configuration
    error on one side or the other, reported with the PACS's own reason, never retried."""


def open_association(ae: Any, pacs: PacsConfig, calling_ae: str, **kw: Any) -> Any:
    """Associate with the PACS (over TLS when configured); a rejection says who refused and why.

    A permanent rejection (result 1) is a `PacsConfigError`; a transient one (busy, local
    limit) or no answer at all is `PacsUnavailable`."""
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = pacs.timeout_s
    if pacs.tls is not None:
        kw["tls_args"] = pacs.tls
    try:
        assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title, **kw)
    except OSError as exc:  # pragma: no cover - pynetdicom reports most failures via is_established
        raise PacsUnavailable(f"cannot connect to {pacs.ae_title} at {pacs.host}:{pacs.port}: {exc}") from exc
    rj = _rejection(assoc)
    if rj is not None:
        why = f"{rj.result_str} ({rj.source_str}): {rj.reason_str}"
        if rj.result == 0x01:
            raise PacsConfigError(
                f"{pacs.ae_title} rejected our association from {calling_ae}: {why} "
                "- check the PACS AE title, our AE title and the PACS's list of known peers")
        raise PacsUnavailable(f"{pacs.ae_title} rejected our association for now: {why}")
    if not assoc.is_established:
        raise PacsUnavailable(f"cannot associate with {pacs.ae_title} at {pacs.host}:{pacs.port}"
                              + (" (TLS)" if pacs.tls is not None else ""))
    return assoc


def _rejection(assoc: Any) -> Any:
    """The peer's A-ASSOCIATE-RJ, if that is how it answered. pynetdicom (3.0) reports an abort
    instead when the reject and the peer's close both land before the requesting thread looks
    (its transport is already closed): the reject is then still waiting in the DUL's queue."""
    if assoc.is_rejected:
        return assoc.acceptor.primitive
    if assoc.is_established:
        return None
    try:
        pending = assoc.dul.peek_next_pdu()
    except Exception:  # no DUL state to read
        return None
    if getattr(pending, "result", None) in (0x01, 0x02) and hasattr(pending, "reason_str"):
        return pending
    return None
