"""Read what the index needs from an instance's header, never touching its pixel data."""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_node import statuses
from dicom_node.pixels import PixelShape, check_complete, is_image_class
from dicom_node.statuses import IngestError


@dataclass(slots=True)
class Header:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    patient_id: str
    transfer_syntax: str = ""
    pixels: PixelShape | None = None  # what the header says the pixel data holds
    study: dict[str, Any] = field(default_factory=dict)  # Study columns
    instance: dict[str, Any] = field(default_factory=dict)  # Instance metadata columns


# (tag, keyword, VR, length limit): every element the index reads. The VR is fixed here so
# implicit-VR data sets (no VR on the wire) read the same as explicit ones.
_FIELDS: tuple[tuple[int, str, str, int], ...] = (
    (0x00080016, "SOPClassUID", "UI", 64),
    (0x00080018, "SOPInstanceUID", "UI", 64),
    (0x00080020, "StudyDate", "DA", 16),
    (0x00080030, "StudyTime", "TM", 16),
    (0x00080050, "AccessionNumber", "SH", 64),
    (0x00080060, "Modality", "CS", 16),
    (0x00080070, "Manufacturer", "LO", 64),
    (0x00080080, "InstitutionName", "LO", 128),
    (0x00081010, "StationName", "SH", 64),
    (0x00081030, "StudyDescription", "LO", 128),
    (0x00081090, "ManufacturerModelName", "LO", 64),
    (0x00100010, "PatientName", "PN", 128),
    (0x00100020, "PatientID", "LO", 64),
    (0x00100021, "IssuerOfPatientID", "LO", 64),
    (0x00100030, "PatientBirthDate", "DA", 16),
    (0x00100040, "PatientSex", "CS", 16),
    (0x00180015, "BodyPartExamined", "CS", 64),
    (0x00180060, "KVP", "DS", 32),
    (0x00181152, "Exposure", "IS", 32),
    (0x00181164, "ImagerPixelSpacing", "DS", 64),
    (0x00185101, "ViewPosition", "CS", 16),
    (0x0020000D, "StudyInstanceUID", "UI", 64),
    (0x0020000E, "SeriesInstanceUID", "UI", 64),
    (0x00280002, "SamplesPerPixel", "US", 8),
    (0x00280004, "PhotometricInterpretation", "CS", 16),
    (0x00280008, "NumberOfFrames", "IS", 16),
    (0x00280010, "Rows", "US", 8),
    (0x00280011, "Columns", "US", 8),
    (0x00280100, "BitsAllocated", "US", 8),
    (0x00280030, "PixelSpacing", "DS", 64),
    (0x00321060, "RequestedProcedureDescription", "LO", 256),
    (0x00321030, "ReasonForStudy", "LO", 256),
    (0x00401002, "ReasonForTheRequestedProcedure", "LO", 256),
)
# Elements in the identity set: a data set with none of them is not DICOM we understand.
_IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")
# Identifiers are never cut to their VR's length: two over-long UIDs (or patient IDs) sharing
# their first 64 characters would file two patients' images as one study. They are read whole
# and refused when too long (`_check_identity`).
_UNCUT = frozenset(_IDENTITY) | {"IssuerOfPatientID"}
_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
UID_MAX = 64  # VR UI (PS3.5 6.2)
LO_MAX = 64  # VR LO: PatientID, IssuerOfPatientID
# VR UI: digits in dot-separated components. Leading zeros in a component are also invalid in
# the standard but common from older modalities and harmless for identity: accepted.
_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*\Z")
_ASCII_VRS = frozenset({"UI", "DA", "TM", "CS", "DS", "IS"})
# Character sets whose text pydicom decodes as Latin-1 (its default) or UTF-8: read directly.
_LATIN1 = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO 2022 IR 6", "ISO 2022 IR 100"})
_UTF8 = frozenset({"ISO_IR 192"})
_PIXEL_DATA = 0x7FE00010


def _before_pixels(tag: Any, vr: Any, length: Any) -> bool:
    return int(tag) >= _PIXEL_DATA


