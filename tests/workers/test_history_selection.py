"""The relevant history (issue 29): the most recent comparable study, the oldest within the horizon
as the baseline, at most N between spread evenly in time, each with its reason; the same policy for
the node's store and a PACS's answers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from dicom_node.pacs import StudyHit
from priorwatch.db import init_db
from priorwatch.models import Study
from priorwatch.settings import Settings
from workers.fetch import history_hits
from workers.priors import choose_history, pick_history

NOW = datetime(2026, 12, 7)


def _ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


# (name, ages in days of the comparable earlier studies, horizon, max between, expected picks (age, role))
CASES = [
    ("one prior", [30], 730, 3, [(30, "most_recent")]),
    ("baseline and recent", [700, 30], 730, 3, [(700, "baseline"), (30, "most_recent")]),
    ("baseline outside the horizon", [800, 30], 730, 3, [(30, "most_recent")]),
    ("oldest within the horizon is the baseline", [900, 700, 400, 30], 730, 3,
     [(700, "baseline"), (400, "intermediate"), (30, "most_recent")]),
    ("three between, evenly spread", [720, 700, 600, 500, 380, 300, 200, 100, 60, 30], 730, 3,
     [(720, "baseline"), (500, "intermediate"), (380, "intermediate"), (200, "intermediate"), (30, "most_recent")]),
    ("one between allowed", [720, 600, 380, 200, 30], 730, 1,
     [(720, "baseline"), (380, "intermediate"), (30, "most_recent")]),
    ("none between allowed", [720, 380, 30], 730, 0, [(720, "baseline"), (30, "most_recent")]),
    ("horizon 0: one prior only", [720, 380, 30], 0, 3, [(30, "most_recent")]),
]


@pytest.mark.parametrize("name,ages,horizon,between,expected", CASES, ids=[c[0] for c in CASES])
def test_pick_history(name: str, ages: list[int], horizon: int, between: int,
                      expected: list[tuple[int, str]]) -> None:
    window = sorted(ages, reverse=True)  # oldest first
    picks = pick_history(window, _ago, NOW, horizon, between)
    assert [(p.item, p.role.value) for p in picks] == expected
    assert all(p.reason for p in picks)
    assert all(p.when.date().isoformat() in p.reason for p in picks)


def test_store_and_pacs_pick_the_same_history(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = init_db(settings)
    ages = [1000, 720, 500, 380, 200, 30]
    with Session(engine) as s:
        for i, a in enumerate(ages):
            s.add(Study(study_uid=f"9.{i}", patient_id="P", issuer="H", modality="CR", body_part="CHEST",
                        study_datetime=_ago(a)))
        s.add(Study(study_uid="9.ct", patient_id="P", issuer="H", modality="CT", body_part="HEAD",
                    study_datetime=_ago(100)))  # not comparable: never in the history
        cur = Study(study_uid="9.cur", patient_id="P", issuer="H", modality="CR", body_part="CHEST",
                    study_datetime=NOW)
        s.add(cur)
        s.commit()
        s.refresh(cur)
        local, reason = choose_history(s, cur, settings)
    assert reason is None
    hits = [StudyHit(study_uid=f"9.{i}", patient_id="P", study_date=_ago(a).date(), modalities=["CR"],
                     body_part="CHEST") for i, a in enumerate(ages)]
    pacs = history_hits(cur, hits, hits[-1], settings)
    assert [p.item.study_uid for p in local] == [p.item.study_uid for p in pacs] == ["9.1", "9.2", "9.3", "9.4", "9.5"]
    assert [p.role.value for p in local] == ["baseline"] + ["intermediate"] * 3 + ["most_recent"]
    assert [p.reason for p in local] == [p.reason for p in pacs]
