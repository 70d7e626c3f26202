"""The result as a DICOM Comprehensive SR (highdicom): plainly a preliminary AI draft,
naming the prior it compared against and listing each finding with change and urgency.

Text is UTF-8 (SpecificCharacterSet ISO_IR 192): a draft's em dash or a name's accent
survives, where the default repertoire (ASCII) stored "?". The prior's instances are in the
evidence (Pertinent Other Evidence: another study), next to the current study's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from dicom_node.sr_measurements import imaging_measurements

DISCLAIMER = (
    "PRELIMINARY AI DRAFT - NOT A FINAL REPORT. Generated automatically for radiologist review; "
    "it has not been verified by a physician."
)

_REPORT = Code("18748-4", "LN", "Diagnostic imaging report")
_COMMENT = Code("121106", "DCM", "Comment")
_COMPARISON = Code("18834-2", "LN", "Radiology Comparison study (narrative)")
_NARRATIVE = Code("18782-3", "LN", "Radiology Study observation (narrative)")
_FINDINGS = Code("121070", "DCM", "Findings")
_FINDING = Code("121071", "DCM", "Finding")
_ALGORITHM = Code("111001", "DCM", "Algorithm Name")
_ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value[:10000] or "-", relationship_type="CONTAINS")


def finding_sentence(f: dict[str, Any]) -> str:
    where = " ".join(x for x in (f.get("side"), f.get("zone")) if x)
    urgent = " URGENT" if f.get("urgent") else ""
    guard = f" [{f['guard']}]" if f.get("guard") else ""
    return f"{f['finding']}{' ' + where if where else ''}: {f['change']} (confidence {f['confidence']:.2f}){urgent}{guard}"


CHARSET = "ISO_IR 192"  # UTF-8


def _findings(sentences: list[str], none_text: str) -> hd.sr.ContainerContentItem:
    """The Findings container, one Finding text a sentence (`none_text` when there is none)."""
    findings = hd.sr.ContainerContentItem(name=_FINDINGS, relationship_type="CONTAINS")
    findings.ContentSequence = [_text(_FINDING, x) for x in sentences] or [_text(_FINDING, none_text)]
    return findings


def _document(items: list[Any], evidence: list[Dataset], description: str, *, series_number: int,
              instance_number: int, manufacturer: str, **status: Any) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR around `items`: written once so the draft and the signed report
    differ only in content and in `status` (completion/verification flags, verifier, predecessors)."""
    root = hd.sr.ContainerContentItem(name=_REPORT)
    root.ContentSequence = items
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        **status,
    )
    sr.SeriesDescription = description
    sr.SpecificCharacterSet = CHARSET
    return sr


def build_result_sr(
    evidence: Sequence[Dataset],
    record: dict[str, Any],
    *,
    prior_evidence: Sequence[Dataset] = (),
    prior_description: str | None = None,
    series_number: int = 9901,
    instance_number: int = 1,
    manufacturer: str = "PriorWatch",
) -> hd.sr.ComprehensiveSR:
    """`evidence`: header datasets of the current study's compared instances;
    `prior_evidence`: those of the prior it was compared with (referenced as other evidence).
    `record`: one entry of `priorwatch.export.comparison_records`."""
    items: list[Any] = [_text(_COMMENT, DISCLAIMER)]
    if record.get("prior_study_uid"):
        comp = f"Compared with prior study {record['prior_study_uid']}"
        if prior_description:
            comp += f" ({prior_description})"
        if record.get("interval_days") is not None:
            comp += f", interval {record['interval_days']} days"
        items.append(_text(_COMPARISON, comp + "."))
    else:
        items.append(_text(_COMPARISON, f"No prior available: {record.get('no_prior_reason') or 'none found'}."))
    items.append(_findings([finding_sentence(f) for f in record.get("findings", [])],
                           "No finding reported by the engine."))
    measurements = imaging_measurements(record)  # issue 29: each finding's sizes over its history
    if measurements is not None:
        items.append(measurements)
    items.append(_text(_NARRATIVE, record.get("draft_text") or ""))
    items.append(_text(_ALGORITHM, f"{record.get('engine')} / {record.get('model')}"))
    items.append(_text(_ALGORITHM_VERSION, f"{record.get('engine_version')} / {record.get('model_version')}"))
    if record.get("urgent"):
        items.append(_text(_COMMENT, "URGENT: the draft flags a finding that needs prompt review."))
    return _document(items, list(evidence) + list(prior_evidence), "PriorWatch AI draft (preliminary)",
                     series_number=series_number, instance_number=instance_number, manufacturer=manufacturer,
                     is_complete=False, is_final=False, is_verified=False)


# --- the signed report (added for the dashboard's sign-off, issue 12) ----------------------
_SIGNED_NOTE = "Final report signed by the radiologist; supersedes the preliminary AI draft."


def build_final_sr(
    evidence: Sequence[Dataset],
    *,
    final_text: str,
    final_labels: Sequence[dict[str, Any]],
    signer: str,
    prior_study_uid: str | None = None,
    preliminary: Dataset | None = None,
    organization: str = "PriorWatch",
    series_number: int = 9902,
    instance_number: int = 1,
    manufacturer: str = "PriorWatch",
) -> hd.sr.ComprehensiveSR:
    """The signed report as a FINAL, VERIFIED Comprehensive SR: the radiologist's text and
    corrected findings, `signer` as verifying observer, and the preliminary AI draft SR (when
    we still hold it) in Predecessor Documents. No AI disclaimer: this is the physician's."""
    items: list[Any] = [_text(_COMMENT, _SIGNED_NOTE)]
    items.append(_text(_COMPARISON, f"Compared with prior study {prior_study_uid}." if prior_study_uid
                       else "No prior study was available for comparison."))
    items.append(_findings(
        [" ".join(x for x in (f["finding"], f.get("side") or "", f.get("zone") or "") if x)
         + f": {f['change']}" + (" URGENT" if f.get("urgent") else "") for f in final_labels],
        "No finding."))
    items.append(_text(_NARRATIVE, final_text))
    return _document(items, list(evidence), "PriorWatch signed report (final)",
                     series_number=series_number, instance_number=instance_number, manufacturer=manufacturer,
                     is_complete=True, is_final=True, is_verified=True,
                     verifying_observer_name=signer if "^" in signer else f"{signer}^",  # one-component PN
                     verifying_organization=organization,
                     previous_versions=[preliminary] if preliminary is not None else None)
