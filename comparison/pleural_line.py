"""A visceral pleural line detector (pure): the sign of a pneumothorax that is not a dark rim (issue 28).

Why its own module: a small pneumothorax on a real film is often no darker than the lung beside it;
what shows it is the visceral pleura itself, a thin bright line roughly parallel to the chest wall,
with no lung markings (vessels) between it and the wall. The engine's other evidence is a change in
darkness (`comparison.signs`, the reader), which misses exactly that look. This module reads the
line from image physics on one image at a time, then compares the two registered images:

- a *ridge*: a thin bright line, read from the Hessian at `PL_SCALE_PX` (the most negative
  eigenvalue across it, over the lungs' own spread of that response: vessels are ridges too, so a
  pleural line must stand out of them);
- *parallel to the wall*: the direction across the ridge within `PL_ORIENT_COS` of the direction
  towards the nearest lateral or apical lung edge (a rib's cortex runs obliquely across the lateral
  lung, a fissure medially);
- *inside the lung field, at the apex or lateral wall*: between `PL_MIN_GAP_MM` and `PL_MAX_GAP` of
  the lung's width from its edge, whose nearest edge is lateral or above (not the mediastinum, not
  the diaphragm), above `PL_MAX_DEPTH` of the lung's height;
- *long*: at least `PL_MIN_LENGTH_MM`;
- *no markings beyond it*: the fine detail between the line and the wall over that of an equal band
  medial to the line under `PL_BEYOND_RATIO` (a rib edge, a scapular border or a skin fold over
  aerated lung has vessels on both sides);
- *not a skin fold or a device*: the ridge does not run on past the lung's edge (`PL_OUTSIDE_SHARE`).

`compare_lines` then says per side what changed: a line on the current that the registered prior does
not show at the same place (its ridge there under `PL_PRIOR_RATIO` of the current's) is a new
pneumothorax, worsened where the prior had one nearer the wall; a prior's line gone (or moved
towards the wall) is resolved (improved). Everything is in the working grid's pixels; sizes in mm
use `spacing_mm`. Every threshold is an `EngineParams` field.

Status (H1, issue 28): the engine does not use it by default (`PLEURAL_LINE_DETECTOR` off, the figures
are there). It finds the lines drawn in its table tests, but not sdfphantom's: on the 256 px working
grid that generator's visceral line is about a pixel wide and fainter than rib and vessel ridges,
and the lung masks there are hulls reaching the lateral soft tissue, so "distance from the wall" is
read from the wrong edge; on the trained-on generators it calls rib and mask-edge ridges new lines.
What it would need: the chest wall read from the image (not the lung mask) and the line read at
the prepared image's resolution, not the working grid's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from comparison._anatomy import LungFields, robust_sd
from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from priorwatch.vocabulary import Change, Side

__all__ = ["PleuralLine", "LineChange", "ridges", "find_lines", "compare_lines", "profile_contrast"]


@dataclass
class PleuralLine:
    """One visceral pleural line on one image."""

    side: Side
    mask: np.ndarray  # its pixels (working grid)
    strength: float  # median ridge response over the lungs' robust spread of it
    length_mm: float
    gap_mm: float  # median distance from the lung's edge (the width of the air beyond it)
    beyond_ratio: float  # fine detail beyond the line over that medial to it (~1 aerated lung, ~0 air)
    row: float  # its centre row (for the zone)
    normal: tuple[np.ndarray, np.ndarray] | None = None  # per pixel of `mask` (np.nonzero order), unit direction to the wall
    contrast: float = 0.0  # its mean cross-profile on its own image (`profile_contrast`), intensity units


@dataclass
class LineChange:
    """What a side's pleural lines say changed between the registered prior and the current."""

    side: Side
    change: Change
    line: PleuralLine  # the line that decided it (the current's for new / worsened / improved, the prior's for resolved)


