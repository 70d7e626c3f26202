"""A patient's series of chest radiographs for the history tests (issue 29): one chest from
`comparison.synthetic` (the real CR of pydicom-data), one lesion at one place whose severity
changes from study to study (0 = absent), each study with its own noise and its own date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comparison import synthetic
from priorwatch.vocabulary import FindingType, Side, Zone


@dataclass(frozen=True)
class SeriesStudy:
    study_uid: str
    date: dt.date
    path: Path
    severity: float


def write_series(out: Path, patient_id: str, lesion: FindingType, severities: list[float], dates: list[dt.date],
                 side: Side = Side.right, zone: Zone = Zone.upper, seed: int = 0,
                 scale: float = 0.5) -> list[SeriesStudy]:
    """One study per severity, oldest first (the last is the current)."""
    rng = np.random.default_rng(seed)
    base, lungs = synthetic._base(scale)
    px_mm = synthetic.BASE_SPACING_MM / scale
    centre = synthetic._place(lungs, side, zone, synthetic._lesion_radius(lesion, px_mm), rng)
    geom_seed = int(rng.integers(1 << 31))
    studies = []
    for i, (sev, d) in enumerate(zip(severities, dates, strict=True)):
        img = synthetic._render(base, lungs, lesion, sev, side, zone, centre, px_mm, geom_seed)
        img = img + np.random.default_rng(seed * 100 + i).normal(0.0, 80.0, img.shape)
        key = (patient_id, seed, i)
        uid = synthetic._uid(*key, "study")
        path = synthetic._write(out / patient_id / f"study{i}.dcm", img, patient_id=patient_id, sex="F",
                                birth="19500101", accession=f"H{seed}{i:02d}", study_date=d, study_uid=uid,
                                series_uid=synthetic._uid(*key, "series"), sop_uid=synthetic._uid(*key, "sop"),
                                spacing_mm=px_mm, desc="PA")
        studies.append(SeriesStudy(uid, d, path, sev))
    return studies
