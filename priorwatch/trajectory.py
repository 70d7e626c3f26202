"""A finding through the patient's history: first seen, growth, stability, and the words (issue 29).

Pure functions over the vocabulary types, shared by the worker (results from Triton) and the
engine side (`comparison.history`, callable from modeldev): `summarise` reads one finding's
history (oldest first, the current study last); `assemble` matches the current's findings
across the comparisons with each prior (same patient side and zone after registration, same
type family) and fills `history`, `first_seen`, `stable_months`, `doubling_time_days`,
`trajectory` and the urgency that a trajectory adds (`vocabulary.is_urgent`, `growing_steps`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from pydantic import BaseModel

from priorwatch.vocabulary import (
    CHANGED,
    Change,
    ComparisonResult,
    FindingResult,
    FindingType,
    Measured,
    Observation,
    ObservationState,
    PriorUsed,
    is_urgent,
)

__all__ = ["STABLE_TOLERANCE_MM", "StudyRef", "Summary", "assemble", "family", "growing_steps", "history_sentence",
           "place", "summarise"]

STABLE_TOLERANCE_MM = 2.0  # sizes within this over the span are "stable": the measurement's own spread on a
#                            registered pair (a pixel or two at each edge) and the Fleischner-style 2 mm rule
GROWTH_STEP_MM = 1.0  # a step of at least this is growth for the urgency trend ("small steps" count): under it
#                       is one pixel at the edge of a 0.5 mm detector grid, measurement noise
DAYS_PER_MONTH = 30.4375  # months are calendar-average months (365.25 / 12)

# Findings that are one lesion seen two ways by two comparisons: a nodule that grew is called a mass.
# Two comparisons type one changing opacity differently (a nodule against one prior, consolidation against an
# older one when it grew from nothing): lung opacities at one side and zone are one lesion followed through time.
_FAMILY: dict[FindingType, str] = {
    FindingType.nodule: "opacity", FindingType.mass: "opacity", FindingType.consolidation: "opacity",
    FindingType.atelectasis: "opacity", FindingType.other: "opacity",
}


def family(finding: FindingType | str) -> str:
    """The type family a finding is matched within (nodule, mass, consolidation: one lung opacity)."""
    f = FindingType(finding)
    return _FAMILY.get(f, f.value)


class StudyRef(BaseModel):
    """One study of the history, as the trajectory sees it."""

    study_uid: str
    date: dt.date | None = None


class Summary(BaseModel):
    first_seen: dt.date | None = None
    stable_months: int | None = None
    doubling_time_days: float | None = None
    trajectory: str | None = None
    growing_steps: int = 0


def _months(a: dt.date, b: dt.date) -> int:
    return int(round((b - a).days / DAYS_PER_MONTH))


def _d(o: Observation) -> str:
    return o.date.isoformat() if o.date else "an undated study"


def _y(o: Observation) -> str:
    return str(o.date.year) if o.date else "on an undated study"


def _mm(v: float) -> str:
    return f"{v:.0f}"


def growing_steps(history: Sequence[Observation]) -> int:
    """How many intervals in a row, ending at the current study, the finding grew by at least
    GROWTH_STEP_MM (an absent study counts as size 0; a study that could not be assessed ends the run)."""
    sizes: list[float] = []
    for o in history:
        if o.state == ObservationState.absent:
            sizes.append(0.0)
        elif o.state == ObservationState.present and o.size_mm is not None:
            sizes.append(o.size_mm)
        else:
            sizes = []  # a gap: the run is only what comes after it
    steps = 0
    for a, b in zip(reversed(sizes[:-1]), reversed(sizes[1:])):
        if b - a < GROWTH_STEP_MM:
            break
        steps += 1
    return steps


def summarise(finding: FindingType | str, history: Sequence[Observation]) -> Summary:
    """One finding's history, oldest first with the current study last, in numbers and words."""
    seen = [o for o in history if o.state != ObservationState.not_assessable]
    present = [o for o in seen if o.state == ObservationState.present]
    out = Summary(first_seen=present[0].date if present else None, growing_steps=growing_steps(history))
    if not seen or not history or history[-1].state == ObservationState.not_assessable:
        return out
    cur = history[-1]
    if cur.state == ObservationState.absent:
        if present:
            k = max(i for i, o in enumerate(seen) if o.state == ObservationState.present)
            out.trajectory = f"resolved: seen {_y(present[0])}, absent since {_d(seen[k + 1])}"
        return out
    earlier = seen[:-1]
    if not earlier:
        return out
    last_absent = max((i for i, o in enumerate(seen) if o.state == ObservationState.absent), default=None)
    if last_absent is not None and any(o.state == ObservationState.present for o in seen[:last_absent]):
        first = next(o for o in seen if o.state == ObservationState.present)
        out.trajectory = f"recurrent: seen {_y(first)}, resolved {_y(seen[last_absent])}, now again"
        return out
    if last_absent == len(seen) - 2:
        out.trajectory = f"new since {_d(seen[last_absent])} (absent then)"
        return out
    run = seen[(last_absent + 1) if last_absent is not None else 0:]
    _run_words(FindingType(finding), run, out)
    return out


