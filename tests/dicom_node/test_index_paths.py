"""The SQLite index write on the driver's cursor (`index._index_sqlite`, issue 32) writes the
rows SQLAlchemy's statements write, and refuses what they refuse."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select, text, update

from dicom_node import index
from dicom_node.headers import Header, read_header
from priorwatch.db import init_db
from priorwatch.models import Instance, Study, StudyState
from priorwatch.settings import Settings

study_t = Study.__table__  # type: ignore[attr-defined]
instance_t = Instance.__table__  # type: ignore[attr-defined]
STAMPS = {"first_received_at", "last_received_at", "received_at", "released_at"}


def _headers() -> list[Header]:
    base = read_header(open(get_testdata_file("CT_small.dcm"), "rb").read())
    sr = dataclasses.replace(base, sop_instance_uid="1.2.3.1", study=dict(base.study, modality="SR"),
                             instance=dict(base.instance, modality="SR"))
    ct = dataclasses.replace(base, sop_instance_uid="1.2.3.2")
    other_study = dataclasses.replace(base, study_uid="1.2.3.9", sop_instance_uid="1.2.3.3",
                                      study=dict(base.study, patient_birth_date=date(1970, 1, 2),
                                                 study_datetime=datetime(2026, 12, 7, 8, 9, 10)))
    return [sr, ct, other_study]


def _run(tmp: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple], list[tuple], list[str], list[str]]:
    monkeypatch.setattr(index, "DRIVER_CURSOR_SQLITE", fast)
    engine = index.unsynced_engine(init_db(Settings(data_dir=tmp / ("fast" if fast else "slow"))))
    outcomes = []
    sr, ct, other = _headers()
    for h in (sr, ct, other):
        r = index.index_instance(engine, h, path=f"/spool/{h.sop_instance_uid}.dcm", size=7, calling_ae="MOD", role="incoming")
        outcomes.append((r.study_id, r.study_version, r.instance_id, r.new_version))
    with pytest.raises(index.Duplicate) as dup:
        index.index_instance(engine, ct, path="/spool/again.dcm", size=7, calling_ae="MOD", role="incoming")
    outcomes.append(("duplicate", dup.value.study_id, dup.value.path))
    other_patient = dataclasses.replace(ct, sop_instance_uid="1.2.3.4", patient_id="SOMEONE-ELSE",
                                        study=dict(ct.study, patient_id="SOMEONE-ELSE"))
    with pytest.raises(index.PatientMismatch) as mismatch:
        index.index_instance(engine, other_patient, path="/spool/x.dcm", size=7, calling_ae="MOD", role="incoming")
    outcomes.append(("mismatch", mismatch.value.study_id, mismatch.value.differs))
    same = dataclasses.replace(other, sop_instance_uid="1.2.3.7")  # same birth date: the same patient
    r = index.index_instance(engine, same, path="/spool/same.dcm", size=7, calling_ae="MOD", role="incoming")
    outcomes.append((r.study_id, r.study_version, r.instance_id, r.new_version))
    born = dataclasses.replace(other, sop_instance_uid="1.2.3.5", study=dict(other.study, patient_birth_date=date(1971, 1, 2)))
    with pytest.raises(index.PatientMismatch) as by_birth:  # the stored birth date is read back as a date
        index.index_instance(engine, born, path="/spool/y.dcm", size=7, calling_ae="MOD", role="incoming")
    outcomes.append(("birth", by_birth.value.differs))
    assert index.mark_released(engine, [outcomes[2][0], outcomes[2][0]]) == 1  # the second study, receiving
    with engine.begin() as conn:  # a closed study reopens under a new version
        conn.execute(update(study_t).values(state=StudyState.complete.value))
    late = dataclasses.replace(ct, sop_instance_uid="1.2.3.6")
    r = index.index_instance(engine, late, path="/spool/late.dcm", size=7, calling_ae="MOD", role="incoming")
    outcomes.append((r.study_id, r.study_version, r.instance_id, r.new_version))
    with engine.connect() as conn:
        studies = [tuple(v for k, v in row._mapping.items() if k not in STAMPS) for row in conn.execute(select(study_t))]
        instances = [tuple(v for k, v in row._mapping.items() if k not in STAMPS) for row in conn.execute(select(instance_t))]
        stamps = [type(v).__name__ for row in conn.execute(select(study_t)) for k, v in row._mapping.items() if k in STAMPS]
        raw = [len(v) for (v,) in conn.execute(text("SELECT received_at FROM instance UNION ALL "
                                                     "SELECT released_at FROM study WHERE released_at IS NOT NULL"))]
    return outcomes, studies + instances, stamps, raw  # type: ignore[return-value]


def test_driver_cursor_writes_what_sqlalchemy_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = _run(tmp_path, False, monkeypatch)
    fast = _run(tmp_path, True, monkeypatch)
    assert len(slow[1]) == 2 + 5  # two studies, five instances
    assert sorted(slow[2]).count("datetime") == 2 * 2 + 1  # received stamps of two studies, one release
    assert fast == slow


def test_receive_path_uses_the_driver_cursor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = index.unsynced_engine(init_db(Settings(data_dir=tmp_path / "d")))
    sr, ct, _ = _headers()
    index.index_instance(engine, sr, path="/spool/a.dcm", size=1, calling_ae="M", role="incoming")
    monkeypatch.setattr(index, "_INS_INSTANCE", None)
    monkeypatch.setattr(index, "_SEL_STUDY", None)
    r = index.index_instance(engine, ct, path="/spool/b.dcm", size=1, calling_ae="M", role="incoming")
    assert r.instance_id == 2
