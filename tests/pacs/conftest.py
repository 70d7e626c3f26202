"""A real Orthanc PACS holding one patient's history, a decoy patient and a non-comparable study."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import require_binary
from tests.peers import Orthanc

NODE_AE = "PRIORWATCH"


@dataclass
class History:
    patient_id: str = "PW-PAT-1"
    issuer: str = "HOSP-A"
    recent_cr: str = ""  # the most recent comparable prior
    older_cr: str = ""
    ct_head: str = ""
    decoy: str = ""
    files: dict[str, list[Path]] = field(default_factory=dict)


def write_study(src: str, out: Path, *, patient_id: str, issuer: str, date: str, modality: str, body: str,
                n: int = 1, accession: str = "") -> tuple[str, list[Path]]:
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file(src))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = patient_id, issuer, "Test^Patient"
        ds.StudyDate, ds.StudyTime, ds.Modality, ds.BodyPartExamined = date, "101500", modality, body
        ds.AccessionNumber = accession or f"ACC{date}{modality}"
        ds.InstanceNumber = i + 1
        p = out / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(p)
        paths.append(p)
    return study_uid, paths


@pytest.fixture(scope="module")
def pacs_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Orthanc, History]:
    require_binary("Orthanc")
    tmp = tmp_path_factory.mktemp("pacs")
    files = tmp / "files"
    files.mkdir()
    h = History()
    h.recent_cr, f1 = write_study("RG1_UNCR.dcm", files, patient_id=h.patient_id, issuer=h.issuer, date="20250301", modality="CR", body="CHEST", n=2)
    h.older_cr, f2 = write_study("RG1_UNCR.dcm", files, patient_id=h.patient_id, issuer=h.issuer, date="20230101", modality="CR", body="CHEST")
    h.ct_head, f3 = write_study("CT_small.dcm", files, patient_id=h.patient_id, issuer=h.issuer, date="20250601", modality="CT", body="HEAD")
    h.decoy, f4 = write_study("RG1_UNCR.dcm", files, patient_id="PW-PAT-2", issuer=h.issuer, date="20250401", modality="CR", body="CHEST")
    h.files = {h.recent_cr: f1, h.older_cr: f2, h.ct_head: f3, h.decoy: f4}
    orthanc = Orthanc(tmp / "orthanc", modalities={"priorwatch": (NODE_AE, "127.0.0.1", 11112)})
    orthanc.start()
    for paths in h.files.values():
        for p in paths:
            orthanc.upload(p)
    yield orthanc, h
    orthanc.stop()
