"""The current study against its relevant history: one comparison per prior, one result (issue 29).

`compare_history(comparator, current, priors, ctx)` compares the current with the most recent
prior as before (the draft is written against it), then with each other prior, asking the engine
to measure every finding seen so far at its place (`CompareContext.measure_at`); a finding another
comparison found is measured on the priors compared before it in a second, measuring-only call.
`priorwatch.trajectory.assemble` then gives each finding its history and words.

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
from priorwatch.vocabulary import ComparisonResult, FindingResult, FindingType, PriorUsed

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


def _own(r: ComparisonResult, f: FindingResult) -> tuple[int, int, int, int] | None:
    """Where the comparison that saw `f` found its own extent (tighter than its evidence box)."""
    box = f.evidence.box if f.evidence else None
    return next((m.at or m.box for m in r.measured if box is not None and m.box == box), box)


def _order(usable: list[HistoryImage]) -> list[HistoryImage]:
    """The oldest prior first (against it most of what changed shows, so most findings get their own
    extent there), then the most recent, then those between, newest first."""
    if len(usable) < 2:
        return list(usable)
    return [usable[0], usable[-1], *reversed(usable[1:-1])]


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
    order = _order(usable)
    where: dict[Place, Box] = {}  # place -> the box it is measured at (where a comparison found its own extent)
    asked: dict[str, set[Place]] = {p.study_uid: set() for p in usable}  # places measured on each prior
    outputs: dict[str, ComparisonOutput] = {}

    def run(p: HistoryImage, places: dict[Place, Box]) -> ComparisonOutput:
        reqs = [MeasureRequest(finding=_FINDING_OF[k[0]], box=b) for k, b in places.items()]
        asked[p.study_uid] |= set(places)
        return comparator.compare(current, p.pixels, _ctx(ctx, current_ref.date, p, reqs))

    outputs[order[0].study_uid] = run(order[0], {})
    _learn(outputs[order[0].study_uid].result, where, asked[order[0].study_uid])
    known = dict(where)
    for p, o in zip(order[1:], _map(lambda q: run(q, known), order[1:], parallel)):
        outputs[p.study_uid] = o
        _learn(o.result, where, asked[p.study_uid])
    results = {uid: o.result for uid, o in outputs.items()}
    late = [(p, {k: b for k, b in where.items() if k not in asked[p.study_uid]}) for p in usable
            if results[p.study_uid].not_compared is None]
    late = [(p, places) for p, places in late if places]
    for (p, _), o in zip(late, _map(lambda item: run(*item), late, parallel)):  # places found after it was compared
        r = results[p.study_uid]
        results[p.study_uid] = r.model_copy(update={"measured": r.measured + o.result.measured})
    recent = usable[-1]
    out = outputs[recent.study_uid]
    refs = [StudyRef(study_uid=p.study_uid, date=p.date) for p in priors]
    findings = assemble(current_ref, refs, results, recent.study_uid, where) if where else list(out.result.findings)
    out.result = _with_history(out.result, findings, [p.study_uid for p in usable], choices or [])
    return out


def _learn(r: ComparisonResult, where: dict[Place, Box], own: set[Place]) -> None:
    """The places of a comparison's findings, each at its own extent (the first comparison to see a place names it)."""
    for f in (r.findings if r.not_compared is None else []):
        key, box = place(f), _own(r, f)
        if box is not None:
            own.add(key)  # measured there by this comparison itself
            where.setdefault(key, box)


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
