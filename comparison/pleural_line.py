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

H5 tried that (`chest_wall`, `rib_envelope`, `find_wall_line`, `compare_wall_lines`, behind `PL_AT_FULL_SIZE`):
the steepest outward rise of the smoothed image is where the lung's markings end, and the rib cage's lateral end
lies 10-16 mm further out on normal sides and pneumothorax sides alike on sdfphantom, so neither is a chest wall
that a line's gap can be measured from; the path search then finds the lung's own edge (where ribs cross it) as a
line on normal chests too (the strict xfails of tests/comparison/test_pleural_line_full.py), and on a fresh
sdfphantom seed it gained no urgent finding and raised false urgent 0 -> 10 of 30. Off; the figures are in
`EngineParams.PL_AT_FULL_SIZE`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from comparison._anatomy import LungFields, robust_sd
from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from priorwatch.vocabulary import Change, Side

__all__ = ["PleuralLine", "LineChange", "ridges", "find_lines", "compare_lines", "profile_contrast", "WallLine",
           "chest_wall", "find_wall_line", "compare_wall_lines"]


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


# At the prepared image's resolution, the chest wall read from the image (issue 28, H5) -------------------------


@dataclass
class WallLine:
    """A visceral pleural line read at the prepared image's resolution against the chest wall found on the image."""

    side: Side
    rows: np.ndarray  # its rows (prepared image)
    cols: np.ndarray  # its column on each row
    gaps: np.ndarray  # its distance from the wall on each row, px
    score: float  # the path's summed ridge response (over the bias), what `compare_wall_lines` compares
    strength: float  # mean ridge response along it over the lung's 90th centile of it
    length_mm: float
    gap_mm: float  # median distance from the wall
    beyond_ratio: float  # fine detail between the wall and the line over that of an equal band medial to it

    @property
    def row(self) -> float:
        return float(self.rows.mean())


def chest_wall(img: np.ndarray, side_mask: np.ndarray, side: Side, params: EngineParams = DEFAULT_PARAMS) -> np.ndarray:
    """Per row, the column of the chest wall's inner edge on `side` (-1 where there is no aerated lung on that row),
    read from the image, not the lung mask (a mask may be a hull reaching the soft tissue or the frame): on the image
    smoothed `PL_WALL_SMOOTH_PX` across and three times that along the rows (ribs blur into the lung), between the
    body's edge (going outwards from the mask's medial edge, where the image falls to the background's level: an arm
    or a humeral head beyond air is not the wall) and the lung's middle, the steepest rise going outwards: aerated lung
    meeting the lateral soft tissue and rib cage. A row whose rise is under `PL_WALL_RISE` of the side's typical one
    has no lung wall (neck, abdomen). The column is median-filtered over `PL_WALL_ROWS` rows."""
    h, w = img.shape
    sm = ndi.gaussian_filter(img.astype(np.float64), (3 * params.PL_WALL_SMOOTH_PX, params.PL_WALL_SMOOTH_PX))
    gx = np.gradient(sm, axis=1)
    out_grad = -gx if side == Side.right else gx  # patient's right wall is the image's left: intensity rises to the left
    bg = float(np.percentile(sm, 1))
    wall = np.full(h, -1, dtype=np.int64)
    rise = np.zeros(h)
    for r in np.nonzero(side_mask.any(axis=1))[0]:
        cols = np.nonzero(side_mask[r])[0]
        inner = int(cols[-1]) if side == Side.right else int(cols[0])  # the mask's medial edge
        prof = sm[r, :inner + 1][::-1] if side == Side.right else sm[r, inner:]  # outwards from it
        grad = out_grad[r, :inner + 1][::-1] if side == Side.right else out_grad[r, inner:]
        if prof.size < 8:
            continue
        level = bg + 0.3 * (float(np.median(prof)) - bg)
        below = np.nonzero(prof < level)[0]
        body = int(below[0]) if below.size else prof.size  # the body's edge (outside air), outwards
        lo = int(0.25 * body)  # not the mediastinum's border
        if body - lo < 4:
            continue
        k = lo + int(np.argmax(grad[lo:body]))
        c = inner - k if side == Side.right else inner + k
        if min(c, w - 1 - c) < params.PL_WALL_BORDER * w:
            continue  # the frame's edge, not the chest wall (a body cut off by the collimation)
        rise[r] = grad[k]
        wall[r] = c
    ok = wall >= 0
    if ok.any():
        typical = float(np.percentile(rise[ok], 75))
        ok &= rise >= params.PL_WALL_RISE * typical
        wall[~ok] = -1
    if ok.any():  # the lung's wall is the longest run of rows whose wall moves under PL_WALL_JUMP_PX a row (a shoulder,
        #            a humeral head or the frame above it jumps)
        idx = np.nonzero(ok)[0]
        breaks = (np.abs(np.diff(wall[idx])) > params.PL_WALL_JUMP_PX) | (np.diff(idx) > 2)
        run = np.r_[0, np.cumsum(breaks)]
        best = int(np.argmax(np.bincount(run)))
        ok[idx[run != best]] = False
        wall[~ok] = -1
    if ok.sum() >= 3:
        idx = np.nonzero(ok)[0]
        wall[idx] = np.round(ndi.median_filter(wall[idx].astype(np.float64), size=params.PL_WALL_ROWS, mode="nearest")).astype(np.int64)
    return wall


