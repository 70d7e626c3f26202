"""Prior choice from the node's own store: same patient and issuer, comparable, earlier, in range."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from priorwatch.db import init_db
from priorwatch.models import Instance, Study
from priorwatch.settings import Settings
from workers.priors import choose_prior, frontal_instance


@pytest.fixture
def session(tmp_path: Path) -> Session:
    engine = init_db(Settings(data_dir=tmp_path))
    with Session(engine) as s:
        yield s


def _study(s: Session, uid: str, when: str, patient: str = "P1", issuer: str = "H", modality: str = "CR",
           body: str = "CHEST") -> Study:
    st = Study(study_uid=uid, patient_id=patient, issuer=issuer, modality=modality, body_part=body,
               study_datetime=datetime.fromisoformat(when))
    s.add(st)
    s.commit()
    s.refresh(st)
    return st


def test_most_recent_comparable_prior_is_chosen(session: Session) -> None:
    old = _study(session, "1.1", "2020-01-01")
    recent_dx = _study(session, "1.2", "2024-06-01", modality="DX")  # DX chest compares with CR chest
    _study(session, "1.3", "2024-09-01", modality="CT", body="HEAD")  # not comparable
    _study(session, "1.4", "2024-10-01", patient="P2")  # another patient
    _study(session, "1.5", "2024-10-02", issuer="OTHER")  # same ID, other issuer
    _study(session, "1.6", "2025-03-01")  # later than the current
    cur = _study(session, "1.9", "2025-01-01")
    choice = choose_prior(session, cur, lookback_days=3650)
    assert choice.prior_id == recent_dx.id
    assert choice.interval_days == (datetime(2025, 1, 1) - datetime(2024, 6, 1)).days
    assert old.id != choice.prior_id


def test_same_id_with_another_birth_date_or_name_is_never_a_prior(session: Session) -> None:
    from datetime import date

    def person(uid: str, when: str, name: str, born: date) -> Study:
        st = _study(session, uid, when)
        st.patient_name, st.patient_birth_date = name, born
        session.add(st)
        session.commit()
        return st

    mine = person("4.1", "2024-01-01", "Doe^Jane", date(1960, 1, 1))
    person("4.2", "2024-06-01", "Doe^Jane", date(1971, 5, 5))  # another person under the same ID
    person("4.3", "2024-07-01", "Roe^Richard", date(1960, 1, 1))
    cur = person("4.9", "2025-01-01", "DOE^JANE^M", date(1960, 1, 1))
    assert choose_prior(session, cur, lookback_days=3650).prior_id == mine.id


def test_no_prior_reasons_are_specific(session: Session) -> None:
    cur = _study(session, "2.9", "2025-01-01")
    assert choose_prior(session, cur, 365).reason == "no earlier study for this patient"
    _study(session, "2.1", "2024-01-01", modality="MR", body="KNEE")
    assert "comparable" in (choose_prior(session, cur, 365).reason or "")
    _study(session, "2.2", "2019-01-01")
    r = choose_prior(session, cur, 365)
    assert r.prior_id is None and "within 365 days" in (r.reason or "")


def test_frontal_view_preferred_and_sr_skipped(session: Session) -> None:
    st = _study(session, "3.1", "2025-01-01")
    common = dict(study_id=st.id, series_uid="s", path="/x", study_version=1)
    session.add(Instance(sop_instance_uid="a", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.33", **common))
    session.add(Instance(sop_instance_uid="b", sop_class_uid="1.2.840.10008.5.1.4.1.1.1", view_position="LL", **common))
    session.add(Instance(sop_instance_uid="c", sop_class_uid="1.2.840.10008.5.1.4.1.1.1", view_position="PA", **common))
    session.commit()
    inst = frontal_instance(session, st.id)
    assert inst is not None and inst.sop_instance_uid == "c"


def test_pacs_hits_follow_the_same_policy_with_an_optional_baseline(session: Session) -> None:
    from datetime import date

    from dicom_node.pacs import StudyHit
    from workers.fetch import choose_hits

    cur = _study(session, "4.9", "2025-01-01")
    hits = [
        StudyHit(study_uid="4.1", patient_id="P1", study_date=date(2019, 5, 1), modalities=["CR"], body_part="CHEST"),
        StudyHit(study_uid="4.2", patient_id="P1", study_date=date(2024, 6, 1), modalities=["DX"], body_part="CHEST"),
        StudyHit(study_uid="4.3", patient_id="P1", study_date=date(2024, 9, 1), modalities=["CT"], body_part="HEAD"),
        StudyHit(study_uid="4.9", patient_id="P1", study_date=date(2025, 1, 1), modalities=["CR"], body_part="CHEST"),
    ]
    assert [h.study_uid for h in choose_hits(cur, hits, 3650, baseline=False)[0]] == ["4.2"]
    assert [h.study_uid for h in choose_hits(cur, hits, 3650, baseline=True)[0]] == ["4.2", "4.1"]
    none, reason = choose_hits(cur, hits[2:], 3650, baseline=False)
    assert none == [] and reason == "no comparable earlier study in the PACS (modality/body part)"
