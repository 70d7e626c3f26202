"""Read what the index needs from an instance's header, never touching its pixel data."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_node import statuses


class IngestError(Exception):
    """An instance the node refuses, with the C-STORE status and ErrorComment to answer."""

    def __init__(self, status: int, comment: str | None = None) -> None:
        self.status = status
        self.comment = comment or statuses.describe(status)
        super().__init__(f"0x{status:04X} {self.comment}")


@dataclass(slots=True)
class Header:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    patient_id: str
    transfer_syntax: str = ""
    study: dict[str, Any] = field(default_factory=dict)  # Study columns
    instance: dict[str, Any] = field(default_factory=dict)  # Instance metadata columns


# Elements in the identity set: a data set with none of them is not DICOM we understand.
_IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")


def _s(ds: Dataset, keyword: str, limit: int) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value: keep the instance, drop the field
        return ""
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().strip("\x00")[:limit]


def _first_float(ds: Dataset, *keywords: str) -> float | None:
    for kw in keywords:
        try:
            value = ds.get(kw)
            if value is None or value == "":
                continue
            if isinstance(value, (MultiValue, list, tuple)):
                value = value[0]
            return float(value)
        except Exception:
            continue
    return None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except Exception:
        return None


def parse_da(value: str) -> date | None:
    value = (value or "").strip().replace(".", "")
    if len(value) < 8:
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def parse_tm(value: str) -> time | None:
    value = (value or "").strip().replace(":", "")
    if len(value) < 2:
        return None
    try:
        hh = int(value[:2])
        mm = int(value[2:4]) if len(value) >= 4 else 0
        ss = int(value[4:6]) if len(value) >= 6 else 0
        frac = value[7:13] if len(value) > 7 and value[6] == "." else ""
        us = int(frac.ljust(6, "0")) if frac.isdigit() else 0
        return time(hh, mm, min(ss, 59), us)
    except ValueError:
        return None


def read_header(raw: bytes) -> Header:
    """Parse the header of a Part-10 byte string (preamble, file meta, data set).

    Raises IngestError with NOT_DICOM when the bytes are not DICOM we understand, and with a
    specific MISSING_* status when a required identifier is absent or empty.
    """
    try:
        # (no warnings.catch_warnings here: it is not thread-safe across associations)
        ds = dcmread(io.BytesIO(raw), stop_before_pixels=True, force=False)
        present = {kw: _s(ds, kw, 64) for kw in _IDENTITY}
    except Exception as exc:
        raise IngestError(statuses.NOT_DICOM, f"cannot understand: not parseable DICOM ({type(exc).__name__})") from None
    if not any(present.values()):
        raise IngestError(statuses.NOT_DICOM)
    for keyword, status in statuses.REQUIRED:
        if not present[keyword]:
            raise IngestError(status)
    if not present["SOPClassUID"]:
        raise IngestError(statuses.MISSING_SOP_CLASS_UID)

    try:
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    except Exception:
        ts = ""
    study_date = parse_da(_s(ds, "StudyDate", 16))
    study_time = parse_tm(_s(ds, "StudyTime", 16))
    reason = _s(ds, "RequestedProcedureDescription", 256) or _s(ds, "ReasonForStudy", 256)
    if not reason:
        reason = _s(ds, "ReasonForTheRequestedProcedure", 256)
    modality = _s(ds, "Modality", 16)
    header = Header(
        study_uid=present["StudyInstanceUID"],
        series_uid=present["SeriesInstanceUID"],
        sop_instance_uid=present["SOPInstanceUID"],
        sop_class_uid=present["SOPClassUID"],
        patient_id=present["PatientID"],
        transfer_syntax=ts[:64],
    )
    header.study = {
        "patient_id": present["PatientID"],
        "issuer": _s(ds, "IssuerOfPatientID", 64),
        "patient_name": _s(ds, "PatientName", 128),
        "patient_sex": _s(ds, "PatientSex", 16),
        "patient_birth_date": parse_da(_s(ds, "PatientBirthDate", 16)),
        "accession": _s(ds, "AccessionNumber", 64),
        "study_date": study_date,
        "study_datetime": datetime.combine(study_date, study_time) if study_date and study_time else None,
        "modality": modality,
        "body_part": _s(ds, "BodyPartExamined", 64),
        "description": _s(ds, "StudyDescription", 128),
        "institution": _s(ds, "InstitutionName", 128),
        "reason": reason,
    }
    header.instance = {
        "modality": modality,
        "view_position": _s(ds, "ViewPosition", 16),
        "manufacturer": _s(ds, "Manufacturer", 64),
        "model_name": _s(ds, "ManufacturerModelName", 64),
        "station_name": _s(ds, "StationName", 64),
        "photometric": _s(ds, "PhotometricInterpretation", 16),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "pixel_spacing": _first_float(ds, "ImagerPixelSpacing", "PixelSpacing"),
        "kvp": _first_float(ds, "KVP"),
        "exposure": _first_float(ds, "Exposure"),
    }
    return header
