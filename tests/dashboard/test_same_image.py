"""The review page shows the image the engine compared (issue 31: one rule, `priorwatch.instances`).

A study whose first instance is an SR document, whose version-1 image has no view position,
and whose later version 2 brings a PA image: the job of version 1 compares the version-1 image.
The dashboard's old copy of the rule showed the version-2 PA image (and, without it, the SR).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydicom.data import get_testdata_file
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from comparison import RegistrationEngine
from dashboard import queries
from priorwatch.db import session_scope
from priorwatch.models import ImageStatistics, Instance, Job, Study, WorklistItem
from priorwatch.settings import Settings
from tests.dashboard.test_app_pages import APP, login_cookie
from workers.pipeline import run_job


@dataclass
class Compared:
    item_id: int
    compared_id: int  # the instance the engine compared (recorded by the pipeline)
    later_pa_id: int
    sr_id: int


def _instance(s: Any, study: Study, n: int, path: Path, *, sop_class: str, view: str, version: int) -> Instance:
    inst = Instance(sop_instance_uid=f"{study.study_uid}.{n}", study_id=study.id, series_uid=f"{study.study_uid}.{n}",
                    sop_class_uid=sop_class, path=str(path), size=path.stat().st_size, modality="CR",
                    view_position=view, study_version=version)
    s.add(inst)
    s.flush()
    return inst


def _run_engine_on_version_1(settings: Settings) -> Compared:
    src = Path(get_testdata_file("RG1_UNCR.dcm"))
    spool = settings.spool_dir / "same"
    spool.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("sr", "v1", "v2"):
        paths[name] = spool / f"{name}.dcm"
        shutil.copyfile(src, paths[name])
    with session_scope(settings) as s:
        st = Study(study_uid="1.2.826.0.1.9000.7001", patient_id="PS-007", patient_name="SAME^IMAGE",
                   study_date=date(2025, 3, 1), modality="CR", body_part="CHEST", state="done", version=2)
        s.add(st)
        s.flush()
        sr = _instance(s, st, 1, paths["sr"], sop_class="1.2.840.10008.5.1.4.1.1.88.11", view="", version=1)
        v1 = _instance(s, st, 2, paths["v1"], sop_class="1.2.840.10008.5.1.4.1.1.1", view="", version=1)
        v2 = _instance(s, st, 3, paths["v2"], sop_class="1.2.840.10008.5.1.4.1.1.1", view="PA", version=2)
        job = Job(study_id=st.id, study_version=1, idempotency_key="same-image-v1")  # type: ignore[arg-type]
        s.add(job)
        s.flush()
        job_id, ids = job.id, (sr.id, v1.id, v2.id)
    # The real registration engine, in process (what Triton serves): the job has no prior, so it says so.
    comparison_id = run_job(job_id, settings, comparator=RegistrationEngine(use_reader=False))  # type: ignore[arg-type]
    assert comparison_id is not None
    with session_scope(settings) as s:
        compared = s.exec(select(ImageStatistics.instance_id).where(ImageStatistics.study_id == st.id)).one()
        item = s.exec(select(WorklistItem).where(WorklistItem.comparison_id == comparison_id)).one()
        return Compared(item_id=item.id, compared_id=compared, later_pa_id=ids[2], sr_id=ids[0])  # type: ignore[arg-type]


def test_study_detail_names_the_instance_the_engine_compared(seeded) -> None:
    got = _run_engine_on_version_1(seeded.settings)
    with session_scope(seeded.settings) as s:
        detail = queries.study_detail(s, got.item_id)
    assert detail is not None and detail.current_instance is not None
    assert detail.current_instance.id == got.compared_id
    assert got.compared_id not in (got.later_pa_id, got.sr_id)


def test_review_page_draws_the_instance_the_engine_compared(seeded) -> None:
    got = _run_engine_on_version_1(seeded.settings)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["pw_cookie"] = login_cookie("alice")
    at.session_state["page"] = "Review"
    at.session_state["review_item"] = got.item_id
    at.run()
    assert not at.exception
    frames = [str(e.proto) for e in at.get("iframe")]
    assert len(frames) == 1
    assert f"/pw/img/{got.compared_id}?" in frames[0]
    assert f"/pw/img/{got.later_pa_id}?" not in frames[0]
    assert f"/pw/img/{got.sr_id}?" not in frames[0]
