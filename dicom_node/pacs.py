"""Typed configuration of a PACS we query and retrieve from, and what a query returns."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field


class RetrieveMethod(StrEnum):
    c_get = "c-get"
    c_move = "c-move"
    wado_rs = "wado-rs"


class PacsConfig(BaseModel):
    ae_title: str
    host: str = "127.0.0.1"
    port: int = 104
    query_model: str = Field(default="study", pattern="^(study|patient)$")  # C-FIND root
    retrieve: RetrieveMethod = RetrieveMethod.c_get
    dicomweb_url: str | None = None  # e.g. http://pacs:8042/dicom-web, for QIDO-RS / WADO-RS
    timeout_s: float = 30.0


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
    """The PACS could not be reached or refused us: try again later."""


class PacsError(Exception):
    """The PACS answered with a failure that retrying will not fix."""
