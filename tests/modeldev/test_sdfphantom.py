"""sdfphantom (blind 3-D SDF generator): determinism, labels schema and DICOM tags.

Two small runs (two pairs each) keep this under ~20 s on one core.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from modeldev.generators import sdfphantom

FINDINGS = {"nodule", "mass", "consolidation", "effusion", "pneumothorax", "edema", "atelectasis",
            "cardiomegaly", "support_device", "other"}
CHANGES = {"new", "worsened", "stable", "improved", "resolved"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    a = tmp_path_factory.mktemp("a")
    b = tmp_path_factory.mktemp("b")
    cases = {"ap_vs_pa": 1, "mirrored": 1}
    sdfphantom.generate(a, seed=17, n_pairs=2, cases=cases)
    sdfphantom.generate(b, seed=17, n_pairs=2, cases=cases)
    return a, b


def _records(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "labels.jsonl").read_text().splitlines()]


def test_same_seed_gives_identical_bytes(runs):
    a, b = runs
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 5
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_labels_schema(runs):
    recs = _records(runs[0])
    assert {r["case"] for r in recs} == {"ap_vs_pa", "mirrored"}
    for r in recs:
        assert r["generator"] == "sdfphantom"
        assert r["seed"] == 17
        assert r["expect"] == "compare"
        assert r["prior"] == f"{r['pair_id']}/prior.dcm"
        assert r["current"] == f"{r['pair_id']}/current.dcm"
        assert isinstance(r["notes"], str)
        disease = [f for f in r["findings"] if f["finding"] != "support_device"]
        assert any(f["change"] != "stable" for f in disease)      # both cases carry a real change
        for f in r["findings"]:
            assert f["finding"] in FINDINGS
            assert f["change"] in CHANGES
            assert f["side"] in {"right", "left", "bilateral"}
            assert f["zone"] in {"upper", "middle", "lower"}
            assert isinstance(f["urgent"], bool)
            assert (f["size_mm_prior"] is None) == (f["change"] == "new" or f["finding"] == "support_device")
            assert (f["size_mm_current"] is None) == (f["change"] == "resolved" or f["finding"] == "support_device")


def test_urgent_rule():
    les = sdfphantom.Lesion("pneumothorax", 1, np.zeros(3), (None, 10.0), "new")
    les._large = False
    les.zone = "upper"
    les.measured = [None, 10.0]
    assert sdfphantom._finding_dict(les)["urgent"] is True
    les.kind, les.change = "nodule", "new"
    assert sdfphantom._finding_dict(les)["urgent"] is False
    les.kind, les._large = "effusion", True
    assert sdfphantom._finding_dict(les)["urgent"] is True
    les.change = "worsened"
    assert sdfphantom._finding_dict(les)["urgent"] is False


def test_dicom_tags(runs):
    root = runs[0]
    recs = {r["case"]: r for r in _records(root)}
    for r in recs.values():
        pri = pydicom.dcmread(root / r["prior"])
        cur = pydicom.dcmread(root / r["current"])
        for ds in (pri, cur):
            assert ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1")
            assert ds.Modality in ("CR", "DX")
            assert ds.BodyPartExamined == "CHEST"
            assert ds.BitsAllocated == 16
            assert 12 <= ds.BitsStored <= 15
            assert ds.PixelRepresentation == 0
            assert 1700 <= ds.Rows <= 3000
            assert 1700 <= ds.Columns <= 3000
            assert 0.10 <= float(ds.ImagerPixelSpacing[0]) <= 0.20
            assert float(ds.PixelSpacing[0]) < float(ds.ImagerPixelSpacing[0])
            assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
            arr = ds.pixel_array
            assert arr.shape == (ds.Rows, ds.Columns)
            assert int(arr.max()) < (1 << ds.BitsStored)
            assert float(ds.WindowWidth) > 0
        assert pri.PatientID == cur.PatientID
        assert pri.StudyInstanceUID != cur.StudyInstanceUID
        gap = (np.datetime64(f"{cur.StudyDate[:4]}-{cur.StudyDate[4:6]}-{cur.StudyDate[6:]}")
               - np.datetime64(f"{pri.StudyDate[:4]}-{pri.StudyDate[4:6]}-{pri.StudyDate[6:]}")).astype(int)
        assert 30 <= gap <= 700
    ap = recs["ap_vs_pa"]
    assert pydicom.dcmread(root / ap["prior"]).ViewPosition == "PA"
    assert pydicom.dcmread(root / ap["current"]).ViewPosition == "AP"
    mir = recs["mirrored"]
    assert list(pydicom.dcmread(root / mir["current"]).PatientOrientation) == ["R", "F"]
    ids = {pydicom.dcmread(root / r["prior"]).PatientID for r in recs.values()}
    assert len(ids) == 2


def test_rle_plugin_round_trip():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4096, (40, 300)).astype(np.uint16)
    a[:10] = 77
    a[20:, 100:260] = 4000
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Rows, ds.Columns = a.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = a.tobytes()
    sdfphantom._register_rle()
    ds.compress(pydicom.uid.RLELossless, a, encoding_plugin="sdfphantom", generate_instance_uid=False)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    np.testing.assert_array_equal(ds.pixel_array, a)