def ridges(img: np.ndarray, scale_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(strength, ny, nx): a bright ridge's strength (minus the most negative Hessian eigenvalue at
    `scale_px`, scale-normalised; 0 where the image curves up or is blob-like) and the unit direction
    across it."""
    a = img.astype(np.float64)
    hyy = ndi.gaussian_filter(a, scale_px, order=(2, 0))
    hxx = ndi.gaussian_filter(a, scale_px, order=(0, 2))
    hxy = ndi.gaussian_filter(a, scale_px, order=(1, 1))
    mean, dev = (hxx + hyy) / 2, np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    lo, hi = mean - dev, mean + dev  # lo: across a bright line (strongly negative); hi: along it (~0)
    strength = np.where((lo < 0) & (np.abs(hi) < np.abs(lo)), -lo, 0.0) * scale_px**2
    # eigenvector of lo: (hxy, lo - hxx) or (lo - hyy, hxy), whichever is better conditioned
    v1x, v1y = hxy, lo - hxx
    v2x, v2y = lo - hyy, hxy
    use1 = np.hypot(v1x, v1y) >= np.hypot(v2x, v2y)
    vx, vy = np.where(use1, v1x, v2x), np.where(use1, v1y, v2y)
    n = np.hypot(vx, vy) + 1e-12
    return strength.astype(np.float32), (vy / n).astype(np.float32), (vx / n).astype(np.float32)


def _wall(side_mask: np.ndarray, side: Side, midline: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(distance to the lung's edge, unit direction towards that edge y, x, whether that edge is the chest
    wall or apex: lateral of the pixel or above it, not the mediastinum or the diaphragm)."""
    dist, (iy, ix) = ndi.distance_transform_edt(side_mask, return_indices=True)
    yy, xx = np.mgrid[: side_mask.shape[0], : side_mask.shape[1]]
    dy, dx = (iy - yy).astype(np.float64), (ix - xx).astype(np.float64)
    n = np.hypot(dy, dx) + 1e-9
    uy, ux = dy / n, dx / n
    lateral = ux < -0.5 if side == Side.right else ux > 0.5  # patient's right chest wall is the image's left
    apical = uy < -0.5
    return dist, uy, ux, (lateral | apical) & side_mask


def find_lines(img: np.ndarray, lungs: LungFields, side: Side, spacing_mm: float,
               params: EngineParams = DEFAULT_PARAMS, ridge: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               spread: float | None = None) -> list[PleuralLine]:
    """The visceral pleural lines on one image's `side` (strongest first). `ridge` and `spread` (the
    lungs' robust spread of the ridge response) may be given so that two images are judged on one scale."""
    side_mask = lungs.mask(side)
    if side_mask.sum() < 200:
        return []
    strength, ny, nx = ridge if ridge is not None else ridges(img, params.PL_SCALE_PX)
    if spread is None:
        spread = _spread(strength, lungs.both)
    dist, uy, ux, wall_ok = _wall(side_mask, side, lungs.midline)
    rows = np.nonzero(side_mask.any(axis=1))[0]
    cols = np.nonzero(side_mask.any(axis=0))[0]
    top, bottom = int(rows[0]), int(rows[-1])
    lung_h, lung_w = max(1, bottom - top), max(1, int(cols[-1] - cols[0] + 1))
    mm = max(spacing_mm, 1e-3)
    zone = (wall_ok & (dist >= params.PL_MIN_GAP_MM / mm) & (dist <= params.PL_MAX_GAP * lung_w)
            & (np.arange(side_mask.shape[0])[:, None] <= top + params.PL_MAX_DEPTH * lung_h))
    cos = np.abs(ny * uy + nx * ux)
    z = strength / spread
    cand = zone & (z >= params.PL_RIDGE_Z) & (cos >= params.PL_ORIENT_COS)
    if not cand.any():
        return []
    lab, _ = ndi.label(ndi.binary_closing(cand, structure=np.ones((3, 3), bool)) & zone, structure=np.ones((3, 3), bool))
    # the same ridge followed without the place and direction limits: does it run on past the lung's edge?
    # (any direction: a fold crosses the wall; the wall's own edge, a step, is left out of it)
    edge = ndi.binary_dilation(side_mask, iterations=2) & ~ndi.binary_erosion(side_mask, iterations=1)
    free = ndi.label((z >= params.PL_RIDGE_Z) & ~edge, structure=np.ones((3, 3), bool))[0]
    outside = ~ndi.binary_dilation(side_mask, iterations=3)
    fine = img.astype(np.float64) - ndi.gaussian_filter(img.astype(np.float64), params.PL_FINE_PX)
    inner = ndi.binary_erosion(side_mask, iterations=2)  # the wall's own step is not lung detail
    out: list[PleuralLine] = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        comp = lab == i
        ys, xs = np.nonzero(comp)
        length_mm = float(np.hypot(ys.ptp() + 1, xs.ptp() + 1)) * mm
        if length_mm < params.PL_MIN_LENGTH_MM:
            continue
        ids = np.unique(free[comp])
        ids = ids[ids > 0]
        whole = np.isin(free, ids)
        if whole.sum() and float((whole & outside).sum()) / float(whole.sum()) > params.PL_OUTSIDE_SHARE:
            continue  # a skin fold, a device or the scapula's border: it runs on past the lung
        gap = float(np.median(dist[comp]))
        reach = int(np.ceil(gap)) + 2
        near = ndi.binary_dilation(comp, iterations=reach)
        beyond = near & inner & (dist < gap - params.PL_LINE_HALF_PX) & wall_ok
        medial = near & inner & (dist > gap + params.PL_LINE_HALF_PX) & (dist <= 2 * gap + params.PL_LINE_HALF_PX)
        if beyond.sum() < params.PL_MIN_BAND_PX or medial.sum() < params.PL_MIN_BAND_PX:
            continue
        ratio = robust_sd(fine[beyond]) / max(robust_sd(fine[medial]), 1e-9)
        if ratio > params.PL_BEYOND_RATIO:
            continue  # lung markings beyond it: a rib, scapular or skin edge over aerated lung
        line = PleuralLine(side=side, mask=comp, strength=float(np.median(z[comp])), length_mm=length_mm,
                           gap_mm=gap * mm, beyond_ratio=float(ratio), row=float(ys.mean()),
                           normal=(uy[comp].astype(np.float64), ux[comp].astype(np.float64)))
        line.contrast = profile_contrast(img, line, 0)
        out.append(line)
    return sorted(out, key=lambda l_: -l_.strength * l_.length_mm)