def rib_envelope(img: np.ndarray, wall: np.ndarray, side: Side, spacing_mm: float,
                 params: EngineParams = DEFAULT_PARAMS) -> np.ndarray:
    """Per row, the column where the rib cage ends laterally (-1 where `wall` has none): going outwards from the lung's
    edge (`chest_wall`, where the markings end), the first place where the edge energy (gradient magnitude, smoothed
    `PL_ENV_SMOOTH_PX` along the rows so that it spans a rib and an interspace) falls under `PL_ENV_DROP` of the
    lung's just medial to the edge: ribs (and markings) on this side of it, smooth soft tissue beyond. Within
    `PL_FULL_MAX_GAP_MM` of the edge; median-filtered over `PL_WALL_ROWS` rows."""
    h, w = img.shape
    g = ndi.gaussian_gradient_magnitude(img.astype(np.float64), 1.5)
    e = ndi.gaussian_filter(g, (params.PL_ENV_SMOOTH_PX, 2.0))
    reach = max(2, int(params.PL_FULL_MAX_GAP_MM / max(spacing_mm, 1e-3)))
    out = np.full(h, -1, dtype=np.int64)
    step = -1 if side == Side.right else 1  # outwards
    for r in np.nonzero(wall >= 0)[0]:
        c = int(wall[r])
        med = e[r, np.clip(np.arange(c - step * 12, c - step * 2, step), 0, w - 1)]
        e0 = float(np.median(med))
        path = np.clip(c + step * np.arange(1, reach + 1), 0, w - 1)
        low = np.nonzero(e[r, path] < params.PL_ENV_DROP * e0)[0]
        out[r] = int(path[low[0]]) if low.size else int(path[-1])
    ok = out >= 0
    if ok.sum() >= 3:
        idx = np.nonzero(ok)[0]
        out[idx] = np.round(ndi.median_filter(out[idx].astype(np.float64), size=params.PL_WALL_ROWS, mode="nearest")).astype(np.int64)
    return out


def _band(img: np.ndarray, params: EngineParams) -> np.ndarray:
    a = img.astype(np.float64)
    return ndi.gaussian_filter(a, params.PL_FULL_FINE_PX) - ndi.gaussian_filter(a, 3 * params.PL_FULL_FINE_PX)


def _offset_map(z: np.ndarray, nx: np.ndarray, wall: np.ndarray, rows: np.ndarray, side: Side, d: np.ndarray,
                params: EngineParams) -> np.ndarray:
    """The ridge response at each (row, gap from the wall), capped, minus the bias; only ridges running along the
    wall (across them within `PL_ORIENT_COS` of horizontal)."""
    w = z.shape[1]
    inward = 1 if side == Side.right else -1
    cc = wall[rows][:, None] + inward * d[None, :]
    inside = (cc >= 0) & (cc < w)
    cc = np.clip(cc, 0, w - 1)
    rr = np.broadcast_to(rows[:, None], cc.shape)
    s = np.minimum(z[rr, cc], params.PL_FULL_Z_CAP) * (np.abs(nx[rr, cc]) >= params.PL_ORIENT_COS)
    return np.where(inside, s - params.PL_FULL_Z_BIAS, -params.PL_FULL_Z_BIAS)


def _best_path(score: np.ndarray) -> tuple[float, int, int, np.ndarray]:
    """The best local path through `score` (rows x gaps), the gap changing by at most one a row:
    (its sum, first row index, last row index, gap index per row of it)."""
    n, m = score.shape
    acc = np.zeros((n, m))
    back = np.zeros((n, m), dtype=np.int64)
    prev = np.zeros(m)
    for i in range(n):
        cand = np.stack([np.r_[-np.inf, prev[:-1]], prev, np.r_[prev[1:], -np.inf]])  # from gap j-1, j, j+1
        k = np.argmax(cand, axis=0)
        best = cand[k, np.arange(m)]
        start = best <= 0
        acc[i] = np.where(start, 0.0, best) + score[i]
        back[i] = np.where(start, -1, np.arange(m) + k - 1)
        prev = acc[i]
    i, j = np.unravel_index(int(np.argmax(acc)), acc.shape)
    total = float(acc[i, j])
    path = [j]
    last = i
    while i > 0 and back[i, j] >= 0:
        j = int(back[i, j])
        i -= 1
        path.append(j)
    return total, i, last, np.array(path[::-1])


