"""Coarse pose search before the fine registration (issue 28: registration that survives other sources).

Mutual-information gradient descent from a centred, unrotated start finds the nearest optimum;
a prior rotated 8-12 degrees in plane, magnified by another source-image distance or shifted
by collimation often converged to a wrong one and the pair came out "could not be registered"
(the largest single cause of misses on two independent generators). So the start is searched:
every rotation and scale of a small grid (`thresholds.POSE_ANGLES_DEG`, `POSE_SCALES`), each
with its best translation from one FFT cross-correlation, scored by the normalised
correlation of the overlapping central field at a coarse size (`POSE_SIZE`). The winner seeds
the similarity stage in `comparison.registration`.

Pure numpy/scipy; the transform returned follows SimpleITK's convention (it maps a point of
the fixed image to the moving image, (x, y) = (column, row), spacing 1 on the working grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from comparison.thresholds import DEFAULT_PARAMS, EngineParams


@dataclass(frozen=True)
class Pose:
    """A similarity transform fixed -> moving about `center` (working-grid pixels, (x, y))."""

    angle_rad: float
    scale: float
    center: tuple[float, float]
    translation: tuple[float, float]
    score: float  # normalised correlation of the coarse images at this pose
    unrotated_score: float  # the best score at angle 0 and scale 1 (shift searched): the centred start's pose
    margin: float  # `POSE_MARGIN` of the parameters it was searched with

    @property
    def needed(self) -> bool:
        """Whether the searched pose beats the unrotated, unscaled one by `POSE_MARGIN`: else the MI stages
        start centred as before (a well-aligned pair registers as it did, to the pixel)."""
        return self.score > self.unrotated_score + self.margin


def _prep(a: np.ndarray, f: float) -> np.ndarray:
    """The image zoomed by `f`, smoothed and made zero mean (for correlation)."""
    small = ndi.zoom(ndi.gaussian_filter(a.astype(np.float32), max(0.5, 0.5 / f)), f, order=1)
    small = ndi.gaussian_filter(small, 1.0)
    return small - float(small.mean())


def _central(shape: tuple[int, int], border: float) -> np.ndarray:
    """The field the pose is scored on: the image less a border (collimation, burned-in text, markers)."""
    h, w = shape
    m = np.zeros(shape, bool)
    bh, bw = int(h * border), int(w * border)
    m[bh:h - bh, bw:w - bw] = True
    return m


def _resample(mov: np.ndarray, shape: tuple[int, int], angle: float, scale: float,
              center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The moving image sampled at fixed-grid points x as mov(s R (x - c) + c); and where it has data."""
    c, s = np.cos(angle), np.sin(angle)
    # (row, col) coordinates: R acts on (x, y) = (col, row)
    mat = scale * np.array([[c, s], [-s, c]])  # rows/cols form of [[c, -s], [s, c]] on (x, y)
    cen = center[::-1]  # (row, col)
    offset = cen - mat @ cen
    out = ndi.affine_transform(mov, mat, offset=offset, output_shape=shape, order=1, cval=np.nan)
    valid = np.isfinite(out)
    return np.where(valid, out, 0.0).astype(np.float32), valid


def _best_shift(fix: np.ndarray, mov: np.ndarray, limit: int) -> tuple[int, int]:
    """The integer shift d (rows, cols) maximising sum fix(x) mov(x + d), |d| <= limit (FFT, zero padded)."""
    h, w = fix.shape
    ph, pw = h + limit + 1, w + limit + 1
    F = np.fft.rfft2(fix, (ph, pw))
    M = np.fft.rfft2(mov, (ph, pw))
    cc = np.fft.irfft2(np.conj(F) * M, (ph, pw))
    dr = np.r_[np.arange(0, limit + 1), np.arange(-limit, 0)]
    rows, cols = np.ix_(dr % ph, dr % pw)
    win = cc[rows, cols]
    i, j = np.unravel_index(int(np.argmax(win)), win.shape)
    return int(dr[i]), int(dr[j])


def _ncc(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    if m.sum() < 50:
        return -1.0
    x, y = a[m] - a[m].mean(), b[m] - b[m].mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-9))


def search_pose(fixed: np.ndarray, moving: np.ndarray, params: EngineParams = DEFAULT_PARAMS) -> Pose:
    """The best start for registering `moving` onto `fixed` (both on the working grid)."""
    f = params.POSE_SIZE / max(fixed.shape)  # one factor for both: the working grid has one pixel size
    fix, mov = _prep(fixed, f), _prep(moving, f)
    central = _central(fix.shape, params.POSE_BORDER)
    fix_c = np.where(central, fix, 0.0)
    limit = int(params.POSE_MAX_SHIFT * max(fix.shape))
    center = np.array([(fix.shape[1] - 1) / 2, (fix.shape[0] - 1) / 2])  # (x, y) on the coarse fixed grid
    best: tuple[float, float, float, tuple[int, int]] | None = None
    unrotated = -1.0
    for deg in params.POSE_ANGLES_DEG:
        for scale in params.POSE_SCALES:
            res, valid = _resample(mov, fix.shape, np.deg2rad(deg), scale, center)
            dr, dc = _best_shift(fix_c, res, limit)
            shifted = ndi.shift(res, (-dr, -dc), order=0)
            ok = ndi.shift(valid.astype(np.uint8), (-dr, -dc), order=0).astype(bool) & central
            score = _ncc(fix, shifted, ok)
            if deg == 0.0 and scale == 1.0:
                unrotated = score
            if best is None or score > best[0]:
                best = (score, deg, scale, (dr, dc))
    assert best is not None
    score, deg, scale, (dr, dc) = best
    # coarse grid: x -> s R (x + d - c) + c; on the working grid (x / f): s R (X - C) + C + s R d / f
    ang = np.deg2rad(deg)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    t_work = scale * rot @ (np.array([dc, dr], float) / f)
    c_work = center / f
    return Pose(angle_rad=float(ang), scale=float(scale), center=(float(c_work[0]), float(c_work[1])),
                translation=(float(t_work[0]), float(t_work[1])), score=float(score), unrotated_score=float(unrotated),
                margin=params.POSE_MARGIN)
