"""Each finding's sizes over its history as DICOM SR measurements (issue 29), so a PACS viewer
reads numbers, not only sentences.

TID 1500's own pieces, from highdicom: an "Imaging Measurements" container (126010, DCM) of
TID 1501 measurement groups, one group per finding per study of its history. A group carries
the finding's Tracking Identifier and one Tracking UID shared by all its groups (how TID 1500
links one lesion across time points), the finding type (SNOMED CT) and site (lung, side), a
Time Point Context (the study's date, its order, and days from the baseline study), the study it
was measured on (Study Instance UID, 110180 DCM, as TID 1005 names it) and the size as a NUM in
UCUM "mm" (Length, 410668003 SCT); "looked for and not seen" is a Finding = Absent evaluation.

The draft's document root stays "Diagnostic imaging report" (the text items the reviewers read),
so this is the measurement part of TID 1500 nested in it, not a TID 1500-rooted document.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

# The vocabulary's findings as SNOMED CT concepts (finding type of a measurement group).
FINDING_CODES: dict[str, Code] = {
    "nodule": codes.SCT.Nodule,
    "mass": codes.SCT.Mass,
    "consolidation": Code("95436008", "SCT", "Lung consolidation"),
    "effusion": codes.SCT.PleuralEffusion,
    "pneumothorax": codes.SCT.Pneumothorax,
    "edema": codes.SCT.PulmonaryEdema,
    "atelectasis": Code("46621007", "SCT", "Atelectasis"),
    "cardiomegaly": codes.SCT.Cardiomegaly,
    "support_device": Code("63653004", "SCT", "Medical device"),
    "other": codes.SCT.Finding,
}
_SIDES: dict[str, Code] = {"right": codes.SCT.Right, "left": codes.SCT.Left, "bilateral": codes.SCT.RightAndLeft}
SIZE = codes.SCT.Length  # the engine's size is a linear extent in detector millimetres
MM = codes.UCUM.Millimeter
_DAYS = codes.UCUM.Day
_STUDY_UID = Code("110180", "DCM", "Study Instance UID")
IMAGING_MEASUREMENTS = Code("126010", "DCM", "Imaging Measurements")


def _date(v: Any) -> dt.date | None:
    if v is None or isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v)[:10])


def observations(finding: dict[str, Any], current_study_uid: str | None) -> list[dict[str, Any]]:
    """The finding's history (oldest first); the current study alone when only its size is known."""
    hist = list(finding.get("history") or [])
    if not hist and finding.get("size_mm") is not None and current_study_uid:
        hist = [{"study_uid": current_study_uid, "date": None, "size_mm": finding["size_mm"], "state": "present"}]
    return hist


def _group(finding: dict[str, Any], obs: dict[str, Any], order: int, baseline: dt.date | None,
           tracking: hd.sr.TrackingIdentifier) -> hd.sr.MeasurementsAndQualitativeEvaluations | None:
    """One TID 1501 group: `finding` as seen on the study `obs`; None when nothing was measured there."""
    size, state = obs.get("size_mm"), obs.get("state")
    if size is None and state != "absent":
        return None  # not assessable there: the text says so; a group would carry nothing
    when = _date(obs.get("date"))
    offset = (hd.sr.LongitudinalTemporalOffsetFromEvent(value=float((when - baseline).days), unit=_DAYS,
                                                        event_type=codes.DCM.Baseline)
              if when is not None and baseline is not None else None)
    time_point = hd.sr.TimePointContext(time_point=when.isoformat() if when else "current study",
                                        time_point_order=order, temporal_offset_from_event=offset)
    side = _SIDES.get(finding.get("side") or "")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        time_point_context=time_point,
        finding_type=FINDING_CODES.get(finding["finding"], codes.SCT.Finding),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung, laterality=side)],
        measurements=[hd.sr.Measurement(name=SIZE, value=float(size), unit=MM)] if size is not None else None,
        qualitative_evaluations=None if size is not None else [
            hd.sr.QualitativeEvaluation(name=codes.SCT.Finding, value=codes.SCT.Absent)],
    )
    group[0].ContentSequence.append(hd.sr.UIDRefContentItem(
        name=_STUDY_UID, value=obs["study_uid"], relationship_type="HAS OBS CONTEXT"))
    return group


def measurement_groups(finding: dict[str, Any], current_study_uid: str | None) -> list[hd.sr.ContainerContentItem]:
    """The finding's groups over its history, one Tracking UID for all of them."""
    hist = observations(finding, current_study_uid)
    label = " ".join(x for x in (finding["finding"], finding.get("side"), finding.get("zone")) if x)
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label)
    dates = [d for d in (_date(o.get("date")) for o in hist) if d is not None]
    baseline = min(dates) if dates else None
    out = []
    for i, obs in enumerate(hist, start=1):
        g = _group(finding, obs, i, baseline, tracking)
        if g is not None:
            out.append(g[0])
    return out


def imaging_measurements(record: dict[str, Any]) -> hd.sr.ContainerContentItem | None:
    """The "Imaging Measurements" container for one comparison record (`priorwatch.export`);
    None when no finding has a size or an absence on any study."""
    groups = [g for f in record.get("findings", []) for g in measurement_groups(f, record.get("current_study_uid"))]
    if not groups:
        return None
    box = hd.sr.ContainerContentItem(name=IMAGING_MEASUREMENTS, relationship_type="CONTAINS")
    box.ContentSequence = groups
    return box


def read_measurements(sr: Any) -> list[dict[str, Any]]:
    """Read the groups back with highdicom's own TID 1501 parser: one row per group
    (tracking label and UID, study, time point, size in mm or None)."""
    rows: list[dict[str, Any]] = []
    for item in sr.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue != IMAGING_MEASUREMENTS.value:
            continue
        for raw in item.ContentSequence:
            g = hd.sr.MeasurementsAndQualitativeEvaluations.from_sequence([raw])
            ms = g.get_measurements(name=SIZE)
            study = next(x.UID for x in raw.ContentSequence
                         if x.ValueType == "UIDREF" and x.ConceptNameCodeSequence[0].CodeValue == _STUDY_UID.value)
            tp = next(x.TextValue for x in raw.ContentSequence
                      if x.ConceptNameCodeSequence[0].CodeValue == "C2348792" and x.ValueType == "TEXT")
            rows.append({
                "tracking": g.tracking_identifier, "tracking_uid": g.tracking_uid, "study_uid": study,
                "time_point": tp, "finding": g.finding_type.meaning if g.finding_type else None,
                "size_mm": ms[0].value if ms else None, "unit": ms[0].unit.value if ms else None,
            })
    return rows