def find_wall_line(img: np.ndarray, side_mask: np.ndarray, side: Side, spacing_mm: float,
                   params: EngineParams = DEFAULT_PARAMS, gap_window: tuple[float, float] | None = None) -> WallLine | None:
    """The visceral pleural line on one side of one image at its own (prepared) resolution: the best path of bright
    ridge parallel to the chest wall (`chest_wall`, read from the image) at `PL_FULL_MIN_GAP_MM` to
    `PL_FULL_MAX_GAP_MM` inside it, over the upper `PL_FULL_DEPTH` of the lung, at least `PL_FULL_MIN_LENGTH_MM`
    long, with no markings beyond it (`PL_FULL_BEYOND_RATIO`). `gap_window` (mm) limits the gaps searched (the
    other image's line's place). None: no such line."""
    if side_mask.sum() < 400:
        return None
    mm = max(spacing_mm, 1e-3)
    wall = rib_envelope(img, chest_wall(img, side_mask, side, params=params), side, mm, params=params)  # the rib cage's lateral end
    lung_rows = np.nonzero(wall >= 0)[0]
    if lung_rows.size < 8:
        return None
    top, bottom = int(lung_rows[0]), int(lung_rows[-1])
    rows = lung_rows[lung_rows <= top + params.PL_FULL_DEPTH * (bottom - top)]
    lo_mm, hi_mm = (params.PL_FULL_MIN_GAP_MM, params.PL_FULL_MAX_GAP_MM) if gap_window is None else gap_window
    d = np.arange(max(1, int(np.ceil(max(lo_mm, params.PL_FULL_MIN_GAP_MM) / mm))), int(hi_mm / mm) + 1)
    if rows.size < 8 or d.size < 1:
        return None
    strength, _ny, nx = ridges(img, params.PL_FULL_SCALE_PX)
    spread = _spread(strength, side_mask)
    z = strength / spread
    score = _offset_map(z, nx, wall, rows, side, d, params=params)
    total, i0, i1, path = _best_path(score)
    rr = rows[i0:i1 + 1]
    if total <= 0 or rr.size < 2:
        return None
    gaps = d[path]
    inward = 1 if side == Side.right else -1
    cols = wall[rr] + inward * gaps
    length_mm = float(np.sum(np.hypot(np.diff(rr), np.diff(cols)))) * mm
    if length_mm < params.PL_FULL_MIN_LENGTH_MM:
        return None
    zz = z[rr, np.clip(cols, 0, img.shape[1] - 1)]
    band = _band(img, params=params)
    half = params.PL_LINE_HALF_PX
    beyond, medial = [], []
    for r, c, g in zip(rr, cols, gaps):
        wc = wall[r]
        if side == Side.right:
            beyond.append(band[r, int(wc + 2):int(max(wc + 2, c - half))])
            medial.append(band[r, int(c + half + 1):int(c + half + 1 + max(g - 2, 2))])
        else:
            beyond.append(band[r, int(min(wc - 1, c + half + 1)):int(wc - 1)])
            medial.append(band[r, max(0, int(c - half - max(g - 2, 2))):int(max(0, c - half))])
    b, m = np.concatenate(beyond), np.concatenate(medial)
    if b.size < params.PL_MIN_BAND_PX or m.size < params.PL_MIN_BAND_PX:
        return None
    ratio = robust_sd(b) / max(robust_sd(m), 1e-9)
    if ratio > params.PL_FULL_BEYOND_RATIO:
        return None
    return WallLine(side=side, rows=rr, cols=cols, gaps=gaps, score=total, strength=float(zz.mean()),
                    length_mm=length_mm, gap_mm=float(np.median(gaps)) * mm, beyond_ratio=float(ratio))


def compare_wall_lines(cur: np.ndarray, prior: np.ndarray, mask_c: dict[Side, np.ndarray], mask_p: dict[Side, np.ndarray],
                       spacing_c: float, spacing_p: float, params: EngineParams = DEFAULT_PARAMS) -> list[tuple[Side, Change, WallLine]]:
    """Per side, a pneumothorax appearing on `cur` read from the pleural line on each prepared image on its own (no
    registration: each against its own chest wall): the current has a line the prior does not show near the same gap
    (the prior's best path within `PL_FULL_GAP_WINDOW_MM` of it scores under `PL_FULL_PRIOR_RATIO` of the current's):
    new, or worsened where the prior has its own line at least `PL_FULL_WORSE_MM` nearer the wall. Only appearing
    changes are claimed."""
    out: list[tuple[Side, Change, WallLine]] = []
    for side in (Side.right, Side.left):
        lc = find_wall_line(cur, mask_c[side], side, spacing_c, params=params)
        if lc is None:
            continue
        win = (lc.gap_mm - params.PL_FULL_GAP_WINDOW_MM, lc.gap_mm + params.PL_FULL_GAP_WINDOW_MM)
        there = find_wall_line(prior, mask_p[side], side, spacing_p, gap_window=win,
                               params=replace(params, PL_FULL_MIN_LENGTH_MM=0.0, PL_FULL_BEYOND_RATIO=np.inf))
        if there is not None and there.score >= params.PL_FULL_PRIOR_RATIO * lc.score:
            continue  # the prior shows it at the same place: stable
        lp = find_wall_line(prior, mask_p[side], side, spacing_p, params=params)
        worse = lp is not None and lp.gap_mm <= lc.gap_mm - params.PL_FULL_WORSE_MM
        out.append((side, Change.worsened if worse else Change.new, lc))
    return out
