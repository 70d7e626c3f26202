"""A finding's history in numbers and words (priorwatch.trajectory, issue 29): new, increasing,
recurrent (never simply "new"), stable with its months, resolved; the volume doubling time of a
growing nodule; the urgency a growing pneumothorax or effusion gets from its trajectory."""

from __future__ import annotations

import datetime as dt

import pytest

from priorwatch.trajectory import StudyRef, assemble, growing_steps, history_sentence, summarise
from priorwatch.vocabulary import (
    Change,
    ComparisonResult,
    Evidence,
    FindingResult,
    Measured,
    Observation,
    PriorUsed,
    is_urgent,
)

DATES = [dt.date(2024, 3, 4), dt.date(2025, 1, 12), dt.date(2026, 1, 20), dt.date(2026, 10, 2), dt.date(2026, 12, 7)]


def H(*sizes: float | None | str) -> list[Observation]:
    """A history from sizes, oldest first, the current last: a number > 0 present, 0 absent, None
    or "na" not assessable."""
    out = []
    for i, s in enumerate(sizes):
        d = DATES[len(DATES) - len(sizes) + i]
        if s is None or s == "na":
            out.append(Observation(study_uid=f"1.{i}", date=d, state="not_assessable"))
        elif s == 0:
            out.append(Observation(study_uid=f"1.{i}", date=d, state="absent"))
        else:
            out.append(Observation(study_uid=f"1.{i}", date=d, size_mm=float(s), state="present"))  # type: ignore[arg-type]
    return out


# (name, finding, history, trajectory words, first seen)
WORDS = [
    ("new since the most recent", "nodule", H(0, 0, 0, 9), "new since 2026-10-02 (absent then)", DATES[4]),
    ("increasing", "nodule", H(0, 0, 8, 11, 15), "increasing since 2026-01-20: 8 → 11 → 15 mm", DATES[2]),
    ("recurrent, not new", "nodule", H(10, 0, 0, 12), "recurrent: seen 2025, resolved 2026, now again", DATES[1]),
    ("recurrent after one absence", "consolidation", H(30, 0, 25), "recurrent: seen 2026, resolved 2026, now again",
     DATES[2]),
    ("stable 34 months", "nodule", H(11, 11, 12, 10, 11), "stable for 33 months (11 mm)", DATES[0]),
    ("decreasing", "effusion", H(40, 30, 20), "decreasing since 2026-01-20: 40 → 30 → 20 mm", DATES[2]),
    ("resolved", "nodule", H(10, 12, 0), "resolved: seen 2026, absent since 2026-12-07", DATES[2]),
    ("new after a study not assessable", "consolidation", H(0, "na", 20), "new since 2026-01-20 (absent then)",
     DATES[4]),
]


@pytest.mark.parametrize("name,finding,hist,words,first", WORDS, ids=[w[0] for w in WORDS])
def test_trajectory_words(name: str, finding: str, hist: list[Observation], words: str | None,
                          first: dt.date) -> None:
    s = summarise(finding, hist)
    assert s.trajectory == words
    assert s.first_seen == first


def test_gap_before_current_then_new_since_last_absent() -> None:
    # absent, then not assessable on the most recent: new since the last study that showed it absent
    s = summarise("nodule", H(0, 0, "na", 7))
    assert s.trajectory == "new since 2026-01-20 (absent then)"


def test_stable_nodule_gets_its_months() -> None:
    s = summarise("nodule", H(11, 11, 12, 10, 11))
    assert s.stable_months == 33
    assert s.doubling_time_days is None


def test_doubling_time_of_a_growing_nodule() -> None:
    # 8 -> 12 mm in 365 days: V ratio (12/8)^3 = 3.375, VDT = 365 ln2 / ln 3.375 = 208.0 days
    hist = [Observation(study_uid="a", date=dt.date(2025, 1, 1), size_mm=8.0, state="present"),
            Observation(study_uid="b", date=dt.date(2026, 1, 1), size_mm=12.0, state="present")]
    assert summarise("nodule", hist).doubling_time_days == pytest.approx(208.0, abs=0.2)
    assert summarise("consolidation", hist).doubling_time_days is None  # nodules and masses only


