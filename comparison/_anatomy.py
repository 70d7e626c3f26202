"""Classical lung fields on a frontal chest radiograph (private to `comparison`).

Input: float image in [0, 1], higher = denser (MONOCHROME2 sense), PA/AP display
orientation (the patient's right on the image's left). The lungs are the two large dark
regions inside the thorax: an Otsu threshold on a smoothed image, an opening to cut them
from the dark background outside the body, the largest dark region in each half, then a
convex hull per side so that vessels, nodules and the dense lung bases behind the
diaphragm domes and soft tissue count as lung. When that fails, a template of two
ellipses in the usual place stands in (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from priorwatch.vocabulary import Side, Zone


@dataclass
class LungFields:
    right: np.ndarray  # bool mask of the patient's right lung (image-left in PA)
    left: np.ndarray  # bool mask of the patient's left lung
    midline: float  # column between the lungs
    template: bool  # True when the template stood in for a failed segmentation
    # per side (apex row, row of the lowest point of the costophrenic angle) that zones are thirds of, when measured
    # on the image (`zone_extents`); None: the mask's rows (a mask that leaks into the neck or abdomen shifts zones)
    zone_rows: dict[Side, tuple[int, int]] | None = None

    @property
    def both(self) -> np.ndarray:
        return self.right | self.left

    def side_of(self, col: float) -> Side:
        return Side.right if col < self.midline else Side.left

    def mask(self, side: Side) -> np.ndarray:
        return self.right if side == Side.right else self.left

    def extent(self, side: Side) -> tuple[int, int]:
        rows = np.nonzero(self.mask(side).any(axis=1))[0]
        if rows.size == 0:
            h = self.right.shape[0]
            return int(0.1 * h), int(0.8 * h)
        return int(rows[0]), int(rows[-1])

    def zone_span(self, side: Side) -> tuple[int, int]:
        """The rows zones are thirds of: the measured apex and costophrenic angle (`zone_rows`), else the mask's."""
        return self.zone_rows[side] if self.zone_rows and side in self.zone_rows else self.extent(side)

    def zone_of(self, side: Side, row: float) -> Zone:
        top, bottom = self.zone_span(side)
        f = (row - top) / max(1.0, bottom - top)
        return Zone.upper if f < 1 / 3 else Zone.middle if f < 2 / 3 else Zone.lower