def _fields(ds: Dataset, little: bool = True) -> dict[str, str]:
    """Every `_FIELDS` value as a stripped string ('' when absent or unreadable).

    Reads the raw element bytes, which pydicom has not converted yet (converting each value
    with its regular-expression validation cost ~0.3 ms per instance, the largest part of the
    header); only text in a character set other than the default, Latin-1 or UTF-8 goes
    through pydicom's decoder.
    """
    charset = ""
    try:
        cs = ds.get_item(0x00080005)
        if cs is not None:
            raw_cs = cs.value
            charset = (raw_cs.decode("ascii", "replace") if isinstance(raw_cs, bytes) else
                       "\\".join(raw_cs) if isinstance(raw_cs, (list, MultiValue)) else str(raw_cs or ""))
            charset = charset.strip(" \x00")
    except Exception:
        charset = "?"
    text_codec = "latin-1" if charset in _LATIN1 else "utf-8" if charset in _UTF8 else None
    out: dict[str, str] = {}
    for tag, keyword, vr, limit in _FIELDS:
        try:
            elem = ds.get_item(tag)
        except Exception:
            elem = None
        if elem is None:
            out[keyword] = ""
            continue
        value = elem.value
        try:
            if isinstance(value, (bytes, bytearray)):
                if vr == "US":
                    text = str(int.from_bytes(value[:2], "little" if little else "big")) if len(value) >= 2 else ""
                elif vr in _ASCII_VRS:
                    text = value.decode("ascii", "replace")
                elif text_codec is not None:
                    text = value.decode(text_codec, "replace")
                else:
                    text = _converted(ds, tag)
            else:
                text = _as_text(value)
        except Exception:  # a malformed value: keep the instance, drop the field
            text = ""
        text = text.strip(" \x00")
        out[keyword] = text if keyword in _UNCUT else text[:limit]
    return out


def _converted(ds: Dataset, tag: int) -> str:
    return _as_text(ds[tag].value)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _first_float(value: str) -> float | None:
    try:
        return float(value.split("\\")[0]) if value else None
    except ValueError:
        return None


def _int(value: str) -> int | None:
    try:
        return int(value.split("\\")[0]) if value else None
    except ValueError:
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
    fp = io.BytesIO(raw)
    try:
        ds = dcmread(fp, stop_before_pixels=True, force=False)
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    except Exception as exc:
        raise IngestError(statuses.NOT_DICOM, f"cannot understand: not parseable DICOM ({type(exc).__name__})") from None
    header = _header(ds, ts)
    uid = _ts(ts)
    if uid is not None and uid.is_deflated:  # the stream position is in the deflated bytes
        body = _inflated_body(raw)
        if body is None:
            return header
        fp, pos = io.BytesIO(body), 0
    else:
        pos = fp.tell()
    _check_pixels(fp, pos, uid, header)
    return header


# -- the receive path's element walk ------------------------------------------------------------
_WANTED = frozenset(tag for tag, _, _, _ in _FIELDS) | {0x00080005}
_LAST_WANTED = max(_WANTED)
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
# Any other two bytes where an explicit VR belongs (a data set encoded implicitly under an
# explicit transfer syntax, which pydicom detects and reads): not walked.
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
                        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 16  # nested undefined-length sequences followed; deeper: pydicom reads it


class _Raw:
    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


class _RawElements(dict):  # type: ignore[type-arg]
    """tag -> raw value, read like a pydicom Dataset of raw elements by `_fields`."""

    def get_item(self, tag: int) -> _Raw | None:
        v = self.get(tag)
        return None if v is None else _Raw(v)


def _walk(buf: memoryview, implicit: bool) -> tuple[_RawElements, int] | None:
    """The raw values of the top-level elements `_fields` reads, and the offset of Pixel Data
    (or of the end), from a little-endian data set; None for anything it does not follow
    (a length past the end, an undefined length it cannot skip, a character set `_fields`
    hands to pydicom), which pydicom's reader then reads as before.

    pydicom's `read_dataset` builds an element object for every element before the pixels (~70
    in a CR) and a Dataset: 25 % of the node's CPU per stored instance (yappi, issue 32)."""
    out = _RawElements()
    end = len(buf)
    pos = 0
    unpack = struct.unpack_from
    while pos + 8 <= end:
        group, elem = unpack("<HH", buf, pos)
        tag = group << 16 | elem
        if tag >= _PIXEL_DATA:
            return out, pos
        if implicit:
            (length,) = unpack("<I", buf, pos + 4)
            start = pos + 8
            vr = b""
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return None
                (length,) = unpack("<I", buf, pos + 8)
                start = pos + 12
            elif vr in _SHORT_VRS:
                (length,) = unpack("<H", buf, pos + 6)
                start = pos + 8
            else:
                return None
        if length == _UNDEFINED:
            if vr == b"UN" or tag in _WANTED:
                return None
            pos = _skip_undefined(buf, start, implicit, 0)
            if pos < 0:
                return None
            continue
        if start + length > end:
            return None
        if tag in _WANTED:
            out[tag] = bytes(buf[start:start + length])
        pos = start + length
    if pos != end:
        return None
    return out, pos