def _spread(strength: np.ndarray, lungs: np.ndarray) -> float:
    v = strength[lungs] if lungs.any() else strength.ravel()
    return max(float(np.percentile(v, 90)), 1e-9)  # most lung pixels read 0 (no ridge): the upper decile is the vessels'


def compare_lines(cur: np.ndarray, prior: np.ndarray, lungs: LungFields, spacing_mm: float,
                  params: EngineParams = DEFAULT_PARAMS) -> list[LineChange]:
    """Per side, what the pleural lines say changed from the registered `prior` to `cur` (at most one
    claim a side). A current line the prior does not show at the same place (the prior's ridge along it
    under `PL_PRIOR_RATIO` of the current's): new, or worsened where the prior had a line nearer the wall
    on that side; a prior line the current does not show: resolved, or improved where the current has one
    nearer the wall."""
    rc, rp = ridges(cur, params.PL_SCALE_PX), ridges(prior, params.PL_SCALE_PX)
    spread = _spread(rc[0], lungs.both)  # one scale for both images (they are intensity-matched)
    out: list[LineChange] = []
    for side in (Side.right, Side.left):
        lc = find_lines(cur, lungs, side, spacing_mm, params=params, ridge=rc, spread=spread)
        lp = find_lines(prior, lungs, side, spacing_mm, params=params, ridge=rp, spread=spread)
        new_c = [l_ for l_ in lc if not _shown(l_, prior, params=params)]
        gone_p = [l_ for l_ in lp if not _shown(l_, cur, params=params)]
        if new_c:
            line = new_c[0]
            wider = [p for p in lp if p.gap_mm < line.gap_mm]
            narrower = [p for p in lp if p.gap_mm > line.gap_mm]
            change = Change.worsened if wider else Change.improved if narrower else Change.new
            out.append(LineChange(side, change, line))
        elif gone_p:
            line = gone_p[0]
            nearer = [c for c in lc if c.gap_mm < line.gap_mm]
            out.append(LineChange(side, Change.improved if nearer else Change.resolved, line))
    return out


def profile_contrast(img: np.ndarray, line: PleuralLine, reach_px: int) -> float:
    """The line's mean cross-profile on `img`: sampled along each line pixel's wall direction and averaged
    over the whole line (vessels crossing it at random average out; a pleural line adds up), the peak
    within `reach_px` of the line minus the mean 3 px either side of it. The largest over that reach."""
    ys, xs = np.nonzero(line.mask)
    if line.normal is None or ys.size == 0:
        return 0.0
    uy, ux = line.normal
    offs = np.arange(-reach_px - 3, reach_px + 4)
    coords = np.stack([ys[None, :] + offs[:, None] * uy[None, :], xs[None, :] + offs[:, None] * ux[None, :]])
    prof = ndi.map_coordinates(img.astype(np.float64), coords.reshape(2, -1), order=1, mode="nearest")
    prof = prof.reshape(offs.size, ys.size).mean(axis=1)
    c = [prof[i] - 0.5 * (prof[i - 3] + prof[i + 3]) for i in range(3, offs.size - 3)]
    return float(max(c))


def _shown(line: PleuralLine, other: np.ndarray, params: EngineParams) -> bool:
    """Whether the other image shows this line at the same place: its mean cross-profile along the line
    (`profile_contrast`, within `PL_SAME_PLACE_PX`) reaches `PL_PRIOR_RATIO` of this line's own."""
    return profile_contrast(other, line, params.PL_SAME_PLACE_PX) >= params.PL_PRIOR_RATIO * line.contrast