def otsu(values: np.ndarray, bins: int = 128) -> float:
    hist, edges = np.histogram(values, bins=bins)
    p = hist / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m = np.cumsum(p * centres)
    sb = (m[-1] * w0 - m) ** 2 / (w0 * (1 - w0) + 1e-12)
    return float(centres[int(np.argmax(sb))])


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def fill_convex_hull(mask: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(mask)
    if len(pts) < 3:
        return mask.copy()
    try:
        hull = ConvexHull(pts[:, ::-1].astype(float))
    except QhullError:
        return mask.copy()
    poly = [tuple(map(float, pts[v, ::-1])) for v in hull.vertices]
    im = Image.new("1", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(im).polygon(poly, fill=1, outline=1)
    return np.asarray(im, dtype=bool) | mask


def template_lungs(shape: tuple[int, int]) -> LungFields:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]

    def ell(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((yy - cy * h) / (ry * h)) ** 2 + ((xx - cx * w) / (rx * w)) ** 2 <= 1.0

    return LungFields(right=ell(0.43, 0.29, 0.30, 0.15), left=ell(0.45, 0.71, 0.31, 0.15), midline=w / 2, template=True)


# Smoothing (pixels at 256) before the lung threshold: wide enough that ribs crossing a lung blur into
# it (ribs ~6 px wide there), so one lung is one dark region and not a stack of inter-rib strips.
T_SMOOTH = 5.0


def otsu3(values: np.ndarray, bins: int = 64) -> tuple[float, float]:
    """Two thresholds splitting `values` into three classes (exhaustive multi-level Otsu)."""
    hist, edges = np.histogram(values, bins=bins)
    p = hist / max(1, hist.sum())
    c = (edges[:-1] + edges[1:]) / 2
    cp, cm = np.cumsum(p), np.cumsum(p * c)
    mt = cm[-1]
    i, j = np.triu_indices(bins - 1, k=1)
    w0, w1, w2 = cp[i], cp[j] - cp[i], 1 - cp[j]
    ok = (w0 > 0) & (w1 > 0) & (w2 > 0)
    i, j, w0, w1, w2 = i[ok], j[ok], w0[ok], w1[ok], w2[ok]
    m0, m1, m2 = cm[i] / w0, (cm[j] - cm[i]) / w1, (mt - cm[j]) / w2
    sb = w0 * (m0 - mt) ** 2 + w1 * (m1 - mt) ** 2 + w2 * (m2 - mt) ** 2
    k = int(np.argmax(sb))
    return float(edges[i[k] + 1]), float(edges[j[k] + 1])


def segment_lungs(img: np.ndarray) -> LungFields:
    """Lungs: the darkest class inside the body (three-class Otsu: air outside and in the lungs,
    soft tissue, bone / mediastinum), so the lateral soft tissue and the air outside the body
    stay out; where that does not give two lungs, the two-class threshold of the thorax."""
    h, w = img.shape
    scale = max(h, w) / 256.0
    s = ndi.gaussian_filter(img.astype(np.float32), T_SMOOTH * scale)
    core = s[int(h * 0.1) : int(h * 0.9), int(w * 0.1) : int(w * 0.9)]
    t_low, _ = otsu3(s[int(h * 0.05) : int(h * 0.95), int(w * 0.05) : int(w * 0.95)])
    # air outside the body: much darker than the lungs and reaching the image's frame
    outside = s < 0.6 * t_low
    lab, _ = ndi.label(outside)
    frame = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.isin(lab, frame[frame > 0])
    outside = ndi.binary_dilation(outside, iterations=max(1, int(round(4 * scale))))
    for dark in (s < otsu(core), s < t_low):
        out = _lungs_from(dark & ~outside, scale)
        if out is not None:
            return out
    return template_lungs(img.shape)


def _lungs_from(dark: np.ndarray, scale: float) -> LungFields | None:
    h, w = dark.shape
    r = max(1, int(round(6 * scale)))
    core_dark = ndi.binary_erosion(dark, structure=_disk(r))  # cut thin bridges to the outside
    lab, n = ndi.label(core_dark)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    sizes = ndi.sum(core_dark, lab, idx)
    coms = ndi.center_of_mass(core_dark, lab, idx)
    boxes = ndi.find_objects(lab)
    cands: dict[str, tuple[float, int]] = {}
    min_area = 0.008 * h * w
    edge = 0.02
    for i, sz, (cy, cx), bx in zip(idx, sizes, coms, boxes):
        if sz < min_area or bx is None:
            continue
        if (bx[0].start <= edge * h or bx[1].start <= edge * w
                or bx[0].stop >= (1 - edge) * h or bx[1].stop >= (1 - edge) * w):
            continue  # touches the frame: background outside the body
        if not (0.12 * h < cy < 0.8 * h and 0.1 * w < cx < 0.9 * w):
            continue
        key = "right" if cx < w / 2 else "left"
        if key not in cands or sz > cands[key][0]:
            cands[key] = (float(sz), int(i))
    if set(cands) != {"right", "left"}:
        return None
    masks = {}
    for key, (_, i) in cands.items():
        m = ndi.binary_dilation(lab == i, structure=_disk(1), iterations=r, mask=dark)
        m = ndi.binary_fill_holes(m)
        masks[key] = fill_convex_hull(m)
    right, left = masks["right"], masks["left"]
    overlap = right & left
    right &= ~overlap
    left &= ~overlap
    rc = np.nonzero(right.any(axis=0))[0]
    lc = np.nonzero(left.any(axis=0))[0]
    midline = (rc[-1] + lc[0]) / 2.0 if rc.size and lc.size and rc[-1] < lc[0] else w / 2.0
    return LungFields(right=right, left=left, midline=float(midline), template=False)


def robust_sd(v: np.ndarray) -> float:
    """The standard deviation of `v` from its median absolute deviation (outliers, i.e. changes, do not
    inflate it): the noise of a difference image, used by registration, the tone map and the reader."""
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _dark_run(profile: np.ndarray, level: float) -> tuple[int, int] | None:
    """The longest run of rows whose profile lies under `level` of the way from its dark end (p10) to its
    dense end (p90): the aerated lung between the neck and the abdomen."""
    lo, hi = np.percentile(profile, 10), np.percentile(profile, 90)
    if hi - lo < 1e-4:
        return None
    below = profile < lo + level * (hi - lo)
    lab, n = ndi.label(below)
    if n == 0:
        return None
    k = int(np.argmax(ndi.sum(below, lab, np.arange(1, n + 1)))) + 1
    rows = np.nonzero(lab == k)[0]
    return int(rows[0]), int(rows[-1])


def zone_extents(img: np.ndarray, lungs: LungFields, smooth_px: float, level: float, central: float,
                 lateral: tuple[float, float], min_share: float) -> dict[Side, tuple[int, int]]:
    """Per lung, the rows from its apex to the lowest point of its costophrenic angle, read on the image
    itself (zones are thirds of that height, the lesion's third by its centre): the lung mask's rows are
    not (on independent generators a mask leaking into the neck or the abdomen put lower-zone lesions in
    the middle third). The apex and the base are where the row profile of the lung's central columns
    (`central` trimmed from each side of the mask's columns) leaves the dark, aerated run (`level` of the
    way from its dark to its dense end); the base is followed further down in the lateral band (`lateral`,
    shares of the width from the chest wall), where the costophrenic angle lies lowest. A side whose run
    is shorter than `min_share` of the image height is left to its mask."""
    s = ndi.gaussian_filter(img.astype(np.float32), smooth_px)
    out: dict[Side, tuple[int, int]] = {}
    for side in (Side.right, Side.left):
        cols = np.nonzero(lungs.mask(side).any(axis=0))[0]
        if cols.size < 8:
            continue
        c0, c1 = int(cols[0]), int(cols[-1])
        w = c1 - c0
        mid = s[:, int(c0 + central * w): int(c1 - central * w) + 1]
        a, b = lateral
        lat = (s[:, int(c0 + a * w): int(c0 + b * w) + 1] if side == Side.right  # patient's right: image left
               else s[:, int(c1 - b * w): int(c1 - a * w) + 1])
        if mid.shape[1] < 2 or lat.shape[1] < 2:
            continue
        run = _dark_run(np.median(mid, axis=1), level)
        if run is None or run[1] - run[0] < min_share * img.shape[0]:
            continue
        top, bottom = run
        prof = np.median(lat, axis=1)
        lo, hi = np.percentile(prof, 10), np.percentile(prof, 90)
        while bottom + 1 < prof.size and prof[bottom + 1] < lo + level * (hi - lo):
            bottom += 1
        out[side] = (top, bottom)
    return out
