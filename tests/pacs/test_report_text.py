"""A prior's report held as an SR document, read back as plain text."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from dicom_node.report_text import document_text, report_text
from dicom_node.sr import DISCLAIMER, build_result_sr

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
_REPORT = Code("18748-4", "LN", "Diagnostic imaging report")
_FINDINGS = Code("121070", "DCM", "Findings")
_IMPRESSION = Code("121073", "DCM", "Impression")
_FINDING = Code("121071", "DCM", "Finding")
_PROCEDURE = Code("121058", "DCM", "Procedure reported")


def _cr_header() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"), stop_before_pixels=True)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID = "PW-RPT-1"
    return ds


def _text(name: Code, value: str, rel: str = "CONTAINS") -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=rel)


def _radiologist_report(evidence: pydicom.Dataset, cls: type = hd.sr.EnhancedSR, *, content_time: str | None = None):
    findings = hd.sr.ContainerContentItem(name=_FINDINGS, relationship_type="CONTAINS")
    findings.ContentSequence = [
        _text(_FINDING, "Small right pleural effusion.\r\nHeart size normal."),
        hd.sr.CodeContentItem(name=_FINDING, value=Code("36118008", "SCT", "Pneumothorax"), relationship_type="CONTAINS"),
        hd.sr.NumContentItem(name=Code("410668003", "SCT", "Length"), value=12.5,
                             unit=codes.UCUM.Millimeter, relationship_type="CONTAINS"),
    ]
    impression = hd.sr.ContainerContentItem(name=_IMPRESSION, relationship_type="CONTAINS")
    impression.ContentSequence = [_text(_IMPRESSION, "Interval development of a small right effusion.")]
    root = hd.sr.ContainerContentItem(name=_REPORT)
    root.ContentSequence = [
        hd.sr.PnameContentItem(name=codes.DCM.PersonObserverName, value="Doe^Jane",
                               relationship_type="HAS OBS CONTEXT"),
        hd.sr.CodeContentItem(name=_PROCEDURE, value=Code("399208008", "SCT", "Plain chest X-ray"),
                              relationship_type="HAS CONCEPT MOD"),
        findings,
        impression,
    ]
    sr = cls(evidence=[evidence], content=root, series_instance_uid=generate_uid(), series_number=500,
             sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Hospital RIS",
             is_complete=True, is_final=True, is_verified=True,
             verifying_observer_name="Doe^Jane", verifying_organization="Hospital")
    if content_time:
        sr.ContentTime = content_time
    return sr


def test_enhanced_sr_text_in_order_with_headings() -> None:
    text = report_text(_radiologist_report(_cr_header()))
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "Diagnostic imaging report"
    assert "  Procedure reported: Plain chest X-ray" in lines
    assert "  Findings" in lines and "  Impression" in lines
    assert lines.index("  Findings") < lines.index("  Impression")  # document order
    assert "    Finding: Small right pleural effusion." in lines
    assert "      Heart size normal." in lines  # CRLF inside a TEXT value: continuation line
    assert "    Finding: Pneumothorax" in lines  # CODE: concept name and code meaning
    assert "    Length: 12.5 mm" in lines  # NUM with its UCUM unit
    assert "    Impression: Interval development of a small right effusion." in lines
    assert "Doe" not in text  # observer context is not report text


@pytest.mark.parametrize("cls", [hd.sr.ComprehensiveSR, "basic"])
def test_other_sr_classes(cls: object, tmp_path: Path) -> None:
    sr = _radiologist_report(_cr_header(), hd.sr.ComprehensiveSR)
    if cls == "basic":  # the same tree is valid Basic Text SR content (CONTAINER, TEXT, CODE, NUM-free)
        sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    p = tmp_path / "report.dcm"
    sr.save_as(p, enforce_file_format=True)
    text = report_text([p])  # from a path: read without pixel data
    assert text is not None and "Finding: Small right pleural effusion." in text


def test_images_and_unreadable_files_are_ignored(tmp_path: Path) -> None:
    cr = get_testdata_file("RG1_UNCR.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    assert report_text([cr, junk]) is None
    sr = tmp_path / "sr.dcm"
    _radiologist_report(_cr_header()).save_as(sr, enforce_file_format=True)
    text = report_text([cr, junk, sr])
    assert text is not None and text.startswith("Diagnostic imaging report")


def test_several_reports_oldest_first() -> None:
    ev = _cr_header()
    late = _radiologist_report(ev, content_time="120000")
    early = _radiologist_report(ev, content_time="080000")
    early.ContentSequence[-1].ContentSequence[0].TextValue = "Addendum first."
    text = report_text([late, early])
    assert text is not None
    assert text.index("Addendum first.") < text.index("Interval development")
    assert text.count("Diagnostic imaging report") == 2 and "\n\n" in text


def _record(**kw: object) -> dict:
    rec = {
        "prior_study_uid": "1.2.826.0.1.3680043.8.498.1", "interval_days": 120, "urgent": True,
        "draft_text": "New right apical pneumothorax.", "engine": "registration", "engine_version": "1.0",
        "model": "none", "model_version": "-",
        "findings": [{"finding": "pneumothorax", "side": "right", "zone": "upper", "change": "new",
                      "confidence": 0.91, "urgent": True, "guard": None}],
    }
    rec.update(kw)
    return rec


def test_our_own_draft_sr_is_read_only_on_request() -> None:
    sr = build_result_sr([_cr_header()], _record())
    assert report_text(sr) is None  # an AI draft is never the prior's report
    text = report_text(sr, include_ai_drafts=True)
    assert text is not None
    assert DISCLAIMER in text
    assert "Compared with prior study 1.2.826.0.1.3680043.8.498.1, interval 120 days." in text
    assert "  Findings\n    Finding: pneumothorax right upper: new (confidence 0.91) URGENT" in text
    assert "URGENT: the draft flags a finding" in text
    assert text.index("Findings") < text.index("New right apical pneumothorax.")
    # a draft next to a real report: only the real report is returned
    both = report_text([sr, _radiologist_report(_cr_header())])
    assert both is not None and DISCLAIMER not in both and "pleural effusion" in both


def test_pydicom_test_sr_files() -> None:
    files = get_testdata_files("*SR*")
    if not files:
        pytest.skip("pydicom ships no SR test file")
    for f in files:
        ds = pydicom.dcmread(f)
        text = document_text(ds)
        assert text is not None, f
    text = report_text(get_testdata_file("test-SR.dcm"))
    assert text is not None  # pydicom's OFFIS demo document (Comprehensive SR)
    lines = text.splitlines()
    assert lines[0] == "Diagnosis"
    assert "  Text Code: A mass of" in lines  # unnamed CONTAINER: no heading line
    assert "    Code: Sample Code 1" in lines  # concept modifier below its TEXT
    assert "  Diameter: 3 Length Unit" in lines  # NUM with a non-UCUM unit: its meaning
    assert "  Code: Sample Text" in lines and "    A" in lines and "    C" in lines
    assert all(ln == ln.rstrip() for ln in lines)
    assert "1.2.3.4.5" not in text  # UIDREF observation context left out
    assert "Sample Code 3" in text  # content under an IMAGE reference is kept
    assert text.index("A mass of") < text.index("was detected.") < text.index("Sample Text")
