"""Size of one finding at one place of one image, in millimetres (issue 29).

A pure function of the pixels: `measure_at(image, box, spacing_mm, finding)`. The registration
engine calls it on the current and on the prior registered onto the current, at the same box,
so a finding is followed through the history at the same place of the patient. Sizes are what a
reader would measure on a radiograph:

- nodule / mass: the diameter of the round opacity (the equivalent-circle diameter of its area);
- effusion: the height of the fluid, the rows of the box that the dense fluid fills, measured up
  from the costophrenic angle (the box's base);
- pneumothorax: the rim depth, the mean thickness of the lucent air strip (area over length);
- consolidation (and atelectasis, other opacities): the extent, the longest side of the opacity.

The lesion itself is segmented, the same way on every study: a nodule, mass or consolidation is
what stands above the window's background, the greatest of its openings along lines longer than
the box (a rib, vessel or organ edge survives along its line, a lesion does not), a round one grown
again over the image filled in under it (`_regrown`); its region grows from its peak down to a share
of it and stays inside the box; a band through the place is no round lesion. Present or absent is
that segmentation's answer (`pair_sizes`: one size for both studies only where the registered pair
does not differ there). An effusion and a pneumothorax rim are read against the image just around
the box (its median). Noise thresholds in `comparison.thresholds` (MEASURE_*), the segmentation's
figures here (LESION_*). `measure_only` is the history's cheap call on an older prior.
Returns 0.0 when the place was looked at and nothing is there (absent), None when the place
cannot be assessed (outside the image, no surroundings to compare with, a finding with no size).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from comparison import thresholds as T
from comparison.contract import MEASURED_KINDS, CompareContext, ComparisonOutput, MeasureRequest
from priorwatch.vocabulary import APPEARING, DISAPPEARING, Change, ComparisonResult, FindingType, Measured

__all__ = ["lesion_extent", "measure_at", "measure_only", "measure_pair", "MEASURED_KINDS"]

Box = tuple[int, int, int, int]

# The lesion's own segmentation (what `measure_at` measures). Named here, beside the code they tune; the older
# MEASURE_* figures (window, noise threshold, smallest size) stay in `comparison.thresholds`.
LESION_EDGE_FRACTION = 0.35  # a pixel is part of the lesion where it stands at least this share of the lesion's peak over
#                              the background: a projected sphere's profile sqrt(1 - (r/R)^2) falls to 0.35 at 0.94 R (diameter
#                              within 6 %), a blurred disc's edge is at 0.5; anatomy a third as dense as the lesion stays out
LESION_SEED_SHARE = 0.5  # a round lesion's peak is looked for in the middle half of the box (the box is the lesion's own
#                          extent with a margin): a rib or vessel at the box's edge is not taken for it
LESION_LINE_LENGTH = 1.2  # lines this share longer than the box's longest side (the lesion's extent with a margin): no
#                           round lesion of that size fits along them, a rib or vessel crossing the window does
LESION_SMOOTHED_NOISE = 0.28  # white noise smoothed by a 1 px Gaussian keeps 1 / (2 sqrt(pi)) = 0.28 of its sd: a round
#                               lesion's peak is read on the smoothed window, so its noise threshold is that share of the raw one
LESION_LINE_GRID_PX = 48  # a box longer than this (px) is opened on a grid coarsened to it: a 90 px mass box took ~1 s
LESION_REGROW_ROUNDS = 3  # grown again this many times: each round fills in under what the last one found
LESION_REGROW_RIM = 0.5  # the rim filled in around a round lesion, in its radius: room for the edge the openings cut off
LESION_FILL_SWEEPS = 80  # Jacobi sweeps filling it in: enough to settle a hole ~20 px across (a 30 mm nodule's on the grid)
LESION_LINE_ANGLES = tuple(range(0, 180, 15))  # every 15 degrees: a band within 7.5 degrees of a line keeps most of its width
LESION_MIN_ROUNDNESS = 0.3  # a nodule/mass region covering less than this share of the circle on its longest extent is a
#                             band (a rib, a vessel, a fissure) through the place: no round lesion there (a disc 1.0, a square
#                             0.64, a 3:1 ellipse 0.33)


def measure_at(image: np.ndarray, box: Box, spacing_mm: float, finding: FindingType | str) -> float | None:
    """The finding's size in mm at `box` (row0, col0, row1, col1; row1/col1 exclusive) of `image`
    (float [H, W], higher = denser); 0.0 = absent there, None = not assessable."""
    kind = MEASURED_KINDS.get(FindingType(finding))
    img = np.asarray(image, dtype=np.float32)
    if kind is None or img.ndim != 2 or not spacing_mm or spacing_mm <= 0 or not np.isfinite(spacing_mm):
        return None
    win = _window(img, box)
    if win is None:
        return None
    patch, inner, ref, thr = win
    if kind == "height":
        return _fluid_height(patch, inner, thr, spacing_mm)
    comp = _lesion(patch, inner, ref, thr, kind, spacing_mm)
    if comp is None:
        return 0.0
    rows, cols = np.nonzero(comp)
    length = float(max(np.ptp(rows), np.ptp(cols)) + 1)
    area = float(comp.sum())
    if kind == "diameter":
        return round(2.0 * np.sqrt(area / np.pi) * spacing_mm, 1)
    if kind == "rim":
        return round(area / length * spacing_mm, 1)
    return round(length * spacing_mm, 1)


def lesion_extent(image: np.ndarray, box: Box, spacing_mm: float, finding: FindingType | str) -> Box | None:
    """The bounding box (image pixels, row1/col1 exclusive) of the lesion `measure_at` segments at
    `box`, or None where it finds none (or measures no region: an effusion, a type with no size).
    The history measures a place at this extent on every study, so each study is read the same way."""
    kind = MEASURED_KINDS.get(FindingType(finding))
    img = np.asarray(image, dtype=np.float32)
    if kind in (None, "height") or img.ndim != 2:
        return None
    win = _window(img, box)
    if win is None:
        return None
    patch, inner, ref, thr = win
    comp = _lesion(patch, inner, ref, thr, kind, spacing_mm)
    if comp is None:
        return None
    rows, cols = np.nonzero(comp)
    r_in, c_in = np.nonzero(inner)  # window -> image: the box's (clipped) corner is the inner mask's
    dr, dc = max(int(box[0]), 0) - int(r_in.min()), max(int(box[1]), 0) - int(c_in.min())
    return int(rows.min()) + dr, int(cols.min()) + dc, int(rows.max()) + dr + 1, int(cols.max()) + dc + 1


def _lesion(patch: np.ndarray, inner: np.ndarray, ref: float, thr: float, kind: str,
            spacing_mm: float) -> np.ndarray | None:
    """The lesion itself in the window: grown from its peak in the box's centre (a round lesion) or from
    the box (an extent, a rim) down to LESION_EDGE_FRACTION of that peak over the local background; None
    when no lesion is there (peak under the noise threshold, too small, or a band rather than a round one)."""
    sign = -1.0 if kind == "rim" else 1.0
    if kind in ("diameter", "extent"):  # a lesion sits on ribs, vessels and edges longer than itself: what is left of the
        contrast = patch - _linear_background(patch, inner)  # window after opening it along lines longer than the box
        seed_zone = _central(inner, LESION_SEED_SHARE)
        # `thr` is MEASURE_Z sd of the raw pixel noise; the patch is smoothed (sigma 1 px), its noise that much lower
        # (an extent's peak is looked for over the whole box: a patchy opacity need not peak at its centre)
        seed_zone = seed_zone if kind == "diameter" else inner
        thr = max(T.MEASURE_MIN_CONTRAST, thr * LESION_SMOOTHED_NOISE)
    else:
        contrast = sign * (patch - ref)
        seed_zone = inner
    vals = np.where(seed_zone, contrast, -np.inf)
    peak_at = np.unravel_index(int(np.argmax(vals)), vals.shape)
    peak = float(vals[peak_at])
    if not np.isfinite(peak) or peak <= thr:
        return None
    labels, _ = ndi.label(contrast > max(thr / T.MEASURE_Z, LESION_EDGE_FRACTION * peak))  # down to one noise sd
    comp = ndi.binary_fill_holes(labels == labels[peak_at])
    if kind in ("diameter", "extent"):  # what is measured at a box is inside it: a region running on beyond the box is
        comp &= inner  # anatomy the lesion touches (the box is the lesion's own extent with a margin, or an engine's box)
    if comp.sum() < np.pi * (T.MEASURE_MIN_SIZE_MM / 2.0 / spacing_mm) ** 2:
        return None
    if kind == "diameter":
        rows, cols = np.nonzero(comp)
        longest = float(max(np.ptp(rows), np.ptp(cols)) + 1)
        if comp.sum() < LESION_MIN_ROUNDNESS * np.pi * (longest / 2.0) ** 2:
            return None  # a band through the place (a rib, a vessel, a fissure), not a round lesion
        for _ in range(LESION_REGROW_ROUNDS):
            comp = _regrown(patch, contrast, comp, inner, peak_at, thr)
    return comp


def _regrown(patch: np.ndarray, contrast: np.ndarray, comp: np.ndarray, inner: np.ndarray,
             peak_at: tuple[int, ...], thr: float) -> np.ndarray:
    """A round lesion grown again over a background filled in under it from around it. Lines that start
    in a lesion and run on along a rib it touches keep that part of the lesion in the line openings (its
    edge along the rib is cut off); the image filled in across the lesion and a rim around it (the smooth,
    harmonic surface through the rim's outside: a rib crossing it is carried across) is not fooled so.
    The lower of the two backgrounds is the lesion's."""
    radius = np.sqrt(comp.sum() / np.pi)
    hole = ndi.binary_dilation(comp, iterations=max(2, int(round(LESION_REGROW_RIM * radius)))) & inner
    hole[[0, -1], :] = False
    hole[:, [0, -1]] = False
    filled = patch.astype(np.float32).copy()
    filled[hole] = float(np.median(patch[ndi.binary_dilation(hole, iterations=2) & ~hole]))
    for _ in range(LESION_FILL_SWEEPS):  # Jacobi sweeps: each hole pixel the mean of its four neighbours
        avg = 0.25 * (np.roll(filled, 1, 0) + np.roll(filled, -1, 0) + np.roll(filled, 1, 1) + np.roll(filled, -1, 1))
        filled[hole] = avg[hole]
    again = np.where(hole, np.maximum(contrast, patch - filled), 0.0)
    peak = float(again[peak_at])
    if peak <= thr:
        return comp
    labels, _ = ndi.label(again > LESION_EDGE_FRACTION * peak)
    out = ndi.binary_fill_holes(labels == labels[peak_at])
    return out if out.sum() >= comp.sum() else comp


def _central(inner: np.ndarray, share: float) -> np.ndarray:
    """The middle `share` of the box (each side), where a round lesion's peak is looked for."""
    rows = np.nonzero(inner.any(axis=1))[0]
    cols = np.nonzero(inner.any(axis=0))[0]
    out = np.zeros_like(inner)
    h, w = rows.size, cols.size
    r0 = rows[0] + int(h * (1 - share) / 2)
    c0 = cols[0] + int(w * (1 - share) / 2)
    out[r0:r0 + max(1, int(round(h * share))), c0:c0 + max(1, int(round(w * share)))] = True
    return out


def _linear_background(patch: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The window without its round lesions: the greatest of its grey openings along lines
    (LESION_LINE_ANGLES) a LESION_LINE_LENGTH share longer than the box. A rib, a vessel or an organ's
    edge runs along one of the lines and survives that opening; a round lesion narrower than every
    line is removed by all of them, so the image minus this is the lesion alone, also where it lies
    on a rib (a plane or a median under it would take the rib for the lesion)."""
    rows = np.nonzero(inner.any(axis=1))[0]
    cols = np.nonzero(inner.any(axis=0))[0]
    side = max(rows.size, cols.size)
    f = max(1, int(np.ceil(side / LESION_LINE_GRID_PX)))  # a big box is opened on a coarser grid (cost ~ pixels x length)
    small = ndi.zoom(patch, 1.0 / f, order=1) if f > 1 else patch
    length = max(3, int(round(LESION_LINE_LENGTH * side / f)) | 1)
    out = np.full(small.shape, -np.inf, np.float32)
    for ang in LESION_LINE_ANGLES:
        out = np.maximum(out, ndi.grey_opening(small, footprint=_line(length, ang)))
    if f > 1:
        out = ndi.zoom(out, (patch.shape[0] / out.shape[0], patch.shape[1] / out.shape[1]), order=1)
        out = np.minimum(out[:patch.shape[0], :patch.shape[1]], patch)  # an opening never exceeds the image
    return out


def _line(length: int, angle_deg: float) -> np.ndarray:
    """A one-pixel line footprint of `length` pixels through the centre at `angle_deg`."""
    r = length // 2
    t = np.linspace(-r, r, 2 * length)
    a = np.deg2rad(angle_deg)
    fp = np.zeros((2 * r + 1, 2 * r + 1), bool)
    fp[np.round(r - t * np.sin(a)).astype(int), np.round(r + t * np.cos(a)).astype(int)] = True
    return fp


def _window(img: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """The box with a margin around it (smoothed by one pixel), the box's mask in it, the
    surroundings' median and the contrast threshold; None when there is nothing to compare with."""
    h, w = img.shape
    r0, c0, r1, c1 = (int(v) for v in box)
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
    if r1 - r0 < 1 or c1 - c0 < 1:
        return None
    m = max(T.MEASURE_MIN_MARGIN_PX, int(round(T.MEASURE_MARGIN * max(r1 - r0, c1 - c0))))
    R0, C0, R1, C1 = max(r0 - m, 0), max(c0 - m, 0), min(r1 + m, h), min(c1 + m, w)
    raw = img[R0:R1, C0:C1]
    inner = np.zeros(raw.shape, bool)
    inner[r0 - R0:r1 - R0, c0 - C0:c1 - C0] = True
    ring = ~inner
    if ring.sum() < T.MEASURE_MIN_RING_PX:
        return None
    patch = ndi.gaussian_filter(raw, 1.0)
    ref = float(np.median(patch[ring]))
    fine = (raw - ndi.gaussian_filter(raw, 2.0))[ring]  # pixel noise, not anatomy
    noise = 1.4826 * float(np.median(np.abs(fine - np.median(fine))))
    return patch, inner, ref, max(T.MEASURE_MIN_CONTRAST, T.MEASURE_Z * noise)


def _component(mask: np.ndarray, inner: np.ndarray, spacing_mm: float) -> np.ndarray | None:
    """The connected region of `mask` that covers most of the box, if it is big enough to be a finding."""
    labels, n = ndi.label(mask)
    if n == 0:
        return None
    overlap = np.bincount(labels[inner], minlength=n + 1)
    overlap[0] = 0
    best = int(np.argmax(overlap))
    if overlap[best] == 0:
        return None
    comp = labels == best
    min_px = np.pi * (T.MEASURE_MIN_SIZE_MM / 2.0 / spacing_mm) ** 2
    return comp if comp.sum() >= min_px else None


def _fluid_height(patch: np.ndarray, inner: np.ndarray, thr: float, spacing_mm: float) -> float | None:
    """Rows of the box whose columns the dense fluid mostly fills (a meniscus fills its rows), against
    the aerated lung just above the box (below it lie the diaphragm and the abdomen, dense anyway)."""
    rows = np.nonzero(inner.any(axis=1))[0]
    cols = np.nonzero(inner.any(axis=0))[0]
    above = patch[:rows[0], cols[0]:cols[-1] + 1]
    if above.size < T.MEASURE_MIN_RING_PX:
        return None  # nothing above the box to tell fluid from lung
    ref = float(np.median(above))
    box = patch[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    filled = (box - ref > thr).mean(axis=1) >= T.MEASURE_FLUID_ROW_COVER
    height = float(filled.sum()) * spacing_mm
    return round(height, 1) if height >= T.MEASURE_MIN_SIZE_MM else 0.0


def measure_pair(current: np.ndarray, prior: np.ndarray, valid: np.ndarray, cur_shape: tuple[int, ...],
                 spacing_mm: float, result: ComparisonResult, requests: list[MeasureRequest]) -> ComparisonResult:
    """The engine's hook: `current` and the registered `prior` on one grid (the working grid, whose
    pixel is `spacing_mm`), boxes in the current image's pixels (`cur_shape`). Each finding of
    `result` gets its size on the current; `result.measured` gets both sizes at each finding's box
    and at each requested one (the prior's None where the registered prior has no data).

    A finding's box may be a whole lung third: the change inside it says where the lesion is, then the
    lesion is segmented on the image that shows it (`lesion_extent`) and that extent (`Measured.at`) is
    the place measured on every study of the history. A requested box is such an extent already."""
    scale = max(current.shape) / max(cur_shape)
    # (type, box, the sign of the change to find inside the box: a finding's own, lung-third box; 0: a place asked
    # about, already the finding's own extent)
    wanted: list[tuple[FindingType, Box, int]] = [
        (f.finding, f.evidence.box, _sign(f.finding, f.change))
        for f in result.findings if f.evidence is not None and f.evidence.box]
    wanted += [(r.finding, r.box, r.sign) for r in requests]
    diff = ndi.gaussian_filter(current - prior, 1.0)  # the anatomy both share cancels: what grew or shrank
    measured: list[Measured] = []
    for finding, box, sign in wanted:
        b = tuple(int(round(v * scale)) for v in box)
        tight = _own_extent(current, prior, diff, b, sign, spacing_mm, finding) if sign else None  # type: ignore[arg-type]
        at = b if tight is None else tight
        r0, c0, r1, c1 = at
        inside = valid[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)]
        covered = inside.size > 0 and float(inside.mean()) >= T.MEASURE_VALID_COVER
        cur_mm, prior_mm = (pair_sizes(current, prior, diff, at, spacing_mm, finding) if covered  # type: ignore[arg-type]
                            else (measure_at(current, at, spacing_mm, finding), None))  # type: ignore[arg-type]
        same = covered and cur_mm is not None and cur_mm == prior_mm and not _changed(diff, at, spacing_mm, finding)  # type: ignore[arg-type]
        back = None if tight is None else tuple(int(round(v / scale)) for v in tight)
        measured.append(Measured(finding=finding, box=box, at=back, current_mm=cur_mm, prior_mm=prior_mm,  # type: ignore[arg-type]
                                 same=same))
    sizes = {(m.finding, m.box): m.current_mm for m in measured}
    findings = [f.model_copy(update={"size_mm": sizes.get((f.finding, f.evidence.box))})
                if f.evidence is not None and f.evidence.box else f for f in result.findings]
    return result.model_copy(update={"findings": findings, "measured": measured})


def _own_extent(current: np.ndarray, prior: np.ndarray, diff: np.ndarray, box: Box, sign: int, spacing_mm: float,
                finding: FindingType) -> Box | None:
    """The lesion's own extent inside an engine's box: where the change is strongest, the lesion
    segmented on the image that shows more of it (the current for what appeared or grew, the prior for
    what went), with a margin; the change region's own extent where no lesion segments there."""
    changed = _changed_extent(sign * diff, box)
    if changed is None:
        return None
    kind = MEASURED_KINDS.get(FindingType(finding))
    if kind not in ("diameter", "extent"):  # a rim or a fluid level is where it changed: its lucent or dense band runs
        return changed  # on along the pleura beyond the change, no extent of its own to find
    shows = current if sign > 0 else prior
    r0, c0, r1, c1 = changed  # the lesion may reach beyond what changed (a nodule that grew a little): looked for in
    pad = int(round(0.5 * max(r1 - r0, c1 - c0)))  # the change's extent grown by half, its peak in the middle half
    own = lesion_extent(shows, (r0 - pad, c0 - pad, r1 + pad, c1 + pad), spacing_mm, finding)
    if own is None:
        return changed
    m = int(round(T.MEASURE_EXTENT_MARGIN * max(own[2] - own[0], own[3] - own[1])))
    h, w = current.shape
    return max(own[0] - m, 0), max(own[1] - m, 0), min(own[2] + m, h), min(own[3] + m, w)


def _sign(finding: FindingType, change: Change) -> int:
    """Which way the difference (current - prior) runs where this finding changed: denser now for an
    opacity that appeared or grew, more lucent for a pneumothorax that did; the other way when it went."""
    lucent = MEASURED_KINDS.get(FindingType(finding)) == "rim"
    sign = 1 if change in APPEARING else -1 if change in DISAPPEARING else 0
    return -sign if lucent else sign


def _changed_extent(diff: np.ndarray, box: Box) -> Box | None:
    """The extent of the strongest change inside `box` (an engine's evidence box may be a whole lung
    third; `diff` signed so that the finding's change is positive): the bounding box, with a margin,
    of the region holding the most change, or None when nothing inside changed that way."""
    win = _window(diff, box)
    if win is None:
        return None
    patch, inner, ref, thr = win
    labels, n = ndi.label((patch - ref > thr) & inner)
    if n == 0:
        return None
    mass = ndi.sum(patch - ref, labels, index=np.arange(1, n + 1))
    comp = labels == int(np.argmax(mass)) + 1
    if comp.sum() < np.pi * (T.MEASURE_MIN_SIZE_MM / 2.0) ** 2:  # in px: a pixel is at least 1 mm here
        return None
    rows, cols = np.nonzero(comp & inner)
    r_in, c_in = np.nonzero(inner)  # window -> image: the box's (clipped) corner is the inner mask's
    dr, dc = max(int(box[0]), 0) - int(r_in.min()), max(int(box[1]), 0) - int(c_in.min())
    m = int(round(T.MEASURE_EXTENT_MARGIN * max(np.ptp(rows) + 1, np.ptp(cols) + 1)))
    h, w = diff.shape
    return (max(int(rows.min()) + dr - m, 0), max(int(cols.min()) + dc - m, 0),
            min(int(rows.max()) + dr + 1 + m, h), min(int(cols.max()) + dc + 1 + m, w))


def _changed(diff: np.ndarray, box: Box, spacing_mm: float, finding: FindingType) -> bool:
    """Whether the registered pair differs at the place, either way."""
    return bool(measure_at(diff, box, spacing_mm, finding) or measure_at(-diff, box, spacing_mm, finding))


def pair_sizes(current: np.ndarray, prior: np.ndarray, diff: np.ndarray, box: Box, spacing_mm: float,
               finding: FindingType) -> tuple[float | None, float | None]:
    """Sizes at one box on a registered pair: the lesion segmented on each image alone, the same way
    (present or absent is that segmentation's answer). Where the difference shows no change at all at
    the place, the prior shows what the current shows: one size for both (the two readings differ only
    by noise and by the anatomy each registration leaves under the lesion)."""
    cur = measure_at(current, box, spacing_mm, finding)
    pri = measure_at(prior, box, spacing_mm, finding)
    if cur is None or pri is None:
        return cur, pri
    if not _changed(diff, box, spacing_mm, finding):
        return cur, cur
    return cur, pri


# The measuring-only call (issue 29): an older prior of the history is only measured at places already known.
MEASURE_ONLY_REGISTER_SIZE = 128  # long side of the grid the measuring-only call registers on (~3.4 mm/pixel on a 43 cm
#                                   film): the MI stages cost ~ pixels, so a quarter of the full call's; the transform is
#                                   then applied on the full working grid, where the sizes are read as in the full call


def measure_only(engine: Any, current: np.ndarray, prior: np.ndarray, ctx: CompareContext,
                 steps: dict[str, Callable[..., Any]], model: str) -> ComparisonOutput:
    """Sizes at `ctx.measure_at` on the current and on `prior` registered onto it, and nothing else:
    no change detection, no reader, no sign rules, no heat-map (`CompareContext.measure_only`).
    `engine` is the `RegistrationEngine` asked and `steps` its module's own steps (`to_work`,
    `match_intensity`, `ncc`: handed in, as this module cannot import the engine that imports it);
    its registration runs on a small grid (MEASURE_ONLY_REGISTER_SIZE, a similarity-then-affine MI fit
    from the coarse pose, no B-spline) and the prior is resampled through that transform onto the full
    working grid, so the current is read exactly as the full comparison reads it (the same pixels at
    the same boxes)."""
    import SimpleITK as sitk

    from comparison._anatomy import segment_lungs
    from comparison.coarse_pose import search_pose

    to_work, match, ncc = steps["to_work"], steps["match_intensity"], steps["ncc"]
    t0 = time.perf_counter()
    params = getattr(engine, "params", T)  # the engine's own parameters (`EngineParams`), else the module's figures
    cw, pw = to_work(current, params.WORK_SIZE), to_work(prior, params.WORK_SIZE)
    small = min(MEASURE_ONLY_REGISTER_SIZE, params.WORK_SIZE)
    cs, ps = to_work(current, small), to_work(prior, small)
    lungs_c, lungs_p = segment_lungs(cw), segment_lungs(pw)
    pose = (search_pose(cs, ps, **({} if params is T else {"params": params})) if params.POSE_SEARCH else None)
    starts = [None] if pose is None else [pose, None] if pose.needed else [None, pose]
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for start in starts:  # the engine's fallback chain, on the small grid
        tx, _ = engine._register(cs, ps, start)
        big = _scaled_affine(tx, cw.shape[0] / cs.shape[0], cw.shape[1] / cs.shape[1], ps.shape, pw.shape, sitk)
        warped, valid, lungs_pw = engine._warp(cw, pw, lungs_p, big)
        mapped, _, _ = match(cw, warped, valid & ndi.binary_dilation(lungs_c.both, iterations=8))
        warped, valid, lungs_pw, mapped = engine._inspiration(cw, warped, valid, lungs_pw, mapped, lungs_c)
        roi = (lungs_c.both | lungs_pw.both) & ndi.binary_erosion(valid, iterations=3)
        quality = ncc(cw, mapped, roi)
        if best is None or quality > best[0]:
            best = (quality, mapped, valid)
        if best[0] >= params.REG_QUALITY_FAIL:
            break
    assert best is not None
    quality, mapped, valid = best
    version = f"SimpleITK {sitk.Version_VersionString()}"
    if quality < params.REG_QUALITY_FAIL:
        why = f"the images do not line up (correlation {quality:.2f}); measured only"
        res = ComparisonResult(engine=engine.ENGINE_NAME, engine_version=engine.ENGINE_VERSION, model=model,
                               model_version=version, has_prior=True, draft_text=f"Not compared: {why}.",
                               notes=[f"Not compared: {why}."], not_compared=why)
        return ComparisonOutput(result=res, heatmap=None, timings={"total": time.perf_counter() - t0})
    res = ComparisonResult(engine=engine.ENGINE_NAME, engine_version=engine.ENGINE_VERSION, model=model,
                           model_version=version, has_prior=True, draft_text="Measured only: no interval change assessed.",
                           notes=["measured only (an older prior of the history)"])
    spacing = (ctx.pixel_spacing_mm or 400.0 / max(current.shape)) * (max(current.shape) / max(cw.shape))
    res = measure_pair(cw, mapped, valid, current.shape, spacing, res, ctx.measure_at)
    return ComparisonOutput(result=res, heatmap=None, timings={"total": time.perf_counter() - t0})


def _scaled_affine(tx: Any, sy: float, sx: float, small_shape: tuple[int, ...], big_shape: tuple[int, ...],
                   sitk: Any) -> Any:
    """A transform fitted between two small grids, as the same mapping between the full grids: a point
    y of the full grid is s * x + (s - 1) / 2 of the small one's x (pixel centres of a resize)."""
    t = tx
    while isinstance(t, sitk.CompositeTransform) or t.GetName() == "CompositeTransform":
        t = sitk.CompositeTransform(t).GetNthTransform(0)
    t = t.Downcast() if hasattr(t, "Downcast") else t
    A = np.array(t.GetMatrix(), float).reshape(2, 2)
    c = np.array(t.GetCenter(), float)  # sitk points are (x, y) = (col, row)
    tr = np.array(t.GetTranslation(), float)
    s = np.array([sx, sy])
    o = (s - 1.0) / 2.0
    out = sitk.AffineTransform(2)
    out.SetMatrix(A.ravel().tolist())
    out.SetCenter((s * c + o).tolist())
    out.SetTranslation((s * tr).tolist())
    return out
