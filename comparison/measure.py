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

The reference for "denser" or "more lucent" is the image just around the box (its median), the
threshold a few sd of the pixel noise there; both in `comparison.thresholds` (MEASURE_*).
Returns 0.0 when the place was looked at and nothing is there (absent), None when the place
cannot be assessed (outside the image, no surroundings to compare with, a finding with no size).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from comparison import thresholds as T
from comparison.contract import MeasureRequest
from priorwatch.vocabulary import APPEARING, DISAPPEARING, Change, ComparisonResult, FindingType, Measured

__all__ = ["measure_at", "measure_pair", "MEASURED_KINDS"]

# What is measured for each finding type; a type not listed has no size (cardiomegaly is a ratio,
# a device a position, oedema is diffuse).
MEASURED_KINDS: dict[FindingType, str] = {
    FindingType.nodule: "diameter",
    FindingType.mass: "diameter",
    FindingType.effusion: "height",
    FindingType.pneumothorax: "rim",
    FindingType.consolidation: "extent",
    FindingType.atelectasis: "extent",
    FindingType.other: "extent",
}

Box = tuple[int, int, int, int]


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
    contrast = (-1.0 if kind == "rim" else 1.0) * (patch - ref)
    comp = _component(contrast > thr, inner, spacing_mm)
    if comp is not None:  # its edge at half its peak contrast (half maximum), not at the detection threshold
        half = 0.5 * float(np.percentile(contrast[comp], 95))
        comp = _component(comp & (contrast > max(thr, half)), inner, spacing_mm)
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
    and at each requested one (the prior's None where the registered prior has no data)."""
    scale = max(current.shape) / max(cur_shape)
    # (type, box, the sign of the change to find inside the box: a finding's own, lung-third box; 0: a place asked
    # about, already the finding's own extent)
    wanted: list[tuple[FindingType, Box, int]] = [
        (f.finding, f.evidence.box, _sign(f.finding, f.change))
        for f in result.findings if f.evidence is not None and f.evidence.box]
    wanted += [(r.finding, r.box, 0) for r in requests]
    diff = ndi.gaussian_filter(current - prior, 1.0)  # the anatomy both share cancels: what grew or shrank
    measured: list[Measured] = []
    for finding, box, sign in wanted:
        b = tuple(int(round(v * scale)) for v in box)
        tight = _changed_extent(sign * diff, b) if sign else None  # type: ignore[arg-type]
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
    """Sizes at one box on a registered pair. Each image alone measures the finding with whatever
    anatomy overlaps it (a rib across a faint nodule); the difference (`current - prior`) does not.
    So the difference decides: where it holds nearly all of the finding's contrast on the image that
    shows more of it, the finding was absent on the other (0.0) and its size is the difference's;
    where it holds a share, the other image's finding is that much smaller (in projection a lesion's
    contrast grows with its thickness); no change at all: the same size on both."""
    cur = measure_at(current, box, spacing_mm, finding)
    pri = measure_at(prior, box, spacing_mm, finding)
    if cur is None or pri is None:
        return cur, pri
    grown = measure_at(diff, box, spacing_mm, finding) or 0.0
    shrunk = measure_at(-diff, box, spacing_mm, finding) or 0.0
    if grown == 0.0 and shrunk == 0.0:
        return cur, cur
    more, less, part = (current, prior, grown) if grown >= shrunk else (prior, current, shrunk)
    share = _peak(diff if grown >= shrunk else -diff, box, finding) / max(_peak(more, box, finding), 1e-6)
    if share >= T.MEASURE_NEW_SHARE:
        sizes = (part, 0.0)
    else:
        whole = max(cur if more is current else pri, part)
        sizes = (whole, _rest(whole, share))
    return sizes if more is current else (sizes[1], sizes[0])


def _peak(image: np.ndarray, box: Box, finding: FindingType) -> float:
    """The finding's peak contrast in the box against its surroundings (lucency for a pneumothorax)."""
    win = _window(np.asarray(image, np.float32), box)
    if win is None:
        return 0.0
    patch, inner, ref, _ = win
    sign = -1.0 if MEASURED_KINDS.get(finding) == "rim" else 1.0
    return max(float(np.percentile(sign * (patch[inner] - ref), 95)), 0.0)


def _rest(whole: float, share: float) -> float:
    """What is left of a finding of size `whole` when a `share` of its contrast went (or came)."""
    left = whole * (1.0 - share)
    return round(float(left), 1) if left >= T.MEASURE_MIN_SIZE_MM else 0.0