GROWTH = [
    ("two small steps", H(0, 2, 4), 2),
    ("one step", H(5, 5, 8), 1),
    ("growth then a gap", H(2, 4, "na", 6), 0),
    ("shrinking", H(9, 6, 3), 0),
    ("step under a millimetre", H(3, 3.5, 4), 0),
]


@pytest.mark.parametrize("name,hist,steps", GROWTH, ids=[g[0] for g in GROWTH])
def test_growing_steps(name: str, hist: list[Observation], steps: int) -> None:
    assert growing_steps(hist) == steps


URGENCY = [
    ("pneumothorax grows by small steps twice", "pneumothorax", "stable", 2, True),
    ("pneumothorax grew once, stable now", "pneumothorax", "stable", 1, False),
    ("effusion keeps growing", "effusion", "worsened", 2, True),
    ("effusion grew once", "effusion", "worsened", 1, False),
    ("a nodule growing is not urgent", "nodule", "worsened", 3, False),
]


@pytest.mark.parametrize("name,finding,change,steps,urgent", URGENCY, ids=[u[0] for u in URGENCY])
def test_urgency_from_trajectory(name: str, finding: str, change: str, steps: int, urgent: bool) -> None:
    assert is_urgent(finding, change, growing_steps=steps) is urgent


def _result(findings: list[FindingResult], measured: list[Measured]) -> ComparisonResult:
    return ComparisonResult(engine="t", engine_version="1", model="m", model_version="1", has_prior=True,
                            findings=findings, draft_text="", measured=measured)


def _f(finding: str, change: str, box: tuple[int, int, int, int], side: str = "right", zone: str = "upper",
       urgent: bool = False) -> FindingResult:
    return FindingResult(finding=finding, side=side, zone=zone, change=change, confidence=0.8, urgent=urgent,  # type: ignore[arg-type]
                         evidence=Evidence(box=box))


def test_assemble_follows_a_pneumothorax_and_makes_it_urgent() -> None:
    cur = StudyRef(study_uid="cur", date=DATES[4])
    priors = [StudyRef(study_uid=f"p{i}", date=DATES[i + 1]) for i in range(3)]
    box = (10, 10, 40, 30)
    ptx = _f("pneumothorax", "stable", box)  # the most recent comparison saw no growth worth "worsened"
    results = {
        "p2": _result([ptx], [Measured(finding="pneumothorax", box=box, current_mm=6.0, prior_mm=4.5)]),  # type: ignore[arg-type]
        "p1": _result([], [Measured(finding="pneumothorax", box=box, current_mm=6.0, prior_mm=3.0)]),  # type: ignore[arg-type]
        "p0": _result([], [Measured(finding="pneumothorax", box=box, current_mm=6.0, prior_mm=0.0)]),  # type: ignore[arg-type]
    }
    [f] = assemble(cur, priors, results, most_recent="p2")
    assert [o.state for o in f.history] == ["absent", "present", "present", "present"]
    assert [o.size_mm for o in f.history] == [None, 3.0, 4.5, 6.0]
    assert f.first_seen == DATES[2]
    assert f.urgent is True
    assert f.trajectory == "increasing since 2026-01-20: 3 → 4 → 6 mm"


def test_assemble_adds_a_nodule_only_an_older_comparison_saw() -> None:
    cur = StudyRef(study_uid="cur", date=DATES[4])
    priors = [StudyRef(study_uid="p0", date=DATES[0]), StudyRef(study_uid="p1", date=DATES[3])]
    box = (50, 60, 70, 80)
    results = {
        "p1": _result([], [Measured(finding="nodule", box=box, current_mm=11.0, prior_mm=11.0)]),  # type: ignore[arg-type]
        "p0": _result([_f("nodule", "new", box, zone="middle")],
                      [Measured(finding="nodule", box=box, current_mm=11.0, prior_mm=0.0)]),  # type: ignore[arg-type]
    }
    [f] = assemble(cur, priors, results, most_recent="p1")
    assert f.change == Change.stable  # against the most recent prior, from the sizes
    assert [o.state for o in f.history] == ["absent", "present", "present"]
    assert f.trajectory == "stable for 2 months (11 mm)"


