"""compare_history with the real registration engine in process (the function modeldev calls on a
folder of series): a nodule absent on the baseline and growing since is followed through a 4-study
history (every study measured); a prior without pixels (not fetched) is not assessable, never
dropped (issue 29)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison import HistoryImage, RegistrationEngine, compare_history, load_image
from comparison.contract import CompareContext, MeasureRequest
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


class _Counting:
    """The engine, counting the full and the measuring-only calls it is asked for."""

    def __init__(self, engine: RegistrationEngine) -> None:
        self.engine, self.full, self.measuring = engine, 0, 0

    def compare(self, current, prior, context=None):  # type: ignore[no-untyped-def]
        if context is not None and context.measure_only:
            self.measuring += 1
        else:
            self.full += 1
        return self.engine.compare(current, prior, context)


@pytest.mark.parametrize("full_baseline", [True, False])
def test_full_comparisons_with_the_most_recent_and_the_baseline_the_others_only_measured(
        engine: RegistrationEngine, tmp_path: Path, full_baseline: bool) -> None:
    """The latency bar (3 priors <= 2x one prior): the most recent prior and the baseline get full comparisons
    (only the most recent with `full_baseline=False`); the studies between are measured at the findings' places."""
    studies = write_series(tmp_path, "PW-HIST-2", "nodule", [0.0, 0.5, 0.75, 1.0], DATES, seed=5)
    imgs = [load_image(s.path) for s in studies]
    priors = [HistoryImage.of(s.study_uid, s.date, im) for s, im in zip(studies[:-1], imgs[:-1])]
    counting = _Counting(engine)
    result = compare_history(counting, imgs[-1].pixels, StudyRef(study_uid=studies[-1].study_uid, date=studies[-1].date),
                             priors, CompareContext().with_current(imgs[-1]), full_baseline=full_baseline).result
    assert counting.full == (2 if full_baseline else 1)
    # the study between, and the baseline at the most recent comparison's places (with its full call: only where
    # that call saw nothing)
    assert counting.measuring >= (1 if full_baseline else 2)
    [f] = [f for f in result.findings if f.finding in ("nodule", "mass", "consolidation")]
    assert [o.state for o in f.history][0] == "absent"


def test_measuring_only_reads_what_the_full_comparison_reads(engine: RegistrationEngine, tmp_path: Path) -> None:
    """A measuring-only call registers on a small grid and reads the sizes on the full working grid through
    that transform: at a nodule's place it answers the sizes the full comparison answers there, and nothing else."""
    studies = write_series(tmp_path, "PW-HIST-3", "nodule", [1.0, 0.0], DATES[:2], seed=5)
    cur, pri = (load_image(s.path) for s in reversed(studies))
    prior = np.clip(ndi.shift(pri.pixels, (14.0, -10.0), order=1, mode="nearest"), 0.0, 1.0)  # the patient stood elsewhere
    ctx = CompareContext().with_current(cur)
    full = engine.compare(cur.pixels, prior, ctx).result
    [f] = [f for f in full.findings if f.finding in ("nodule", "mass", "consolidation")]
    [m] = [m for m in full.measured if m.box == f.evidence.box]  # type: ignore[union-attr]
    assert m.at is not None
    ask = ctx.model_copy(update={"measure_at": [MeasureRequest(finding=f.finding, box=m.at)], "measure_only": True})
    only = engine.compare(cur.pixels, prior, ask).result
    assert only.findings == [] and only.not_compared is None
    [n] = only.measured
    assert n.current_mm == m.current_mm  # the current is read on the same working grid, at the same place
    assert n.prior_mm is not None and m.prior_mm is not None
    assert n.prior_mm > 0
    assert abs(n.prior_mm - m.prior_mm) <= 2.0  # the prior registered on the small grid lands where the full call put it


def test_a_nodule_that_appeared_then_stayed_is_followed_from_the_baseline_comparison(
        engine: RegistrationEngine, tmp_path: Path) -> None:
    """Absent on the baseline, present and unchanged since: the most recent comparison sees no change there,
    the baseline's full comparison sees it new; it is reported, first seen when it appeared, on every study."""
    studies = write_series(tmp_path, "PW-HIST-4", "nodule", [0.0, 1.0, 1.0, 1.0], DATES, seed=5)
    imgs = [load_image(s.path) for s in studies]
    priors = [HistoryImage.of(s.study_uid, s.date, im) for s, im in zip(studies[:-1], imgs[:-1])]
    counting = _Counting(engine)
    result = compare_history(counting, imgs[-1].pixels, StudyRef(study_uid=studies[-1].study_uid, date=studies[-1].date),
                             priors, CompareContext().with_current(imgs[-1])).result
    assert counting.full == 2  # the most recent prior and the baseline
    [f] = [f for f in result.findings if f.finding in ("nodule", "mass", "consolidation")]
    assert f.side == "right"
    assert [o.state for o in f.history] == ["absent", "present", "present", "present"]
    assert f.first_seen == DATES[1]
    assert f.change == "stable"


def test_an_earlier_result_s_nodule_is_carried_forward_and_reported_stable(engine: RegistrationEngine,
                                                                          tmp_path: Path) -> None:
    """The stored result of the most recent prior named a new nodule; the current shows it unchanged, so no
    comparison calls it changed: carried forward (its box mapped onto the current), measured and reported stable."""
    studies = write_series(tmp_path, "PW-HIST-5", "nodule", [0.0, 1.0, 1.0], DATES[1:], seed=5)
    imgs = [load_image(s.path) for s in studies]
    refs = [StudyRef(study_uid=s.study_uid, date=s.date) for s in studies]
    hist = [HistoryImage.of(s.study_uid, s.date, im) for s, im in zip(studies, imgs)]
    earlier = compare_history(engine, imgs[1].pixels, refs[1], hist[:1], CompareContext().with_current(imgs[1])).result
    [e] = [f for f in earlier.findings if f.finding in ("nodule", "mass", "consolidation")]
    assert e.change == "new"
    ctx = CompareContext().with_current(imgs[2])
    alone = compare_history(engine, imgs[2].pixels, refs[2], hist[1:2], ctx).result
    assert [f for f in alone.findings if f.finding in ("nodule", "mass", "consolidation")] == []
    carried = compare_history(engine, imgs[2].pixels, refs[2], hist[1:2], ctx, earlier=earlier).result
    [f] = [f for f in carried.findings if f.finding in ("nodule", "mass", "consolidation")]
    assert (f.side, f.zone) == (e.side, e.zone)
    assert f.change == "stable"
    assert [o.state for o in f.history] == ["present", "present"]
    assert f.size_mm is not None and e.size_mm is not None
    assert abs(f.size_mm - e.size_mm) <= 3.0


def test_map_box_follows_the_patient(tmp_path: Path) -> None:
    """A box of the prior lands where the same anatomy is on the current, the patient having moved."""
    from comparison.history import map_box

    [s] = write_series(tmp_path, "PW-HIST-6", "nodule", [1.0], DATES[:1], seed=5)
    img = load_image(s.path).pixels
    moved = np.clip(ndi.shift(img, (14.0, -10.0), order=1, mode="nearest"), 0.0, 1.0)
    for box in [(200, 100, 240, 140), (300, 300, 330, 330), (120, 180, 170, 230)]:
        assert map_box(img, moved, box) == (box[0] + 14, box[1] - 10, box[2] + 14, box[3] - 10)
