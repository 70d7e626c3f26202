"""The current study against its relevant history: one comparison per prior, one result (issue 29).

`compare_history(comparator, current, priors, ctx)` compares the current with the most recent
prior in full (the draft is written against it); every finding it reports is a place (its side,
zone, type family and its own extent), and each older prior is then only measured at those places
(`CompareContext.measure_only`: registration on a small grid and the lesion segmented at each place,
no change detection, no reader, no sign rules; a quarter of a full call). `priorwatch.trajectory.assemble`
then gives each finding its history and words.

Why only one full call: the latency bar (3 priors <= 2x one prior). `benchmarks/pipeline_latency.py --history 4`
gave 2.84x with a full call per prior, 1.52x / 1.57x with this (load 13-15 / 6-7 on 2 CPUs). What it costs: a
finding only an older comparison saw is not followed. Development series (thorax3d and atlas2d, seeds 3101 and
3102, 10 series each, `modeldev.series_eval`), a full call per prior -> this, same engine: direction per interval
17 -> 13 of 103, first seen 12 -> 7 of 47, size 2 -> 2 of 126, recurrent 1 -> 2 of 8, extra claims 1.05 -> 0.68 per
series. Both are bound by the pairwise engine's misses and false changes (issue 28) more than by the history.

It needs only something with `compare(current, prior, ctx) -> ComparisonOutput`: the worker passes
its Triton client (`comparison.triton_client`), modeldev the in-process `RegistrationEngine`, so the
series a generator writes can be read exactly as the worker reads them. Imports no engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from comparison.contract import CompareContext, ComparisonOutput, MeasureRequest
from priorwatch.sentences import change_sentence
from priorwatch.trajectory import StudyRef, assemble, history_sentence, place
from priorwatch.vocabulary import APPEARING, DISAPPEARING, ComparisonResult, FindingResult, FindingType, Measured, PriorUsed

__all__ = ["Comparator", "HistoryImage", "compare_history"]

# The type a place is measured as, by its family (`priorwatch.trajectory.family`): a lung opacity by its extent's
# diameter, as a nodule; a pleural finding as itself.
_FINDING_OF: dict[str, FindingType] = {"opacity": FindingType.nodule, **{f.value: f for f in FindingType}}


class Comparator(Protocol):
    def compare(self, current: np.ndarray, prior: np.ndarray | None,
                context: CompareContext | None = None) -> ComparisonOutput: ...


@dataclass
class HistoryImage:
    """One prior of the history as the comparison needs it; `pixels` None: it could not be had."""

    study_uid: str
    date: dt.date | None
    pixels: np.ndarray | None
    view: str | None = None  # its comparison view (ViewPosition), as CompareContext.prior_view
    orientation_known: bool | None = None

    @classmethod
    def of(cls, study_uid: str, date: dt.date | None, image: Any | None) -> HistoryImage:
        """From a prepared image (`comparison.PreparedImage`), or None when it could not be had."""
        if image is None:
            return cls(study_uid, date, None)
        return cls(study_uid, date, image.pixels, image.comparison_view, image.orientation_known)


def _ctx(base: CompareContext, cur_date: dt.date | None, p: HistoryImage, requests: list[MeasureRequest]) -> CompareContext:
    interval = (cur_date - p.date).days if cur_date and p.date else base.interval_days
    known = None if base.orientation_known is None or p.orientation_known is None else (
        base.orientation_known and p.orientation_known)
    return base.model_copy(update=dict(interval_days=interval, prior_view=p.view, orientation_known=known,
                                       measure_at=list(requests)))


Place = tuple[str, str | None, str | None]
Box = tuple[int, int, int, int]


def compare_history(comparator: Comparator, current: np.ndarray, current_ref: StudyRef, priors: list[HistoryImage],
                    ctx: CompareContext, choices: list[PriorUsed] | None = None, parallel: int = 1) -> ComparisonOutput:
    """`priors` oldest first (those without pixels are not assessable in every history); `ctx` is the
    current's context (its spacing, view, orientation); returns the most recent comparison's output
    with the assembled findings, `priors`, `prior_choices` and the history in the draft. `parallel` > 1:
    after the first comparison the others run that many at a time (a thread-safe comparator only, such as
    the Triton client; Triton then needs as many model instances to gain from it)."""
    usable = [p for p in priors if p.pixels is not None]
    if not usable:
        out = comparator.compare(current, None, ctx)
        out.result = out.result.model_copy(update={"prior_choices": list(choices or [])})
        return out
    recent, older = usable[-1], usable[:-1]
    where: dict[Place, Box] = {}  # place -> the box it is measured at (the finding's own extent where one was found)
    look: dict[Place, int] = {}  # places whose box is still an engine's wide box: the change's sign to look for there

    def run(p: HistoryImage, places: dict[Place, Box], measure_only: bool) -> ComparisonOutput:
        reqs = [MeasureRequest(finding=_FINDING_OF[k[0]], box=b, sign=look.get(k, 0)) for k, b in places.items()]
        c = _ctx(ctx, current_ref.date, p, reqs).model_copy(update={"measure_only": measure_only})
        return comparator.compare(current, p.pixels, c)

    out = run(recent, {}, False)  # the one full comparison: what changed since the last study, and the draft
    _learn(out.result, where, look)
    results = {recent.study_uid: out.result}
    if where and older:  # each older prior is only measured at those places: registration and sizes, no reader, no rules
        first = run(older[0], dict(where), True).result  # the baseline first: against it most of a change shows, so a
        results[older[0].study_uid] = first  # finding the last interval barely changed gets its own extent there
        found = {k: m.at for k in list(look) if (m := _at(first, where[k])) is not None and m.at is not None}
        for k, b in found.items():
            where[k] = b
            del look[k]
        jobs = [(p, dict(where)) for p in older[1:]]
        jobs += [(recent, found)] if found else []  # the most recent prior measured again at those extents
        for (p, _), o in zip(jobs, _map(lambda j: run(j[0], j[1], True), jobs, parallel)):
            r = results.get(p.study_uid)
            results[p.study_uid] = o.result if r is None else r.model_copy(update={"measured": r.measured + o.result.measured})
    refs = [StudyRef(study_uid=p.study_uid, date=p.date) for p in priors]
    findings = assemble(current_ref, refs, results, recent.study_uid, where) if where else list(out.result.findings)
    out.result = _with_history(out.result, findings, [p.study_uid for p in usable], choices or [])
    return out


def _at(r: ComparisonResult, box: Box) -> Measured | None:
    """The measurement a comparison answered for `box`."""
    return next((m for m in r.measured if m.box == box), None) if r.not_compared is None else None


def _look(f: FindingResult) -> int:
    """Which way the difference (current - prior) runs where `f` changed: denser now for an opacity that
    appeared or grew, more lucent for a pneumothorax that did; the other way when it went (as the engine reads it)."""
    sign = 1 if f.change in APPEARING else -1 if f.change in DISAPPEARING else 1
    return -sign if f.finding == FindingType.pneumothorax else sign


def _learn(r: ComparisonResult, where: dict[Place, Box], look: dict[Place, int]) -> None:
    """The places of a comparison's findings, each at its own extent where the comparison found one, else at
    its box with the change's sign to look for (the first comparison to see a place names it)."""
    for f in (r.findings if r.not_compared is None else []):
        box = f.evidence.box if f.evidence else None
        key = place(f)
        if box is None or key in where:
            continue
        m = _at(r, box)
        if m is not None and m.at is not None:
            where[key] = m.at
        else:
            where[key], look[key] = box, _look(f)


