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


def _qido_value(item: dict, tag: str) -> str:  # type: ignore[type-arg]
    vals = item.get(tag, {}).get("Value") or [""]
    v = vals[0]
    return str(v.get("Alphabetic", "") if isinstance(v, dict) else v)


def find_studies_qido(pacs: PacsConfig, patient_id: str, issuer: str = "") -> list[StudyHit]:
    """The same query over DICOMweb QIDO-RS, for a PACS reached by HTTP."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    if not pacs.dicomweb_url:
        raise PacsError(f"{pacs.ae_title}: QIDO-RS selected but no dicomweb_url configured")
    params = {"PatientID": patient_id, "includefield": "00080061,00201208,00081030,00080050,00080020,00100021"}
    url = f"{pacs.dicomweb_url.rstrip('/')}/studies?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/dicom+json"}),
                                    timeout=pacs.timeout_s) as rsp:
            body = rsp.read()
    except urllib.error.HTTPError as exc:
        raise (PacsUnavailable if exc.code >= 500 else PacsError)(f"{pacs.ae_title}: QIDO-RS HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise PacsUnavailable(f"{pacs.ae_title}: QIDO-RS unreachable: {exc}") from exc
    hits = []
    for item in json.loads(body or b"[]"):
        iss = _qido_value(item, "00100021")
        if issuer and iss not in ("", issuer):
            continue
        n = _qido_value(item, "00201208")
        hits.append(StudyHit(
            study_uid=_qido_value(item, "0020000D"),
            patient_id=_qido_value(item, "00100020") or patient_id,
            issuer=iss or issuer,
            study_date=_date(_qido_value(item, "00080020")),
            modalities=[str(m) for m in (item.get("00080061", {}).get("Value") or [])],
            description=_qido_value(item, "00081030"),
            accession=_qido_value(item, "00080050"),
            n_instances=int(n) if n else None,
        ))
    return hits
