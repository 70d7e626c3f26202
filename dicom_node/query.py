"""C-FIND at STUDY level (Study Root, or Patient Root where the PACS wants it)."""

from __future__ import annotations

from datetime import date, datetime

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from dicom_node.pacs import PacsConfig, PacsError, PacsUnavailable, StudyHit

_PENDING = (0xFF00, 0xFF01)


def _model(pacs: PacsConfig) -> str:
    return (
        PatientRootQueryRetrieveInformationModelFind
        if pacs.query_model == "patient"
        else StudyRootQueryRetrieveInformationModelFind
    )


def _find(pacs: PacsConfig, query: Dataset, calling_ae: str) -> list[Dataset]:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = pacs.timeout_s
    model = _model(pacs)
    ae.add_requested_context(model)
    try:
        assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title)
    except OSError as exc:  # pragma: no cover - pynetdicom reports most failures via is_established
        raise PacsUnavailable(f"cannot connect to {pacs.ae_title}: {exc}") from exc
    if assoc.is_rejected:
        raise PacsUnavailable(f"{pacs.ae_title} rejected the association (is our AE {calling_ae} configured there?)")
    if not assoc.is_established:
        raise PacsUnavailable(f"cannot associate with {pacs.ae_title} at {pacs.host}:{pacs.port}")
    out: list[Dataset] = []
    try:
        for status, identifier in assoc.send_c_find(query, model):
            if not status:
                raise PacsUnavailable(f"{pacs.ae_title}: C-FIND timed out or the association was aborted (is our AE {calling_ae} known to the PACS?)")
            code = int(status.Status)
            if code in _PENDING and identifier is not None:
                out.append(identifier)
            elif code != 0x0000:
                raise PacsError(f"{pacs.ae_title}: C-FIND failed with status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def _date(value: str | None) -> date | None:
    try:
        return datetime.strptime(value, "%Y%m%d").date() if value else None
    except ValueError:
        return None


def find_studies(pacs: PacsConfig, patient_id: str, issuer: str = "", calling_ae: str = "PRIORWATCH") -> list[StudyHit]:
    """Every study of one patient, with what prior selection needs (body part from series level)."""
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = patient_id
    q.IssuerOfPatientID = issuer or ""
    for kw in ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
               "ModalitiesInStudy", "NumberOfStudyRelatedInstances"):
        setattr(q, kw, "")
    hits: list[StudyHit] = []
    for ds in _find(pacs, q, calling_ae):
        if issuer and getattr(ds, "IssuerOfPatientID", "") not in ("", issuer):
            continue  # another issuer's patient with the same ID
        mods = ds.get("ModalitiesInStudy", "")
        hits.append(
            StudyHit(
                study_uid=str(ds.StudyInstanceUID),
                patient_id=str(ds.get("PatientID", patient_id)),
                issuer=str(ds.get("IssuerOfPatientID", "") or issuer),
                study_date=_date(ds.get("StudyDate")),
                modalities=[str(m) for m in ([mods] if isinstance(mods, str) else list(mods)) if m],
                description=str(ds.get("StudyDescription", "")),
                accession=str(ds.get("AccessionNumber", "")),
                n_instances=int(ds.NumberOfStudyRelatedInstances) if ds.get("NumberOfStudyRelatedInstances") not in (None, "") else None,
            )
        )
    for hit in hits:
        hit.body_part = series_body_part(pacs, hit.study_uid, calling_ae, patient_id)
    return hits


def series_body_part(pacs: PacsConfig, study_uid: str, calling_ae: str = "PRIORWATCH", patient_id: str = "") -> str:
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.BodyPartExamined = ""
    q.Modality = ""
    if pacs.query_model == "patient":
        q.PatientID = patient_id
    parts = {str(ds.get("BodyPartExamined", "")).upper() for ds in _find(pacs, q, calling_ae)} - {""}
    return sorted(parts)[0] if parts else ""


def count_instances(pacs: PacsConfig, study_uid: str, calling_ae: str = "PRIORWATCH", patient_id: str = "") -> int | None:
    """The PACS's instance count for a study, to confirm completeness before closing it."""
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study_uid
    q.NumberOfStudyRelatedInstances = ""
    if pacs.query_model == "patient":
        q.PatientID = patient_id
    found = _find(pacs, q, calling_ae)
    if not found or found[0].get("NumberOfStudyRelatedInstances") in (None, ""):
        return None
    return int(found[0].NumberOfStudyRelatedInstances)
