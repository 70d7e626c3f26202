"""The draft SR carries each finding's size on every study of its history as TID 1501 measurement
groups (UCUM mm, the study measured on, one tracking UID across time points): valid to dciodvfy,
read by DCMTK dsrdump and by highdicom, and kept intact by two real PACS (Orthanc, dcmqrscp)."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_node.scu import send_files
from dicom_node.sr import build_result_sr
from dicom_node.sr_measurements import read_measurements
from tests.conftest import require_binary
from tests.pacs.conftest import NODE_AE
from tests.peers import DcmQrScp, Orthanc

UIDS = [f"1.2.826.0.1.3680043.8.498.7710{i}" for i in range(4)]  # baseline .. current, oldest first
DATES = ["2025-01-12", "2025-06-01", "2025-10-02", "2026-01-05"]
NODULE_MM = [None, 8.0, 11.0, 15.0]  # absent on the baseline, then growing


def _record() -> dict[str, Any]:
    hist = [{"study_uid": u, "date": d, "size_mm": s, "state": "absent" if s is None else "present"}
            for u, d, s in zip(UIDS, DATES, NODULE_MM)]
    return {
        "current_study_uid": UIDS[3], "prior_study_uid": UIDS[2], "interval_days": 95, "no_prior_reason": None,
        "urgent": False, "draft_text": "Left mid-zone nodule, increasing.", "engine": "registration",
        "engine_version": "1.4.0", "model": "none", "model_version": "-",
        "findings": [
            {"finding": "nodule", "side": "left", "zone": "middle", "change": "worsened", "confidence": 0.8,
             "urgent": False, "guard": None, "size_mm": 15.0, "first_seen": DATES[1],
             "trajectory": "increasing since 2025-06-01: 8 → 11 → 15 mm", "history": hist},
            {"finding": "effusion", "side": "right", "zone": "lower", "change": "new", "confidence": 0.6,
             "urgent": False, "guard": None, "size_mm": None, "history": []},  # nothing measured: no group
        ],
    }


@pytest.fixture(scope="module")
def sr_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Dataset]:
    """(the current CR, its draft SR, the CR header): a real chest CR re-UIDed into the current study."""
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = UIDS[3], generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.AccessionNumber = "PW-SRM-1", "ACC-SRM-1"
    out = tmp_path_factory.mktemp("srm")
    cr = out / "cr.dcm"
    ds.save_as(cr, enforce_file_format=True)
    header = pydicom.dcmread(cr, stop_before_pixels=True)
    sr = build_result_sr([header], _record())
    path = out / "draft.dcm"
    sr.save_as(path, enforce_file_format=True)
    return cr, path, header


def _expect(rows: list[dict[str, Any]]) -> None:
    """The nodule's four groups, oldest first, as the record had them."""
    assert [r["study_uid"] for r in rows] == UIDS
    assert [r["size_mm"] for r in rows] == NODULE_MM
    assert [r["unit"] for r in rows] == [None, "mm", "mm", "mm"]
    assert [r["time_point"] for r in rows] == DATES
    assert {r["tracking"] for r in rows} == {"nodule left middle"}
    assert len({r["tracking_uid"] for r in rows}) == 1  # one lesion tracked across its time points
    assert {r["finding"] for r in rows} == {"Nodule"}


def test_highdicom_reads_each_size_with_its_study(sr_file: tuple[Path, Path, Dataset]) -> None:
    _expect(read_measurements(hd.sr.srread(sr_file[1])))


def test_dciodvfy_finds_no_error(sr_file: tuple[Path, Path, Dataset]) -> None:
    p = subprocess.run([require_binary("dciodvfy"), str(sr_file[1])], capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert [ln for ln in out.splitlines() if ln.startswith("Error")] == [], out
    assert "ComprehensiveSR" in out


def test_dsrdump_shows_sizes_in_mm_per_study(sr_file: tuple[Path, Path, Dataset]) -> None:
    p = subprocess.run([require_binary("dsrdump"), "+Pl", str(sr_file[1])], capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "error" not in out.lower(), out
    assert out.count('CONTAINER:(,,"Measurement Group")') == 4
    for mm in ("8.0", "11.0", "15.0"):
        assert f'NUM:(,,"Length")="{mm}" (mm,UCUM,"mm")' in out
    assert 'CODE:(,,"Finding")=(272519000,SCT,"Absent")' in out
    for uid in UIDS:
        assert f'UIDREF:(,,"Study Instance UID")="{uid}"' in out
    assert '"Longitudinal Temporal Offset from Event")="358.0" (d,UCUM,"day")' in out  # 2025-01-12 -> 2026-01-05


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    require_binary("Orthanc")
    o = Orthanc(tmp_path_factory.mktemp("orthanc-srm"), modalities={"priorwatch": (NODE_AE, "127.0.0.1", 1)})
    o.start()
    yield o
    o.stop()


def test_orthanc_keeps_the_measurements(orthanc: Orthanc, sr_file: tuple[Path, Path, Dataset]) -> None:
    cr, sr_path, _ = sr_file
    orthanc.upload(cr)
    assert send_files([sr_path], "127.0.0.1", orthanc.dicom_port, orthanc.aet, calling_ae=NODE_AE) == [0]
    sop = pydicom.dcmread(sr_path).SOPInstanceUID
    ids = orthanc.rest("/tools/lookup", data=str(sop).encode(), method="POST")
    assert len(ids) == 1
    with urllib.request.urlopen(f"{orthanc.url}/instances/{ids[0]['ID']}/file", timeout=10) as r:
        stored = sr_path.parent / "from-orthanc.dcm"
        stored.write_bytes(r.read())
    _expect(read_measurements(hd.sr.srread(stored)))


def test_dcmqrscp_keeps_the_measurements(tmp_path: Path, sr_file: tuple[Path, Path, Dataset]) -> None:
    require_binary("dcmqrscp")
    with DcmQrScp(tmp_path) as q:
        assert send_files([sr_file[1]], "127.0.0.1", q.dicom_port, q.aet, calling_ae=NODE_AE) == [0]
        sop = str(pydicom.dcmread(sr_file[1]).SOPInstanceUID)
        stored = [p for p in (tmp_path / "db").glob("*") if p.name != "index.dat"
                  and pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == sop]
        assert len(stored) == 1
        _expect(read_measurements(hd.sr.srread(stored[0])))
