"""The result SR in UTF-8 (an em dash survives, where ASCII stored "?") with the prior it was
compared with referenced in its evidence; dciodvfy finds no error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_node.sr import build_result_sr
from tests.conftest import require_binary
from tests.pacs.test_sr_validates import RECORD

DRAFT = "New right apical pneumothorax — no prior effusion; Ødegård’s sign absent."


def _image(study_uid: str, tmp: Path, name: str) -> tuple[Path, Dataset]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.AccessionNumber = "PW-SR-2", "ACC-SR-2"
    p = tmp / f"{name}.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p, pydicom.dcmread(p, stop_before_pixels=True)


def test_sr_is_utf8_and_references_the_prior(tmp_path: Path) -> None:
    _, current = _image(generate_uid(), tmp_path, "current")
    _, prior = _image(generate_uid(), tmp_path, "prior")
    record = {**RECORD, "prior_study_uid": prior.StudyInstanceUID, "draft_text": DRAFT}
    sr = build_result_sr([current], record, prior_evidence=[prior], prior_description="CT CHEST 2025-03-01")
    out = tmp_path / "sr.dcm"
    sr.save_as(out, enforce_file_format=True)
    raw = out.read_bytes()
    assert DRAFT.encode("utf-8") in raw  # stored as UTF-8 bytes, not "?"

    back = pydicom.dcmread(out)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    texts = []

    def walk(items: object) -> None:
        for it in items:  # type: ignore[attr-defined]
            if "TextValue" in it:
                texts.append(it.TextValue)
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(back.ContentSequence)
    assert DRAFT in texts
    other = back.PertinentOtherEvidenceSequence
    assert [it.StudyInstanceUID for it in other] == [prior.StudyInstanceUID]
    refs = [r.ReferencedSOPInstanceUID for it in other for s in it.ReferencedSeriesSequence
            for r in s.ReferencedSOPSequence]
    assert refs == [prior.SOPInstanceUID]
    current_refs = back.CurrentRequestedProcedureEvidenceSequence
    assert [it.StudyInstanceUID for it in current_refs] == [current.StudyInstanceUID]

    exe = require_binary("dciodvfy")
    p = subprocess.run([exe, str(out)], capture_output=True, text=True, timeout=60)
    report = p.stdout + p.stderr
    assert [ln for ln in report.splitlines() if ln.startswith("Error")] == [], report
    assert "ComprehensiveSR" in report
