"""The prior's own SR report reaches the comparison as context; our own AI drafts never do."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from pydicom.data import get_testdata_file
from sqlmodel import Session

from dicom_node.sr import build_result_sr
from priorwatch.db import init_db
from priorwatch.models import Instance, Study
from priorwatch.settings import Settings
from workers.node_fetch import InstanceFiles
from workers.pipeline import _prior_report


def test_prior_sr_report_text_is_found_and_ai_drafts_are_not(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = init_db(settings)
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"), stop_before_pixels=True)
    root = hd.sr.ContainerContentItem(name=Code("18748-4", "LN", "Diagnostic imaging report"))
    root.ContentSequence = [hd.sr.TextContentItem(name=Code("121071", "DCM", "Finding"),
                                                  value="Small left effusion. No pneumothorax.",
                                                  relationship_type="CONTAINS")]
    radiologist = hd.sr.ComprehensiveSR([ds], root, generate_uid(), 1, generate_uid(), 1, manufacturer="Hospital RIS",
                                        is_complete=True, is_final=True)
    ai_draft = build_result_sr([ds], {"findings": [], "draft_text": "AI says nodule.", "engine": "x", "model": "y",
                                      "engine_version": "1", "model_version": "1"})
    with Session(engine) as s:
        st = Study(study_uid="1.2.826.0.1.77", patient_id="P")
        s.add(st)
        s.commit()
        for name, sr in (("rad.dcm", radiologist), ("ai.dcm", ai_draft)):
            sr.save_as(tmp_path / name, enforce_file_format=True)
            s.add(Instance(sop_instance_uid=sr.SOPInstanceUID, study_id=st.id, series_uid=sr.SeriesInstanceUID,
                           sop_class_uid=sr.SOPClassUID, path=str(tmp_path / name)))
        s.commit()
        text = _prior_report(s, st.id, InstanceFiles(settings, job_id=1))  # type: ignore[arg-type]
    assert text is not None and "Small left effusion" in text
    assert "AI says nodule" not in text
