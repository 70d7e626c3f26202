"""C-FIND at STUDY level (Study Root, or Patient Root where the PACS wants it).

Any PACS: only the required keys are relied on. Modality and body part come from the
series level when the study level does not return ModalitiesInStudy (DCMTK's dcmqrscp
returns no optional key), the study description is a last hint for the body part, and the
caller checks the retrieved headers before using a prior. A value is never sent as a
wildcard pattern by accident: `*` and `?` in a patient ID still match themselves (the query
is a superset), `\\` cannot be sent and becomes `?`, and every returned study is kept only if
its PatientID is exactly ours and its issuer, when the PACS returns one, is ours.
"""

from __future__ import annotations

from datetime import date, datetime

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from dicom_node.pacs import PacsConfig, PacsError, PacsUnavailable, StudyHit, open_association

_PENDING = (0xFF00, 0xFF01)
# Words in a study description that name a body part, for a PACS that returns none.
_DESCRIPTION_BODY_PARTS = {
    "CHEST": "CHEST", "THORAX": "CHEST", "THORAC": "CHEST", "LUNG": "CHEST", "CXR": "CHEST",
    "HEAD": "HEAD", "BRAIN": "HEAD", "SKULL": "HEAD", "ABDOMEN": "ABDOMEN", "PELVIS": "PELVIS",
    "HAND": "HAND", "KNEE": "KNEE", "SPINE": "SPINE", "FOOT": "FOOT", "SHOULDER": "SHOULDER",
}


def _model(pacs: PacsConfig) -> str:
    return (
        PatientRootQueryRetrieveInformationModelFind
        if pacs.query_model == "patient"
        else StudyRootQueryRetrieveInformationModelFind
    )


def _find(pacs: PacsConfig, query: Dataset, calling_ae: str) -> list[Dataset]:
    ae = AE(ae_title=calling_ae)
    model = _model(pacs)
    ae.add_requested_context(model)
    assoc = open_association(ae, pacs, calling_ae)
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


def match_value(value: str) -> str:
    """`value` as a C-FIND match key that matches at least `value` itself: `\\` (a value
    separator, never part of a single value) becomes the one-character wildcard `?`; `*` and
    `?` already match themselves. The answers are then filtered exactly (`same_patient`)."""
    return value.replace("\\", "?")


def same_patient(ds: Dataset, patient_id: str, issuer: str) -> bool:
    """Exactly our patient: the same PatientID, and the same issuer when the PACS says one."""
    if str(ds.get("PatientID", "") or "") != patient_id:
        return False
    theirs = str(ds.get("IssuerOfPatientID", "") or "")
    return not theirs or not issuer or theirs == issuer


def _strings(value: object) -> list[str]:
    if value in (None, ""):
        return []
    return [str(v) for v in ([value] if isinstance(value, str) else list(value)) if v]  # type: ignore[call-overload]


def body_part_from_description(description: str) -> str:
    words = description.upper().replace("^", " ").replace("/", " ").split()
    for w in words:
        for key, part in _DESCRIPTION_BODY_PARTS.items():
            if w.startswith(key):
                return part
    return ""


def find_studies(pacs: PacsConfig, patient_id: str, issuer: str = "", calling_ae: str = "PRIORWATCH") -> list[StudyHit]:
    """Every study of exactly this patient, with what prior selection needs: modalities and body
    part from the series level where the study level lacks them."""
    if not patient_id.strip():
        return []  # an empty PatientID would be a universal match: every patient's studies
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = match_value(patient_id)
    q.IssuerOfPatientID = ""  # returned when the PACS knows it; matched by us, not by the PACS
    for kw in ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
               "ModalitiesInStudy", "NumberOfStudyRelatedInstances"):
        setattr(q, kw, "")
    hits: list[StudyHit] = []
    for ds in _find(pacs, q, calling_ae):
        if not same_patient(ds, patient_id, issuer) or not ds.get("StudyInstanceUID"):
            continue  # a wildcard's other match, or another issuer's patient with the same ID
        n = ds.get("NumberOfStudyRelatedInstances")
        hits.append(
            StudyHit(
                study_uid=str(ds.StudyInstanceUID),
                patient_id=patient_id,
                issuer=str(ds.get("IssuerOfPatientID", "") or ""),  # "" when the PACS does not say
                study_date=_date(ds.get("StudyDate")),
                modalities=_strings(ds.get("ModalitiesInStudy")),
                description=str(ds.get("StudyDescription", "") or ""),
                accession=str(ds.get("AccessionNumber", "") or ""),
                n_instances=int(n) if n not in (None, "") else None,
            )
        )
    for hit in hits:
        modalities, hit.body_part = series_info(pacs, hit.study_uid, calling_ae, patient_id)
        if not hit.modalities:
            hit.modalities = modalities
        if not hit.body_part:
            hit.body_part = body_part_from_description(hit.description)
    return hits


def series_info(pacs: PacsConfig, study_uid: str, calling_ae: str = "PRIORWATCH",
                patient_id: str = "") -> tuple[list[str], str]:
    """(modalities, body part) of a study from its series: Modality is a required key at the
    series level; BodyPartExamined is optional ("" when no series says it)."""
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.BodyPartExamined = ""
    q.Modality = ""
    if pacs.query_model == "patient":
        q.PatientID = match_value(patient_id)
    found = _find(pacs, q, calling_ae)
    modalities = sorted({str(ds.get("Modality", "") or "").upper() for ds in found} - {""})
    parts = {str(ds.get("BodyPartExamined", "") or "").upper() for ds in found} - {""}
    return modalities, (sorted(parts)[0] if parts else "")


def series_body_part(pacs: PacsConfig, study_uid: str, calling_ae: str = "PRIORWATCH", patient_id: str = "") -> str:
    return series_info(pacs, study_uid, calling_ae, patient_id)[1]


def count_instances(pacs: PacsConfig, study_uid: str, calling_ae: str = "PRIORWATCH", patient_id: str = "") -> int | None:
    """The PACS's instance count for a study, to confirm completeness before closing it; None
    when the PACS does not return the (optional) count."""
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study_uid
    q.NumberOfStudyRelatedInstances = ""
    if pacs.query_model == "patient":
        q.PatientID = match_value(patient_id)
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
    if not patient_id.strip():
        return []
    params = {"PatientID": match_value(patient_id), "includefield": "00080061,00201208,00081030,00080050,00080020,00100021"}
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
        if _qido_value(item, "00100020") != patient_id or (issuer and iss not in ("", issuer)):
            continue  # exactly our patient (a QIDO PatientID may be matched as a pattern)
        n = _qido_value(item, "00201208")
        hits.append(StudyHit(
            study_uid=_qido_value(item, "0020000D"),
            patient_id=patient_id,
            issuer=iss,
            study_date=_date(_qido_value(item, "00080020")),
            modalities=[str(m) for m in (item.get("00080061", {}).get("Value") or [])],
            description=_qido_value(item, "00081030"),
            accession=_qido_value(item, "00080050"),
            n_instances=int(n) if n else None,
        ))
    return hits
