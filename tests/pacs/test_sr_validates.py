"""The result SR is valid DICOM to independent tools (DCMTK dsrdump, dicom3tools dciodvfy) and a
real PACS (Orthanc) files it in the current study."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from dicom_node.scu import send_files
from dicom_node.sr import DISCLAIMER, build_result_sr
from tests.conftest import require_binary
from tests.pacs.conftest import NODE_AE
from tests.peers import Orthanc

PRIOR_UID = "1.2.826.0.1.3680043.8.498.77001"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"

RECORD: dict[str, Any] = {
    "prior_study_uid": PRIOR_UID, "interval_days": 92, "no_prior_reason": None, "urgent": True,
    "draft_text": "New right apical pneumothorax; stable small left effusion.",
    "engine": "registration", "engine_version": "1.4.0", "model": "medgemma-1.5-4b", "model_version": "2025-06",
    "findings": [
        {"finding": "pneumothorax", "side": "right", "zone": "upper", "change": "new", "confidence": 0.91,
         "urgent": True, "guard": None},
        {"finding": "effusion", "side": "left", "zone": "lower", "change": "stable", "confidence": 0.62,
         "urgent": False, "guard": "unsupported"},
    ],
}
NO_PRIOR: dict[str, Any] = {
    **RECORD, "prior_study_uid": None, "interval_days": None, "urgent": False,
    "no_prior_reason": "no earlier study for this patient in the PACS", "draft_text": "Single left mid-zone nodule.",
    "findings": [{"finding": "nodule", "side": "left", "zone": "middle", "change": "no_prior", "confidence": 0.55,
                  "urgent": False, "guard": None}],
}


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """The current study: the real chest CR, with its own UIDs."""
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.AccessionNumber = "PW-SR-1", "ACC-SR-1"
    p = tmp_path_factory.mktemp("current") / "cr.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p, pydicom.dcmread(p, stop_before_pixels=True)


@pytest.fixture(scope="module")
def srs(current: tuple[Path, Dataset], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sr")
    paths = {}
    for name, rec, desc in (("urgent", RECORD, "CR CHEST 2025-03-01"), ("no_prior", NO_PRIOR, None)):
        sr = build_result_sr([current[1]], rec, prior_description=desc)
        paths[name] = out / f"{name}.dcm"
        sr.save_as(paths[name], enforce_file_format=True)
    return paths


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    require_binary("Orthanc")
    o = Orthanc(tmp_path_factory.mktemp("orthanc-sr"), modalities={"priorwatch": (NODE_AE, "127.0.0.1", 1)})
    o.start()
    yield o
    o.stop()


def _run(args: list[str]) -> tuple[int, str]:
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_dsrdump_reads_the_sr(srs: dict[str, Path], current: tuple[Path, Dataset]) -> None:
    exe = require_binary("dsrdump")
    rc, out = _run([exe, "+Pl", str(srs["urgent"])])
    assert rc == 0, out
    assert "error" not in out.lower(), out
    assert out.startswith("Comprehensive SR Document")
    assert "Preliminary Flag    : PRELIMINARY" in out and "Verification Flag   : UNVERIFIED" in out
    assert "Completion Flag     : PARTIAL" in out
    assert DISCLAIMER in out
    assert f"Compared with prior study {PRIOR_UID} (CR CHEST 2025-03-01), interval 92 days." in out
    assert '"Finding")="pneumothorax right upper: new (confidence 0.91) URGENT"' in out
    assert '"Finding")="effusion left lower: stable (confidence 0.62) [unsupported]"' in out
    assert "URGENT: the draft flags a finding that needs prompt review." in out
    assert "medgemma-1.5-4b" in out and "1.4.0 / 2025-06" in out

    rc, out = _run([exe, "+Pl", str(srs["no_prior"])])
    assert rc == 0 and "error" not in out.lower(), out
    assert DISCLAIMER in out
    assert "No prior available: no earlier study for this patient in the PACS." in out
    assert "nodule left middle: no_prior (confidence 0.55)" in out
    assert "URGENT" not in out


@pytest.mark.parametrize("name", ["urgent", "no_prior"])
def test_dciodvfy_finds_no_error(srs: dict[str, Path], name: str) -> None:
    exe = require_binary("dciodvfy")
    _, out = _run([exe, str(srs[name])])
    errors = [ln for ln in out.splitlines() if ln.startswith("Error")]
    assert errors == [], out
    assert "ComprehensiveSR" in out  # dciodvfy recognised the IOD it checked


def _cfind(o: Orthanc, query: Dataset) -> list[Dataset]:
    ae = AE(ae_title=NODE_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", o.dicom_port, ae_title=o.aet)
    assert assoc.is_established
    out = []
    try:
        for status, ident in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            assert status, "C-FIND got no answer"
            if status.Status in (0xFF00, 0xFF01):
                out.append(ident)
            else:
                assert status.Status == 0, hex(status.Status)
    finally:
        assoc.release()
    return out


def test_orthanc_files_the_sr_in_the_current_study(orthanc: Orthanc, srs: dict[str, Path],
                                                   current: tuple[Path, Dataset]) -> None:
    cr_path, cr = current
    orthanc.upload(cr_path)
    statuses = send_files([srs["urgent"], srs["no_prior"]], "127.0.0.1", orthanc.dicom_port, orthanc.aet,
                          calling_ae=NODE_AE)
    assert statuses == [0, 0]
    sr = pydicom.dcmread(srs["urgent"])
    assert sr.StudyInstanceUID == cr.StudyInstanceUID  # the SR belongs to the compared study

    # C-FIND, SERIES level: the SR series sits in the current study, beside the CR series
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = cr.StudyInstanceUID
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.SeriesDescription = ""
    q.SeriesNumber = ""
    series = {str(d.SeriesInstanceUID): d for d in _cfind(orthanc, q)}
    assert set(series) == {cr.SeriesInstanceUID, sr.SeriesInstanceUID, pydicom.dcmread(srs["no_prior"]).SeriesInstanceUID}
    assert series[sr.SeriesInstanceUID].Modality == "SR"
    assert series[sr.SeriesInstanceUID].SeriesDescription == "PriorWatch AI draft (preliminary)"

    # C-FIND, IMAGE level: the instance itself, by its SOP Instance UID
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = cr.StudyInstanceUID
    q.SeriesInstanceUID = sr.SeriesInstanceUID
    q.SOPInstanceUID = sr.SOPInstanceUID
    q.SOPClassUID = ""
    found = _cfind(orthanc, q)
    assert len(found) == 1 and found[0].SOPInstanceUID == sr.SOPInstanceUID
    assert found[0].SOPClassUID == COMPREHENSIVE_SR

    # REST: /tools/find, then the instance's tags and its parent study
    ids = orthanc.rest("/tools/find", data=json.dumps(
        {"Level": "Instance", "Query": {"SOPInstanceUID": str(sr.SOPInstanceUID)}}).encode(), method="POST")
    assert len(ids) == 1
    tags = orthanc.rest(f"/instances/{ids[0]}/simplified-tags")
    assert tags["StudyInstanceUID"] == cr.StudyInstanceUID and tags["Modality"] == "SR"
    assert tags["SOPClassUID"] == COMPREHENSIVE_SR
    assert tags["PreliminaryFlag"] == "PRELIMINARY" and tags["VerificationFlag"] == "UNVERIFIED"
    assert tags["PatientID"] == "PW-SR-1" and tags["AccessionNumber"] == "ACC-SR-1"
    study = orthanc.rest(f"/instances/{ids[0]}/study")
    assert study["MainDicomTags"]["StudyInstanceUID"] == cr.StudyInstanceUID
    assert len(study["Series"]) == 3 and len(orthanc.rest("/studies")) == 1  # no stray study created
    # what Orthanc stored is what we sent, content tree included
    stored = orthanc.rest(f"/instances/{ids[0]}/tags?simplify")
    assert DISCLAIMER in json.dumps(stored) and PRIOR_UID in json.dumps(stored)