def test_assemble_not_compared_prior_is_not_assessable() -> None:
    cur = StudyRef(study_uid="cur", date=DATES[4])
    priors = [StudyRef(study_uid="p0", date=DATES[0]), StudyRef(study_uid="p1", date=DATES[3])]
    box = (50, 60, 70, 80)
    results = {"p1": _result([_f("nodule", "new", box)],
                             [Measured(finding="nodule", box=box, current_mm=9.0, prior_mm=0.0)])}  # type: ignore[arg-type]
    [f] = assemble(cur, priors, results, most_recent="p1")  # p0 could not be fetched: no result for it
    assert [o.state for o in f.history] == ["not_assessable", "absent", "present"]
    assert f.trajectory == "new since 2026-10-02 (absent then)"


def test_history_sentence_names_prior_baseline_and_what_was_not_fetched() -> None:
    choices = [
        PriorUsed(study_uid="a", date=DATES[3], role="most_recent", reason="r"),  # type: ignore[arg-type]
        PriorUsed(study_uid="b", date=DATES[0], role="baseline", reason="r"),  # type: ignore[arg-type]
        PriorUsed(study_uid="c", date=DATES[1], role="intermediate", reason="r", fetched=False,  # type: ignore[arg-type]
                  problem="C-GET refused"),
    ]
    assert history_sentence(choices) == ("Compared with the study of 2026-10-02 (most recent prior); baseline the "
                                         "study of 2024-03-04. Not available: the study of 2025-01-12 (C-GET refused).")


def test_sizes_never_call_stable_what_the_comparison_saw_change() -> None:
    cur = StudyRef(study_uid="cur", date=DATES[4])
    priors = [StudyRef(study_uid="p0", date=DATES[0]), StudyRef(study_uid="p1", date=DATES[3])]
    box = (50, 60, 70, 80)
    results = {  # the engine: worsened against p1; the sizes read the same on both
        "p1": _result([_f("nodule", "worsened", box)],
                      [Measured(finding="nodule", box=box, current_mm=13.0, prior_mm=13.0)]),  # type: ignore[arg-type]
        "p0": _result([], [Measured(finding="nodule", box=box, current_mm=13.0, prior_mm=0.0)]),  # type: ignore[arg-type]
    }
    [f] = assemble(cur, priors, results, most_recent="p1")
    assert f.stable_months is None
    assert f.trajectory == "present since 2026-10-02"


def test_a_finding_the_comparison_calls_resolved_is_absent_now_whatever_the_difference_measured() -> None:
    cur = StudyRef(study_uid="cur", date=DATES[4])
    priors = [StudyRef(study_uid="p0", date=DATES[2]), StudyRef(study_uid="p1", date=DATES[3])]
    box = (50, 60, 70, 80)
    results = {  # the difference region measures 40 mm on the current: the prior's consolidation, gone now
        "p1": _result([_f("consolidation", "resolved", box)],
                      [Measured(finding="consolidation", box=box, current_mm=40.0, prior_mm=38.0)]),  # type: ignore[arg-type]
        "p0": _result([], [Measured(finding="consolidation", box=box, current_mm=40.0, prior_mm=35.0)]),  # type: ignore[arg-type]
    }
    [f] = assemble(cur, priors, results, most_recent="p1")
    assert [o.state for o in f.history] == ["present", "present", "absent"]
    assert (f.size_mm, f.trajectory) == (0.0, "resolved: seen 2026, absent since 2026-12-07")


def test_a_finding_the_comparison_calls_new_is_absent_on_the_most_recent_prior() -> None:
    cur = StudyRef(study_uid="cur", date=DATES[4])
    priors = [StudyRef(study_uid="p1", date=DATES[3])]
    box = (50, 60, 70, 80)  # the difference measured 32 mm "on the prior": the anatomy under the new lesion
    results = {"p1": _result([_f("pneumothorax", "new", box)],
                             [Measured(finding="pneumothorax", box=box, current_mm=48.0, prior_mm=32.0)])}  # type: ignore[arg-type]
    [f] = assemble(cur, priors, results, most_recent="p1")
    assert [o.state for o in f.history] == ["absent", "present"]
    assert f.trajectory == "new since 2026-10-02 (absent then)"
