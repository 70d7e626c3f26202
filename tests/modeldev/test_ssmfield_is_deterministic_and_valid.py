"""The ssmfield generator is deterministic per seed and writes loadable, labelled DICOM pairs.

No engine is involved: this only checks the generator's own contract from BRIEF.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pydicom

from modeldev.generators import ssmfield

LABEL_KEYS = {"pair_id", "generator", "seed", "case", "prior", "current", "expect", "findings", "notes"}
FINDING_KEYS = {"finding", "side", "zone", "change", "size_mm_prior", "size_mm_current", "urgent"}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    a = ssmfield.generate(tmp_path / "a", seed=11, n_pairs=3)
    b = ssmfield.generate(tmp_path / "b", seed=11, n_pairs=3)
    digests_a, digests_b = _digests(a.parent), _digests(b.parent)
    assert len(digests_a) == 3 * 2 + 2
    assert digests_a == digests_b


def test_pairs_load_with_pydicom_and_carry_the_required_tags(tmp_path: Path) -> None:
    labels_path = ssmfield.generate(tmp_path, seed=4, n_pairs=3, cases={"mirrored": 1})
    rows = [json.loads(line) for line in labels_path.read_text().splitlines()]
    assert len(rows) == 3
    patient_ids = set()
    for row in rows:
        assert set(row) == LABEL_KEYS
        assert row["generator"] == "ssmfield"
        for f in row["findings"]:
            assert set(f) == FINDING_KEYS
        prior = pydicom.dcmread(tmp_path / row["prior"])
        current = pydicom.dcmread(tmp_path / row["current"])
        assert prior.PatientID == current.PatientID
        assert prior.StudyInstanceUID != current.StudyInstanceUID
        gap = dt.datetime.strptime(current.StudyDate, "%Y%m%d") - dt.datetime.strptime(prior.StudyDate, "%Y%m%d")
        assert 30 <= gap.days <= 700
        patient_ids.add(current.PatientID)
        for ds in (prior, current):
            arr = ds.pixel_array
            assert arr.shape == (ds.Rows, ds.Columns)
            assert 1700 <= min(arr.shape) and max(arr.shape) <= 3000
            assert 12 <= ds.BitsStored <= 15
            assert int(arr.max()) < (1 << ds.BitsStored)
            assert ds.BodyPartExamined == "CHEST"
            assert 0.10 <= float(ds.ImagerPixelSpacing[0]) <= 0.20
            assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
    assert len(patient_ids) == 3
    mirrored = [r for r in rows if r["case"] == "mirrored"][0]
    assert list(pydicom.dcmread(tmp_path / mirrored["current"]).PatientOrientation) == ["R", "F"]
