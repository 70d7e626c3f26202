"""A patient with a 4-study history for the review page (issue 29), stored as the worker stores a
result: the Finding rows come from `workers.pipeline._finding_row` on `FindingResult`s, the
prior choices are serialised as the pipeline does, from `PriorUsed`.

The images are the real chest CR (pydicom-data's RG1_UNCR.dcm) with a bright disc drawn into the
left mid zone at each study's nodule size, so the four studies differ visibly in the strip.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from priorwatch.db import session_scope
from priorwatch.models import Comparison, Instance, Job, Study, WorklistItem
from priorwatch.settings import Settings
from priorwatch.vocabulary import FindingResult, Observation, PriorUsed
from tests.dashboard.conftest import PASSWORD, _study

DATES = [dt.date(2025, 1, 12), dt.date(2025, 6, 1), dt.date(2025, 10, 2), dt.date(2026, 1, 5)]
UIDS = [f"1.2.826.0.1.9000.40{i}" for i in range(4)]
NODULE_MM = [None, 8.0, 11.0, 15.0]  # absent on the baseline, then growing
EFFUSION_MM = [20.0, 22.0, None, 21.0]  # not assessable on the third study
ROLES = ["baseline", "intermediate", "most_recent"]


@dataclass
class HistorySeed:
    item_id: int
    study_ids: list[int]  # oldest first, the current last
    instance_ids: list[int]


def _image(dest: Path, size_mm: float | None) -> None:
    """The real CR with a nodule-like disc of `size_mm` diameter in the patient's left mid zone."""
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    if size_mm:
        a = ds.pixel_array.copy()
        spacing = float((ds.get("PixelSpacing") or [0])[0]) or 0.19  # this file says 0: ~35 cm over 1841 rows
        r = size_mm / 2 / spacing
        cy, cx = int(a.shape[0] * 0.5), int(a.shape[1] * 0.7)  # image right = patient's left (PA)
        yy, xx = np.ogrid[: a.shape[0], : a.shape[1]]
        a[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = int(np.percentile(a, 0.5))  # MONOCHROME1: low = dense
        ds.PixelData = a.astype(ds.pixel_array.dtype).tobytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=True)


def _findings() -> list[FindingResult]:
    def hist(sizes: list[float | None], missing: str) -> list[Observation]:
        return [Observation(study_uid=u, date=d, size_mm=s, state="present" if s is not None else missing)  # type: ignore[arg-type]
                for u, d, s in zip(UIDS, DATES, sizes)]

    return [
        FindingResult(finding="nodule", side="left", zone="middle", change="worsened", confidence=0.81,
                      size_mm=15.0, first_seen=DATES[1], history=hist(NODULE_MM, "absent"),
                      trajectory="increasing since 2025-06-01: 8 → 11 → 15 mm"),  # type: ignore[arg-type]
        FindingResult(finding="effusion", side="right", zone="lower", change="stable", confidence=0.64,
                      size_mm=21.0, first_seen=DATES[0], history=hist(EFFUSION_MM, "not_assessable"),
                      trajectory="stable since 2025-01-12: 20 → 22 → n/a → 21 mm"),  # type: ignore[arg-type]
    ]


def seed_history(settings: Settings, *, users: bool = True) -> HistorySeed:
    from dashboard import auth
    from workers.pipeline import _finding_row

    choices = [PriorUsed(study_uid=UIDS[i], date=DATES[i], role=ROLES[i], reason=f"{ROLES[i]} comparable CR chest")  # type: ignore[arg-type]
               for i in range(3)]
    with session_scope(settings) as s:
        studies: list[Study] = []
        insts: list[Instance] = []
        for uid, when, mm in zip(UIDS, DATES, NODULE_MM):
            st = _study(s, uid, "PH-004", "HOE^HELEN", when)
            path = settings.spool_dir / "h" / f"{uid}.dcm"
            _image(path, mm)
            inst = Instance(sop_instance_uid=f"{uid}.1", study_id=st.id, series_uid=f"{uid}.0",  # type: ignore[arg-type]
                            sop_class_uid="1.2.840.10008.5.1.4.1.1.1", path=str(path), size=path.stat().st_size,
                            modality="CR", view_position="PA")
            s.add(inst)
            s.flush()
            studies.append(st)
            insts.append(inst)
        cur, prior = studies[3], studies[2]
        job = Job(study_id=cur.id, idempotency_key="job-history", state="done")  # type: ignore[arg-type]
        s.add(job)
        s.flush()
        comp = Comparison(
            job_id=job.id, study_id=cur.id, prior_study_id=prior.id, status="done",  # type: ignore[arg-type]
            interval_days=(DATES[3] - DATES[2]).days, draft_text="Left mid-zone nodule, increasing since 2025-06-01.",
            engine="registration", engine_version="1.0", model="registration", model_version="1",
            priors_json=json.dumps(UIDS[:3]),
            prior_choices_json=json.dumps([c.model_dump(mode="json") for c in choices]),
        )
        s.add(comp)
        s.flush()
        s.add_all([_finding_row(comp.id, f, None) for f in _findings()])  # type: ignore[arg-type]
        item = WorklistItem(comparison_id=comp.id, study_id=cur.id, priority=5)  # type: ignore[arg-type]
        s.add(item)
        s.flush()
        if users:
            auth.create_user(s, "alice", PASSWORD, "radiologist")
        return HistorySeed(item.id, [x.id for x in studies], [x.id for x in insts])  # type: ignore[arg-type, misc]