def _run_words(finding: FindingType, run: list[Observation], out: Summary) -> None:
    """A finding present on every study of `run` (oldest first, the current last): growth or stability."""
    sized = [o for o in run if o.size_mm is not None and o.size_mm > 0]
    start, cur = run[0], run[-1]
    if len(sized) < 2 or cur.size_mm is None:
        out.trajectory = f"present since {_d(start)}"
        return
    series = " → ".join(_mm(o.size_mm) for o in sized) + " mm"  # type: ignore[arg-type]
    first, last = sized[0], sized[-1]
    assert first.size_mm is not None and last.size_mm is not None
    if all(abs(o.size_mm - last.size_mm) <= STABLE_TOLERANCE_MM for o in sized):  # type: ignore[operator]
        months = _months(first.date, last.date) if first.date and last.date else None
        out.stable_months = months
        out.trajectory = (f"stable for {months} months ({_mm(last.size_mm)} mm)" if months is not None
                          else f"stable ({_mm(last.size_mm)} mm)")
        return
    rising = last.size_mm > first.size_mm
    out.trajectory = f"{'increasing' if rising else 'decreasing'} since {_d(first)}: {series}"
    if rising and finding in (FindingType.nodule, FindingType.mass) and first.date and last.date:
        days = (last.date - first.date).days
        if days > 0:  # volume doubling time from diameters: V ~ d^3
            out.doubling_time_days = round(days * math.log(2) / (3 * math.log(last.size_mm / first.size_mm)), 1)


def _matches(a: FindingResult, b: FindingResult) -> bool:
    return family(a.finding) == family(b.finding) and a.side == b.side and a.zone == b.zone


def place(f: FindingResult) -> tuple[str, str | None, str | None]:
    """Where a finding is followed: its type family, the patient's side and the zone."""
    return family(f.finding), f.side.value if f.side else None, f.zone.value if f.zone else None


def _size_on(result: ComparisonResult | None, track: FindingResult,
             where: dict[tuple[str, str | None, str | None], tuple[int, int, int, int]]) -> Measured | None:
    """The measurement of `track` in one comparison's answer: where the history asked for it (`where`,
    by place), at its own box, else at the box of the same finding as that comparison saw it."""
    if result is None or result.not_compared:
        return None
    for box in (where.get(place(track)), track.evidence.box if track.evidence else None):
        m = next((m for m in result.measured if box is not None and m.box == box
                  and family(m.finding) == family(track.finding)), None)
        if m is not None:
            return m
    for f in result.findings:
        if _matches(f, track) and f.evidence and f.evidence.box:
            return next((m for m in result.measured if m.box == f.evidence.box), None)
    return None


def _observation(study: StudyRef, size: float | None) -> Observation:
    state = (ObservationState.not_assessable if size is None else
             ObservationState.present if size > 0 else ObservationState.absent)
    return Observation(study_uid=study.study_uid, date=study.date, size_mm=size if size else None, state=state)


