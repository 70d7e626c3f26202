"""Fixtures for the dashboard: a per-test data dir with a seeded database.

Studies, instances (real chest CR files copied from pydicom-data's RG1_UNCR.dcm), an
urgent and a routine comparison with findings, a no-prior result, worklist items and
users, built directly in the database the way the pipeline would leave them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from priorwatch.db import init_db, session_scope
from priorwatch.models import Comparison, Finding, Instance, Job, Study, WorklistItem, utcnow
from priorwatch.settings import Settings, get_settings, reset_settings_cache

PASSWORD = "correct-horse-1"


@dataclass
class Seeded:
    settings: Settings
    data_dir: Path
    urgent_item: int
    routine_item: int
    noprior_item: int
    urgent_study: int
    urgent_comparison: int
    current_path: Path
    overlay_path: Path


@pytest.fixture
def pw_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(data_dir))
    monkeypatch.delenv("PRIORWATCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("PRIORWATCH_CONFIG", raising=False)
    monkeypatch.setenv("PRIORWATCH_DASHBOARD_REFRESH_S", "0")
    reset_settings_cache()
    settings = get_settings()
    init_db(settings)
    yield settings
    reset_settings_cache()


def _study(s, uid: str, pid: str, name: str, when: date, *, site: str = "North", sex: str = "F", modality: str = "CR") -> Study:
    st = Study(
        study_uid=uid,
        patient_id=pid,
        patient_name=name,
        patient_sex=sex,
        patient_birth_date=date(1950, 3, 5),
        accession=f"ACC{uid[-4:]}",
        study_date=when,
        modality=modality,
        body_part="CHEST",
        description="Chest PA",
        institution=site,
        state="done",
    )
    s.add(st)
    s.flush()
    return st


def _instance(s, study: Study, src: Path, dest_dir: Path) -> Instance:
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{study.study_uid}.dcm"
    shutil.copyfile(src, path)
    inst = Instance(
        sop_instance_uid=f"{study.study_uid}.1",
        study_id=study.id,  # type: ignore[arg-type]
        series_uid=f"{study.study_uid}.0",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
        path=str(path),
        size=path.stat().st_size,
        modality=study.modality,
        view_position="PA",
    )
    s.add(inst)
    s.flush()
    return inst


def _comparison(s, cur: Study, prior: Study | None, draft: str, findings: list[dict], key: str, overlay: Path | None = None) -> Comparison:
    job = Job(study_id=cur.id, idempotency_key=key, state="done")  # type: ignore[arg-type]
    s.add(job)
    s.flush()
    urgent = any(f.get("urgent") for f in findings)
    comp = Comparison(
        job_id=job.id,  # type: ignore[arg-type]
        study_id=cur.id,  # type: ignore[arg-type]
        prior_study_id=prior.id if prior else None,
        status="done" if prior else "no_prior",
        no_prior_reason=None if prior else "no earlier chest study on file",
        interval_days=(cur.study_date - prior.study_date).days if prior else None,  # type: ignore[operator]
        urgent=urgent,
        draft_text=draft,
        engine="registration",
        engine_version="1.0",
        model="registration",
        model_version="1",
        overlay_path=str(overlay) if overlay else None,
    )
    s.add(comp)
    s.flush()
    for f in findings:
        s.add(Finding(comparison_id=comp.id, **f))  # type: ignore[arg-type]
    return comp


def seed_database(settings: Settings, users: bool = True) -> Seeded:
    from dashboard import auth

    data_dir = settings.data_dir
    src = Path(get_testdata_file("RG1_UNCR.dcm"))
    spool = settings.spool_dir
    overlay = settings.results_dir / "overlay_urgent.png"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    heat = np.zeros((200, 190, 4), np.uint8)
    heat[40:90, 30:80] = (255, 40, 0, 200)  # a blob in the upper right lung (image left)
    Image.fromarray(heat, "RGBA").save(overlay)
    now = utcnow()
    with session_scope(settings) as s:
        # Patient A: urgent new pneumothorax against a prior two years earlier.
        a_prior = _study(s, "1.2.826.0.1.9000.1001", "PA-001", "DOE^JANE", date(2023, 1, 10))
        a_cur = _study(s, "1.2.826.0.1.9000.1002", "PA-001", "DOE^JANE", date(2025, 2, 14))
        _instance(s, a_prior, src, spool / "a")
        cur_inst = _instance(s, a_cur, src, spool / "a")
        ca = _comparison(
            s, a_cur, a_prior,
            "New right upper zone pneumothorax. Small left pleural effusion, stable.",
            [
                dict(finding="pneumothorax", side="right", zone="upper", change="new", urgent=True, confidence=0.91, guard="supported"),
                dict(finding="effusion", side="left", zone="lower", change="stable", urgent=False, confidence=0.55, guard="unsupported"),
            ],
            "job-a", overlay,
        )
        # Patient B: routine, stable nodule; waiting longer than the urgent one.
        b_prior = _study(s, "1.2.826.0.1.9000.2001", "PB-002", "ROE^RICHARD", date(2024, 6, 1), sex="M", site="South", modality="DX")
        b_cur = _study(s, "1.2.826.0.1.9000.2002", "PB-002", "ROE^RICHARD", date(2025, 2, 14), sex="M", site="South", modality="DX")
        _instance(s, b_prior, src, spool / "b")
        _instance(s, b_cur, src, spool / "b")
        cb = _comparison(
            s, b_cur, b_prior,
            "Left middle zone nodule, stable since the prior.",
            [dict(finding="nodule", side="left", zone="middle", change="stable", urgent=False, confidence=0.62, guard="unverified")],
            "job-b",
        )
        # Patient C: no prior.
        c_cur = _study(s, "1.2.826.0.1.9000.3001", "PC-003", "POE^ANN", date(2025, 2, 14))
        _instance(s, c_cur, src, spool / "c")
        cc = _comparison(s, c_cur, None, "No prior for comparison. No acute finding.", [], "job-c")
        wi_b = WorklistItem(comparison_id=cb.id, study_id=b_cur.id, priority=5, created_at=now - timedelta(hours=3))  # type: ignore[arg-type]
        wi_c = WorklistItem(comparison_id=cc.id, study_id=c_cur.id, priority=5, created_at=now - timedelta(hours=1))  # type: ignore[arg-type]
        wi_a = WorklistItem(comparison_id=ca.id, study_id=a_cur.id, priority=1, created_at=now - timedelta(minutes=5))  # type: ignore[arg-type]
        s.add_all([wi_b, wi_c, wi_a])
        s.flush()
        if users:
            auth.create_user(s, "alice", PASSWORD, "radiologist")
            auth.create_user(s, "quinn", PASSWORD, "qa")
            auth.create_user(s, "root", PASSWORD, "admin")
        return Seeded(
            settings=settings,
            data_dir=data_dir,
            urgent_item=wi_a.id,  # type: ignore[arg-type]
            routine_item=wi_b.id,  # type: ignore[arg-type]
            noprior_item=wi_c.id,  # type: ignore[arg-type]
            urgent_study=a_cur.id,  # type: ignore[arg-type]
            urgent_comparison=ca.id,  # type: ignore[arg-type]
            current_path=Path(cur_inst.path),
            overlay_path=overlay,
        )


@pytest.fixture
def seeded(pw_settings: Settings) -> Seeded:
    return seed_database(pw_settings)


@contextmanager
def postgres_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str) -> Iterator[Settings]:
    """Seeded dashboard settings on the machine's PostgreSQL, in a schema of its own (dropped after):
    the server-mode variant of `seeded` for the tests that race writers."""
    import uuid

    import sqlalchemy as sa

    from priorwatch.db import get_engine

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    settings = None
    try:
        monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("PRIORWATCH_DATABASE_URL",
                           f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}")
        reset_settings_cache()
        settings = get_settings()
        init_db(settings)
        seed_database(settings)
        yield settings
    finally:
        reset_settings_cache()
        if settings is not None:
            get_engine(settings).dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