def _skip_undefined(buf: memoryview, pos: int, implicit: bool, depth: int) -> int:
    """The offset after an undefined-length value (a sequence, or encapsulated fragments)
    that starts at `pos`; -1 where it cannot be followed."""
    end = len(buf)
    unpack = struct.unpack_from
    while pos + 8 <= end:
        group, elem, length = unpack("<HHI", buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            return -1
        if length != _UNDEFINED:
            pos += length
            continue
        if depth >= _MAX_DEPTH:
            return -1
        pos = _skip_item(buf, pos, implicit, depth + 1)  # an undefined-length item: its elements
        if pos < 0:
            return -1
    return -1


def _skip_item(buf: memoryview, pos: int, implicit: bool, depth: int) -> int:
    end = len(buf)
    unpack = struct.unpack_from
    while pos + 8 <= end:
        group, elem = unpack("<HH", buf, pos)
        tag = group << 16 | elem
        if tag == _ITEM_END:
            return pos + 8
        if implicit:
            (length,) = unpack("<I", buf, pos + 4)
            start, vr = pos + 8, b""
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                (length,) = unpack("<I", buf, pos + 8)
                start = pos + 12
            elif vr in _SHORT_VRS:
                (length,) = unpack("<H", buf, pos + 6)
                start = pos + 8
            else:
                return -1
        if length == _UNDEFINED:
            if vr == b"UN" or depth >= _MAX_DEPTH:
                return -1
            pos = _skip_undefined(buf, start, implicit, depth)
            if pos < 0:
                return -1
            continue
        pos = start + length
    return -1


def _charset_is_read_directly(elements: _RawElements) -> bool:
    """Whether `_fields` decodes this data set's text itself (as it decides: the value of
    Specific Character Set as one string); otherwise it asks pydicom, which needs a Dataset."""
    raw = elements.get(0x00080005)
    charset = raw.decode("ascii", "replace").strip(" \x00") if raw is not None else ""
    return charset in _LATIN1 or charset in _UTF8


def read_header_dataset(stream: BinaryIO, transfer_syntax: str) -> Header:
    """Parse the header of a data set as it came in a C-STORE (no preamble, no file meta),
    encoded in `transfer_syntax` (the presentation context's)."""
    walked = None
    try:
        ts = UID(transfer_syntax)
        if (ts.is_transfer_syntax and ts.is_little_endian and not ts.is_deflated
                and isinstance(stream, io.BytesIO)):
            with stream.getbuffer() as view:
                walked = _walk(view, bool(ts.is_implicit_VR))
            if walked is not None and not _charset_is_read_directly(walked[0]):
                walked = None
    except Exception:
        walked = None  # pydicom's reader below says what is wrong
    if walked is not None:
        header = _header(walked[0], str(transfer_syntax))  # type: ignore[arg-type]
        _check_pixels(stream, walked[1], ts, header)
        return header
    try:
        ts = UID(transfer_syntax)
        if ts.is_deflated:
            stream = io.BytesIO(zlib.decompress(stream.read(), -zlib.MAX_WBITS))
        ds = read_dataset(stream, ts.is_implicit_VR, ts.is_little_endian, stop_when=_before_pixels)
        pos = stream.tell()
    except Exception as exc:
        raise IngestError(statuses.NOT_DICOM, f"cannot understand: not parseable DICOM ({type(exc).__name__})") from None
    header = _header(ds, str(transfer_syntax))
    _check_pixels(stream, pos, ts, header)
    return header


def _ts(ts: str) -> UID | None:
    try:
        return UID(ts) if ts else None
    except ValueError:
        return None


def _check_pixels(stream: BinaryIO, pos: int, ts: UID | None, header: Header) -> None:
    if header.pixels is None:
        return
    implicit = bool(ts.is_implicit_VR) if ts is not None and ts.is_transfer_syntax else False
    little = bool(ts.is_little_endian) if ts is not None and ts.is_transfer_syntax else True
    check_complete(stream, pos, implicit_vr=implicit, little_endian=little, shape=header.pixels)


def _inflated_body(raw: bytes) -> bytes | None:
    """A deflated Part-10 file's data set, inflated (its file meta group is never deflated)."""
    try:
        if raw[128:132] != b"DICM" or raw[132:136] != b"\x02\x00\x00\x00":
            return None
        meta_end = 144 + int.from_bytes(raw[140:144], "little")
        return zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
    except (zlib.error, ValueError):
        return None


def _header(ds: Dataset, ts: str) -> Header:
    try:
        little = UID(ts).is_little_endian if ts else True
    except ValueError:  # not a transfer syntax pydicom knows: the usual one
        little = True
    f = _fields(ds, little)
    present = {kw: f[kw] for kw in _IDENTITY}
    if not any(present.values()):
        raise IngestError(statuses.NOT_DICOM)
    for keyword, status in statuses.REQUIRED:
        if not present[keyword]:
            raise IngestError(status)
    if not present["SOPClassUID"]:
        raise IngestError(statuses.MISSING_SOP_CLASS_UID)
    _check_identity(f)

    study_date = parse_da(f["StudyDate"])
    study_time = parse_tm(f["StudyTime"])
    reason = f["RequestedProcedureDescription"] or f["ReasonForStudy"] or f["ReasonForTheRequestedProcedure"]
    modality = f["Modality"]
    header = Header(
        study_uid=present["StudyInstanceUID"],
        series_uid=present["SeriesInstanceUID"],
        sop_instance_uid=present["SOPInstanceUID"],
        sop_class_uid=present["SOPClassUID"],
        patient_id=present["PatientID"],
        transfer_syntax=ts.strip(" \x00")[:64],
    )
    header.study = {
        "patient_id": present["PatientID"],
        "issuer": f["IssuerOfPatientID"],
        "patient_name": f["PatientName"],
        "patient_sex": f["PatientSex"],
        "patient_birth_date": parse_da(f["PatientBirthDate"]),
        "accession": f["AccessionNumber"],
        "study_date": study_date,
        "study_datetime": datetime.combine(study_date, study_time) if study_date and study_time else None,
        "modality": modality,
        "body_part": f["BodyPartExamined"],
        "description": f["StudyDescription"],
        "institution": f["InstitutionName"],
        "reason": reason,
    }
    header.pixels = PixelShape(rows=_int(f["Rows"]), columns=_int(f["Columns"]), samples=_int(f["SamplesPerPixel"]),
                               bits_allocated=_int(f["BitsAllocated"]), frames=_int(f["NumberOfFrames"]),
                               photometric=f["PhotometricInterpretation"],
                               image=is_image_class(present["SOPClassUID"]))
    header.instance = {
        "modality": modality,
        "view_position": f["ViewPosition"],
        "manufacturer": f["Manufacturer"],
        "model_name": f["ManufacturerModelName"],
        "station_name": f["StationName"],
        "photometric": f["PhotometricInterpretation"],
        "rows": _int(f["Rows"]),
        "columns": _int(f["Columns"]),
        "pixel_spacing": _first_float(f["ImagerPixelSpacing"]) or _first_float(f["PixelSpacing"]),
        "kvp": _first_float(f["KVP"]),
        "exposure": _first_float(f["Exposure"]),
    }
    return header


def _check_identity(f: dict[str, str]) -> None:
    """Refuse identifiers that their VR cannot hold, instead of cutting them (see `_UNCUT`)."""
    for keyword in _UIDS:
        value = f[keyword]
        if len(value) > UID_MAX or not _UID_RE.match(value):
            raise IngestError(statuses.INVALID_UID, f"refused: {keyword} is not a valid UID (VR UI)")
    if len(f["PatientID"]) > LO_MAX or len(f["IssuerOfPatientID"]) > LO_MAX:
        raise IngestError(statuses.INVALID_PATIENT_ID)
