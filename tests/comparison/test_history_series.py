"""compare_history with the real registration engine in process (the function modeldev calls on a
folder of series): a nodule absent on the baseline and growing since is followed through a 4-study
history (every study measured); a prior without pixels (not fetched) is not assessable, never
dropped (issue 29)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from comparison import HistoryImage, RegistrationEngine, compare_history, load_image
from comparison.contract import CompareContext
from priorwatch.trajectory import StudyRef
from priorwatch.vocabulary import PriorUsed
from tests.history_series import write_series

DATES = [dt.date(2025, 1, 12), dt.date(2026, 1, 20), dt.date(2026, 10, 2), dt.date(2026, 12, 7)]


@pytest.fixture(scope="module")
def engine() -> RegistrationEngine:
    return RegistrationEngine()


def _run(engine: RegistrationEngine, tmp: Path, severities: list[float], drop: int | None = None):  # type: ignore[no-untyped-def]
    studies = write_series(tmp, "PW-HIST-1", "nodule", severities, DATES, seed=5)
    imgs = [load_image(s.path) for s in studies]
    cur = imgs[-1]
    priors = [HistoryImage(s.study_uid, s.date, None if i == drop else im.pixels, im.comparison_view,
                           im.orientation_known) for i, (s, im) in enumerate(zip(studies[:-1], imgs[:-1]))]
    choices = [PriorUsed(study_uid=s.study_uid, date=s.date, role=role, reason="test",  # type: ignore[arg-type]
                         fetched=i != drop, problem="C-GET refused" if i == drop else None)
               for i, (s, role) in enumerate(zip(studies[:-1], ["baseline", "intermediate", "most_recent"]))]
    ctx = CompareContext(pixel_spacing_mm=cur.spacing_mm, current_view=cur.comparison_view,
                         orientation_known=cur.orientation_known)
    out = compare_history(engine, cur.pixels, StudyRef(study_uid=studies[-1].study_uid, date=studies[-1].date),
                          priors, ctx, choices)
    return studies, out.result


def test_growing_nodule_followed_through_four_studies(engine: RegistrationEngine, tmp_path: Path) -> None:
    studies, result = _run(engine, tmp_path, [0.0, 0.5, 0.75, 1.0])
    assert result.priors == [s.study_uid for s in studies[:-1]]
    nodules = [f for f in result.findings if f.finding in ("nodule", "mass", "consolidation")]
    assert len(nodules) == 1
    f = nodules[0]
    assert [o.study_uid for o in f.history] == [s.study_uid for s in studies]
    # Absent on the baseline, present now, measured (present or absent) on every prior between: how well the
    # sizes follow the truth is the lead's blind evaluation on the series generators, not this test's.
    states = [o.state for o in f.history]
    assert states[0] == "absent" and states[-1] == "present"
    assert all(st in ("present", "absent") for st in states[1:-1])
    assert f.first_seen is not None and f.first_seen > DATES[0]
    assert f.size_mm is not None and f.size_mm > 5
    assert f.trajectory is not None
    assert "Compared with the study of 2026-10-02 (most recent prior); baseline the study of 2025-01-12" in result.draft_text


def test_prior_not_fetched_is_not_assessable_and_named(engine: RegistrationEngine, tmp_path: Path) -> None:
    studies, result = _run(engine, tmp_path, [0.0, 0.5, 0.75, 1.0], drop=1)
    assert result.priors == [studies[0].study_uid, studies[2].study_uid]
    [f] = [f for f in result.findings if f.finding in ("nodule", "mass", "consolidation")]
    assert [o.state for o in f.history][1] == "not_assessable"
    assert [c.fetched for c in result.prior_choices] == [True, False, True]
    assert "Not available: the study of 2026-01-20 (C-GET refused)." in result.draft_text