def assemble(current: StudyRef, priors: Sequence[StudyRef], results: dict[str, ComparisonResult],
             most_recent: str,
             where: dict[tuple[str, str | None, str | None], tuple[int, int, int, int]] | None = None,
             carried: Sequence[FindingResult] = ()) -> list[FindingResult]:
    """The current's findings with their history. `priors` oldest first; `results` maps a prior's
    StudyInstanceUID to the comparison of the current with it (a prior not compared is absent
    from it: not assessable there). The findings are those of the comparison with `most_recent`,
    then each finding another comparison saw that is still present now (a nodule stable since it
    appeared is no change against the most recent prior), its change against the most recent from
    the sizes. `where`: the box each place was measured at when the history asked (`place`). `carried`:
    findings of the patient's earlier result, their boxes mapped to the current (a nodule stable across
    the last interval), followed like those another comparison saw: kept where present now."""
    where = where or {}
    base = results.get(most_recent)
    tracks = list(base.findings) if base else []
    extra: list[FindingResult] = []
    for p in reversed(priors):
        r = results.get(p.study_uid)
        if p.study_uid == most_recent or r is None:
            continue
        for f in r.findings:
            if not any(_matches(f, t) for t in tracks + extra):
                m = _size_on(r, f, where)
                if m is not None and m.current_mm:
                    extra.append(f)
    for f in carried:
        m = _size_on(base, f, where)  # measured now on the pair with the most recent prior (where it was asked)
        if not any(_matches(f, t) for t in tracks + extra) and m is not None and m.current_mm:
            extra.append(f)
    out: list[FindingResult] = []
    for t in tracks + extra:
        seen = {p.study_uid: _size_on(results.get(p.study_uid), t, where) for p in priors}
        now = _current_size(t, [base, *results.values()], where)
        if t in tracks and t.change == Change.resolved:  # the comparison says it is gone: a size there is
            now = 0.0  # the prior's lesion seen in the difference, not one on the current
        hist = [_observation(p, 0.0 if p.study_uid == most_recent and t in tracks and t.change == Change.new
                             else _scaled(seen[p.study_uid], now)) for p in priors]  # new: absent on that prior
        hist.append(_observation(current, now))
        s = summarise(t.finding, hist)
        change = t.change if t in tracks else _change_from(hist, priors, most_recent)
        if s.stable_months is not None and change in CHANGED:  # the comparison saw a change the sizes did not
            s.stable_months, s.trajectory = None, f"present since {_d(next(o for o in hist if o.state == 'present'))}"
        urgent = t.urgent or is_urgent(t.finding, change, growing_steps=s.growing_steps)
        out.append(t.model_copy(update=dict(
            size_mm=now, history=hist, first_seen=s.first_seen, stable_months=s.stable_months,
            doubling_time_days=s.doubling_time_days, trajectory=s.trajectory, change=change, urgent=urgent)))
    return out


def _current_size(track: FindingResult, results: list[ComparisonResult | None],
                  where: dict[tuple[str, str | None, str | None], tuple[int, int, int, int]]) -> float | None:
    """The current's size: from a comparison whose prior lacked the finding when there is one (the
    difference holds the finding alone, no anatomy over it), else the most recent comparison's."""
    ms = [m for r in results if (m := _size_on(r, track, where)) is not None and m.current_mm is not None]
    clean = [m for m in ms if m.prior_mm == 0.0 and m.current_mm]
    return (clean or ms)[0].current_mm if (clean or ms) else track.size_mm


def _scaled(m: Measured | None, now: float | None) -> float | None:
    """A prior's size read on its pair, in the scale of the current's size chosen for the history
    (each pair measures the current anew, with its own anatomy under the finding)."""
    if m is not None and m.same and now is not None:
        return now  # unchanged there: the prior shows what the current shows
    if m is None or m.prior_mm is None:
        return None
    if now and m.current_mm and m.prior_mm:
        return round(m.prior_mm * now / m.current_mm, 1)
    return m.prior_mm


def _change_from(hist: list[Observation], priors: Sequence[StudyRef], most_recent: str) -> Change:
    """The change against the most recent prior from the sizes (a finding another comparison saw)."""
    i = next((k for k, p in enumerate(priors) if p.study_uid == most_recent), None)
    before, now = (hist[i] if i is not None else None), hist[-1]
    if before is None or before.state == ObservationState.not_assessable:
        return Change.stable  # nothing to say otherwise; the trajectory words carry what is known
    if before.state == ObservationState.absent:
        return Change.new
    if now.size_mm is not None and before.size_mm is not None:
        if now.size_mm - before.size_mm > STABLE_TOLERANCE_MM:
            return Change.worsened
        if before.size_mm - now.size_mm > STABLE_TOLERANCE_MM:
            return Change.improved
    return Change.stable


def history_sentence(choices: Sequence[PriorUsed]) -> str | None:
    """The draft's sentence naming the prior it compares with and the baseline (and what could not be fetched)."""
    def name(c: PriorUsed) -> str:
        return f"the study of {c.date.isoformat()}" if c.date else "an undated study"

    recent = next((c for c in choices if c.role == "most_recent" and c.fetched), None)
    if recent is None:
        return None
    parts = [f"Compared with {name(recent)} (most recent prior)"]
    base = next((c for c in choices if c.role == "baseline" and c.fetched), None)
    if base is not None:
        parts.append(f"baseline {name(base)}")
    mid = [c for c in choices if c.role == "intermediate" and c.fetched]
    if mid:
        parts.append(f"{len(mid)} {'study' if len(mid) == 1 else 'studies'} between")
    missing = [c for c in choices if not c.fetched]
    text = "; ".join(parts) + "."
    if missing:
        text += " Not available: " + "; ".join(f"{name(c)} ({c.problem or 'not fetched'})" for c in missing) + "."
    return text