T = TypeVar("T")
R = TypeVar("R")


def _map(fn: Callable[[T], R], items: Sequence[T], parallel: int) -> list[R]:
    """`fn` over `items` in order, `parallel` at a time (1: one after the other, in this thread)."""
    if parallel <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(fn, items))


def _with_history(result: ComparisonResult, findings: list[FindingResult], compared: list[str],
                  choices: list[PriorUsed]) -> ComparisonResult:
    """The most recent comparison's result with the history's findings, priors and sentences."""
    words = [history_sentence(choices)] if choices else []
    had = {(f.finding, f.side, f.zone, f.urgent) for f in result.findings}
    for f in findings:
        where = change_sentence(f.finding.value, f.change.value, f.side.value if f.side else None,
                                f.zone.value if f.zone else None)[:-1]
        if f.trajectory:
            words.append(f"{where}: {f.trajectory}.")
        if f.urgent and (f.finding, f.side, f.zone, True) not in had:
            words.append(f"URGENT from its trajectory: {where} (grew at each of the last studies).")
    text = " ".join([result.draft_text] + [w for w in words if w])
    data = result.model_dump()
    data.update(findings=[f.model_dump() for f in findings], draft_text=text, priors=compared,
                prior_choices=[c.model_dump() for c in choices])
    return ComparisonResult.model_validate(data)  # validated again: an urgent finding makes the result urgent
