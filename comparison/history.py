"""The current study against its relevant history: one comparison per prior, one result (issue 29).

`compare_history(comparator, current, priors, ctx)` compares the current in full with the most recent prior (the
draft is written against it) and with the baseline, the oldest prior (what changed over the whole history: a nodule
that appeared two studies ago and stayed is no change against the last prior). Every finding either reports is a
place (its side, zone, type family and its own extent; the most recent comparison's first, a baseline finding at
the same place is that one, and gives its own extent to a place the most recent comparison only boxed). The baseline
is measured where its comparison saw nothing, the studies between at every place, and the most recent again where a
place was refined or added, all in one parallel round of measuring-only calls (`CompareContext.measure_only`:
registration on a small grid and the lesion segmented at each place, no change detection, no reader, no sign
rules; a quarter of a full call). With `earlier`, the stored result of the most recent prior, its findings are
carried forward: each box mapped onto the current (`map_box`) and measured in both full calls, so a lesion stable
across the last interval is still followed and reported. `priorwatch.trajectory.assemble` then gives each finding
its history and words.

Engine 0.4.15 made one full call (the most recent prior; `full_baseline=False` still does): the latency bar (3 priors
<= 2x one prior; `benchmarks/pipeline_latency.py --history 4` gave 2.84x with a full call per prior, 1.52x / 1.57x
with one). Its cost: a finding only an older comparison saw was never followed. With the baseline's full call:
1.84x, 1.37x, 1.65x in three runs (n = 4, 4, 6 per kind; load 11 -> 4 as the session went), 0.4.15's history
1.27x, 1.89x, 1.54x run beside each (noisy on 2 shared CPUs; never over 2x). Development series 3101 (10 thorax3d, 10
atlas2d; `modeldev.series_eval`, last study, same engine), one full call -> two: direction 2 -> 3 of 29 and 4 -> 6 of
28, first seen 0 -> 1 of 14 and 2 -> 4 of 11, size 0 of 35 and 33 both, recurrent 0 -> 1 and 1 -> 1 of 2, extra claims
0.20 -> 0.30 per series; validation series (thorax3d 500031, atlas2d 500032, 10 each): direction 1 -> 5 of 26 and
2 -> 3 of 25, first seen 0 -> 2 of 10 and 2 -> 3 of 11, size 0 of 31 and 1 of 31 both, recurrent 0 -> 1 and 0 -> 0 of
2, extra 0.00 -> 0.10 and 0.20 -> 0.20. Bound by the pairwise engine: most labelled lesions are seen by neither
comparison (a stable nodule present since the first study by none: no comparison calls it changed, and a study
without a prior reports nothing, so there is nothing to carry forward either).

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

from comparison.contract import MEASURED_KINDS, CompareContext, ComparisonOutput, MeasureRequest
from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from priorwatch.sentences import change_sentence
from priorwatch.trajectory import StudyRef, assemble, history_sentence, place
from priorwatch.vocabulary import (APPEARING, DISAPPEARING, Change, ComparisonResult, FindingResult, FindingType, Measured,
                                   PriorUsed)

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
                    ctx: CompareContext, choices: list[PriorUsed] | None = None, parallel: int = 1,
                    full_baseline: bool = True, earlier: ComparisonResult | None = None,
                    params: EngineParams = DEFAULT_PARAMS) -> ComparisonOutput:
    """`priors` oldest first (those without pixels are not assessable in every history); `ctx` is the
    current's context (its spacing, view, orientation); returns the most recent comparison's output
    with the assembled findings, `priors`, `prior_choices` and the history in the draft. `parallel` > 1:
    after the first comparison the others run that many at a time (a thread-safe comparator only, such as
    the Triton client; Triton then needs as many model instances to gain from it). `full_baseline`: the
    baseline gets a full comparison too (False: only measured, the engine 0.4.15 history). `earlier`: the
    patient's stored result of the most recent prior (when it was the current): its findings present then are
    carried forward, each box mapped onto the current (`map_box`), measured on every study and reported where
    present now (a nodule stable across the last interval, which no comparison calls changed); `params`: the
    figures of that mapping (`EngineParams.CARRY_*`)."""
    usable = [p for p in priors if p.pixels is not None]
    if not usable:
        out = comparator.compare(current, None, ctx)
        out.result = out.result.model_copy(update={"prior_choices": list(choices or [])})
        return out
    recent, older = usable[-1], usable[:-1]
    base = older[0] if older and full_baseline else None
    where: dict[Place, Box] = {}  # place -> the box it is measured at (the finding's own extent where one was found)
    look: dict[Place, int] = {}  # places whose box is still an engine's wide box: the change's sign to look for there

    carried = _carried(earlier, recent.pixels, current, params) if earlier is not None else {}
    asked = {k: b for k, (b, _) in carried.items()}  # measured in both full calls (a request costs little there)

    def run(p: HistoryImage, places: dict[Place, Box], measure_only: bool) -> ComparisonOutput:
        reqs = [MeasureRequest(finding=_FINDING_OF[k[0]], box=b, sign=look.get(k, 0)) for k, b in places.items()]
        reqs += [] if measure_only else [MeasureRequest(finding=_FINDING_OF[k[0]], box=b) for k, b in asked.items()]
        c = _ctx(ctx, current_ref.date, p, reqs).model_copy(update={"measure_only": measure_only})
        return comparator.compare(current, p.pixels, c)

    # The full comparisons: the most recent prior (what changed since the last study, and the draft) and the
    # baseline (what changed over the whole history: a finding the last interval barely changed shows against it),
    # at once where the comparator allows it.
    fulls = _map(lambda p: run(p, {}, False), [recent] + ([base] if base is not None else []), parallel)
    out = fulls[0]
    _learn(out.result, where, look)
    results = {recent.study_uid: out.result}
    from_recent = dict(where)
    jobs: list[tuple[HistoryImage, dict[Place, Box]]] = []
    found: dict[Place, Box] = {}
    if base is not None:  # the baseline's full comparison answers for the places it saw too (`assemble` reads its finding
        res0 = fulls[1].result  # there); its own extent of a finding the most recent comparison only boxed is taken
        results[base.study_uid] = res0
        own = _own_extents(res0)
        found = {k: own[k] for k in list(look) if k in own}
        for k, b in found.items():
            where[k] = b
            del look[k]
        saw = {place(f) for f in (res0.findings if res0.not_compared is None else [])}
        unseen = {k: where[k] for k in from_recent if k not in saw}
        jobs += [(base, unseen)] if unseen else []  # measured only where its comparison saw nothing
        _learn(res0, where, look)  # the places only the baseline's comparison saw: followed on every other study
    elif where and older:  # engine 0.4.15: the baseline measured at the most recent comparison's places first
        first = run(older[0], dict(where), True).result  # against the baseline most of a change shows, so a finding
        results[older[0].study_uid] = first  # the last interval barely changed gets its own extent there
        found = {k: m.at for k in list(look) if (m := _at(first, where[k])) is not None and m.at is not None}
        for k, b in found.items():
            where[k] = b
            del look[k]
    added = {k: b for k, b in where.items() if k not in from_recent}
    kept = [f for k, (b, f) in carried.items() if k not in where]  # an earlier finding no comparison saw now
    where.update({k: b for k, (b, _) in carried.items() if k not in where})  # measured in both full calls already
    if where and older:  # the studies between measured at every place, the most recent again where a place was refined
        jobs += [(p, dict(where)) for p in older[1:]]  # or added (registration and sizes only: no reader, no rules)
        again = {**found, **added}
        jobs += [(recent, again)] if again else []
        for (p, _), o in zip(jobs, _map(lambda j: run(j[0], j[1], True), jobs, parallel)):
            r = results.get(p.study_uid)
            results[p.study_uid] = o.result if r is None else r.model_copy(update={"measured": r.measured + o.result.measured})
    refs = [StudyRef(study_uid=p.study_uid, date=p.date) for p in priors]
    findings = (assemble(current_ref, refs, results, recent.study_uid, where, carried=kept) if where
                else list(out.result.findings))
    out.result = _with_history(out.result, findings, [p.study_uid for p in usable], choices or [])
    return out


def _carried(earlier: ComparisonResult, prior: np.ndarray, current: np.ndarray,
             params: EngineParams) -> dict[Place, tuple[Box, FindingResult]]:
    """The earlier result's findings present on its study (the most recent prior now), each at its own extent
    there (`Measured.at` where the earlier history found one, else its box), mapped onto the current."""
    out: dict[Place, tuple[Box, FindingResult]] = {}
    for f in earlier.findings:
        box = f.evidence.box if f.evidence else None
        if box is None or not f.size_mm or f.change == Change.resolved or _FINDING_OF.get(place(f)[0]) is None:
            continue
        if FindingType(_FINDING_OF[place(f)[0]]) not in MEASURED_KINDS:
            continue
        m = next((m for m in earlier.measured if m.box == box and m.at is not None), None)
        own = m.at if m is not None and m.at is not None else box
        mapped = map_box(prior, current, own, params)
        if mapped is None or place(f) in out:
            continue
        ev = f.evidence.model_copy(update={"box": mapped}) if f.evidence else None
        out[place(f)] = (mapped, f.model_copy(update={"evidence": ev, "history": [], "trajectory": None}))
    return out


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The translation (rows, cols) that carries `a` onto `b` (same shape), by phase correlation."""
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa, fb = np.fft.fft2((a - a.mean()) * win), np.fft.fft2((b - b.mean()) * win)
    cross = fb * np.conj(fa)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    r, c = np.unravel_index(int(np.argmax(corr)), corr.shape)
    h, w = a.shape
    return float(r - h if r > h // 2 else r), float(c - w if c > w // 2 else c)


def map_box(prior: np.ndarray, current: np.ndarray, box: Box, params: EngineParams = DEFAULT_PARAMS) -> Box | None:
    """`box` of `prior` (prepared pixels) at the same place of the patient on `current`: the whole images'
    translation (phase correlation on a coarse grid), then the box's neighbourhood matched locally (normalised
    correlation over a search window, `params.CARRY_SEARCH` of the image's long side). None: it falls outside."""
    from scipy import ndimage as ndi
    from scipy.signal import fftconvolve

    def grid(a: np.ndarray) -> tuple[np.ndarray, float]:
        f = params.CARRY_COARSE_PX / max(a.shape)
        return ndi.zoom(np.asarray(a, np.float32), f, order=1), f

    if prior.ndim != 2 or current.ndim != 2:
        return None
    sp, fp = grid(prior)
    sc, fc = grid(current)
    h, w = max(sp.shape[0], sc.shape[0]), max(sp.shape[1], sc.shape[1])
    pad = lambda a: np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])), mode="edge")  # noqa: E731
    dr, dc = _shift(pad(sp), pad(sc))
    scale = (current.shape[0] / prior.shape[0], current.shape[1] / prior.shape[1])
    r0, c0, r1, c1 = box
    bh, bw = r1 - r0, c1 - c0
    gr, gc = r0 * scale[0] + dr / fc, c0 * scale[1] + dc / fc  # the box's corner on the current, from the translation
    m = max(params.CARRY_MARGIN_PX, max(bh, bw) // 2)  # the box's surroundings: the anatomy that tells where it is
    tpl = np.asarray(prior, np.float32)[max(r0 - m, 0):r1 + m, max(c0 - m, 0):c1 + m]
    if tpl.size == 0 or tpl.std() == 0:
        return None
    off_r, off_c = r0 - max(r0 - m, 0), c0 - max(c0 - m, 0)
    s = int(round(params.CARRY_SEARCH * max(current.shape)))
    top, left = int(round(gr)) - off_r - s, int(round(gc)) - off_c - s
    H, W = current.shape
    a0, b0 = max(top, 0), max(left, 0)
    area = np.asarray(current, np.float32)[a0:min(top + tpl.shape[0] + 2 * s, H), b0:min(left + tpl.shape[1] + 2 * s, W)]
    if area.shape[0] < tpl.shape[0] or area.shape[1] < tpl.shape[1]:
        return None
    t = (tpl - tpl.mean()) / (tpl.std() + 1e-9)
    th, tw = t.shape
    num = fftconvolve(area, t[::-1, ::-1], mode="valid")  # sum of area * t at every position
    c1 = np.cumsum(np.cumsum(np.pad(area, ((1, 0), (1, 0))), 0), 1)  # the windows' sums and sums of squares
    c2 = np.cumsum(np.cumsum(np.pad(area.astype(np.float64) ** 2, ((1, 0), (1, 0))), 0), 1)
    wsum = lambda c: c[th:, tw:] - c[:-th, tw:] - c[th:, :-tw] + c[:-th, :-tw]  # noqa: E731
    n = th * tw
    sd = np.sqrt(np.maximum(wsum(c2) / n - (wsum(c1) / n) ** 2, 0.0)) + 1e-6
    ncc = num / n / sd  # t has zero mean: the window's mean drops out
    at = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    R0, C0 = a0 + at[0] + off_r, b0 + at[1] + off_c
    if R0 < 0 or C0 < 0 or R0 + bh > H or C0 + bw > W:
        return None
    return int(R0), int(C0), int(R0 + bh), int(C0 + bw)


def _own_extents(r: ComparisonResult) -> dict[Place, Box]:
    """Each place a comparison's findings name, at the finding's own extent where the comparison found one."""
    out: dict[Place, Box] = {}
    for f in (r.findings if r.not_compared is None else []):
        m = _at(r, f.evidence.box) if f.evidence and f.evidence.box else None
        if m is not None and m.at is not None:
            out.setdefault(place(f), m.at)
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
