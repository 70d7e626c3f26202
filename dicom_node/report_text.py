"""The readable text of a prior's report when the PACS holds it as an SR document.

A prior study often carries its report as a Structured Report (Basic Text SR, Enhanced SR,
Comprehensive SR). `report_text` walks each document's content tree in document order and
renders it as plain text:

* the root CONTAINER's concept name is the document title (first line);
* a nested CONTAINER with a concept name is a heading; its content is indented below it;
* TEXT is ``Concept name: text``, CODE is ``Concept name: code meaning``, NUM is
  ``Concept name: value unit``; DATE / TIME / DATETIME / PNAME likewise;
* observation and acquisition context (observer, UIDs, devices) and references to images,
  waveforms and coordinates are not report text and are left out, but readable content
  items under a reference (a TEXT modifying an IMAGE) are kept.

PriorWatch's own AI drafts (`dicom_node.sr.build_result_sr`) are SRs too. Once sent back to
the PACS they sit in that study and come back with it when it is later retrieved as a
prior; they are skipped by default so an unverified draft is never shown as the prior's
report (``include_ai_drafts=True`` keeps them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from os import PathLike
from typing import Union

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

#: SR document storage classes whose content is a report (not key objects, CAD or dose SRs).
REPORT_SR_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}

#: Relationship types whose targets describe the context of an observation, not its content.
_CONTEXT_RELATIONSHIPS = {"HAS OBS CONTEXT", "HAS ACQ CONTEXT"}
#: Value types that reference other objects or spatial/temporal regions: no text of their own.
_REFERENCE_TYPES = {"IMAGE", "COMPOSITE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD", "UIDREF"}

_AI_DRAFT_MARKER = "PRELIMINARY AI DRAFT"
_INDENT = "  "

Source = Union[str, "PathLike[str]", Dataset]


def _concept(item: Dataset) -> str:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return ""
    return str(seq[0].get("CodeMeaning", "") or seq[0].get("CodeValue", "")).strip()


def _clean(text: str) -> list[str]:
    """Lines of a free-text value: CR/LF/CRLF normalised, trailing blanks dropped."""
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return [ln.rstrip() for ln in lines]


def _num(item: Dataset) -> str:
    mv = item.get("MeasuredValueSequence")
    if not mv:
        return ""
    m = mv[0]
    value = str(m.get("NumericValue", "")).strip()
    units = m.get("MeasurementUnitsCodeSequence")
    unit = ""
    if units:
        u = units[0]
        # UCUM codes are the short form readers expect ("mm", "cm"); "1" means no unit.
        if str(u.get("CodingSchemeDesignator", "")) == "UCUM":
            unit = "" if str(u.get("CodeValue", "")) == "1" else str(u.get("CodeValue", ""))
        else:
            unit = str(u.get("CodeMeaning", "") or u.get("CodeValue", ""))
    return f"{value} {unit}".strip()


def _value(item: Dataset) -> list[str] | None:
    """The readable value of one content item as lines, or None when it has no text."""
    vt = str(item.get("ValueType", "")).upper()
    if vt == "TEXT":
        return _clean(item.get("TextValue", ""))
    if vt == "CODE":
        seq = item.get("ConceptCodeSequence")
        return [str(seq[0].get("CodeMeaning", "") or seq[0].get("CodeValue", ""))] if seq else None
    if vt == "NUM":
        v = _num(item)
        return [v] if v else None
    if vt == "DATE":
        return [str(item.get("Date", ""))]
    if vt == "TIME":
        return [str(item.get("Time", ""))]
    if vt == "DATETIME":
        return [str(item.get("DateTime", ""))]
    if vt == "PNAME":
        return [str(item.get("PersonName", "")).replace("^", " ").strip()]
    return None


def _walk(items: Iterable[Dataset], depth: int, out: list[str]) -> None:
    for item in items:
        rel = str(item.get("RelationshipType", "")).upper()
        if rel in _CONTEXT_RELATIONSHIPS:
            continue
        if "ReferencedContentItemIdentifier" in item:
            continue  # by-reference relationship: the target is rendered where it stands
        vt = str(item.get("ValueType", "")).upper()
        name = _concept(item)
        children = item.get("ContentSequence") or []
        pad = _INDENT * depth
        if vt == "CONTAINER":
            if name:
                out.append(pad + name)
                _walk(children, depth + 1, out)
            else:  # an unnamed container only groups: no heading, no extra indent
                _walk(children, depth, out)
            continue
        if vt in _REFERENCE_TYPES:
            _walk(children, depth, out)
            continue
        value = _value(item)
        if value and any(v.strip() for v in value):
            first = f"{name}: {value[0]}" if name else value[0]
            out.append(pad + first)
            out.extend((pad + _INDENT + line).rstrip() for line in value[1:])
            _walk(children, depth + 1, out)
        else:
            _walk(children, depth, out)


def _is_ai_draft(ds: Dataset) -> bool:
    if str(ds.get("Manufacturer", "")) == "PriorWatch":
        return True
    for item in ds.get("ContentSequence") or []:
        if str(item.get("ValueType", "")).upper() == "TEXT" and _AI_DRAFT_MARKER in str(item.get("TextValue", "")):
            return True
    return False


def document_text(ds: Dataset) -> str | None:
    """The text of one SR document (any SR class), or None when it holds none."""
    out: list[str] = []
    title = _concept(ds)
    if title:
        out.append(title)
    _walk(ds.get("ContentSequence") or [], 1 if title else 0, out)
    body = [ln for ln in out[1 if title else 0:] if ln.strip()]
    if not body:
        return None
    return "\n".join(out)


def _load(src: Source) -> Dataset | None:
    if isinstance(src, Dataset):
        return src
    try:
        return dcmread(src, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        log.warning("cannot read a prior instance for its report: %s", type(exc).__name__)
        return None


def _when(ds: Dataset) -> str:
    return f"{ds.get('ContentDate', '') or ''}{ds.get('ContentTime', '') or ''}"


def report_text(sources: Source | Iterable[Source], *, include_ai_drafts: bool = False) -> str | None:
    """The readable text of the report(s) held as SR documents among a study's instances.

    Parameters
    ----------
    sources:
        One or many Part-10 file paths or datasets: typically every instance of a prior
        study. Images and other non-report objects are ignored (read without pixel data).
    include_ai_drafts:
        Keep PriorWatch's own preliminary AI drafts (skipped by default).

    Returns
    -------
    str | None
        The text of every report SR, oldest content date first, separated by a blank line;
        None when the sources hold no report SR or the SRs hold no readable text.
    """
    if isinstance(sources, (str, Dataset, PathLike)):
        sources = [sources]
    docs: list[Dataset] = []
    for src in sources:
        ds = _load(src)
        if ds is None:
            continue
        sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class not in REPORT_SR_CLASSES:
            continue
        if not include_ai_drafts and _is_ai_draft(ds):
            continue
        docs.append(ds)
    docs.sort(key=_when)  # stable: same-time documents keep their given order
    texts = [t for t in (document_text(d) for d in docs) if t]
    return "\n\n".join(texts) if texts else None


__all__ = ["REPORT_SR_CLASSES", "document_text", "report_text"]
