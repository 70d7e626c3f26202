"""Non-rigid stage after the affine registration (issue 28): inspiration, roll and posture.

An affine transform cannot explain a pair taken at another inspiration (the diaphragm and the
lower ribs move further than the apex, each hemithorax a little differently) or with the
patient rolled: what is left reads as change on stable pairs. This stage fits a SimpleITK
B-spline transform on a coarse control mesh (`thresholds.BSPLINE_MESH`: control points a
quarter of the chest apart, so the field bends over the whole lung and cannot fold round a
nodule or a patch of consolidation) to the already affine-registered, intensity-matched prior,
over the lung fields only, with the places that changed left out of the metric (the smoothed
difference past `BSPLINE_CHANGE_Z` robust sd: a new lesion must not drive the field that
would then register it away; a one-sided change at the lungs' border, an effusion's meniscus or a
pneumothorax's edge, is left out too). Each control point moves at most `BSPLINE_BOUND_PX`, and a
field moving more than `BSPLINE_MAX_PX` inside the lungs is not used: beyond it the
pair is left affine.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from comparison._anatomy import robust_sd


def _metric_mask(cw: np.ndarray, mapped: np.ndarray, lungs: np.ndarray, valid: np.ndarray,
                 midline: float, *, params: EngineParams) -> np.ndarray:
    """Lung fields (dilated to their borders: the diaphragm and the chest wall carry the motion) where
    the prior has data, less what changed: a lesion is not motion. A change at the lungs' border is
    motion only where the other lung changed at its mirror place too (inspiration lowers both domes);
    a one-sided border change is an effusion's meniscus or a pneumothorax's edge and stays out."""
    m = ndi.binary_dilation(lungs, iterations=params.BSPLINE_LUNG_DILATE_PX) & ndi.binary_erosion(valid, iterations=3)
    if m.sum() < 200:
        return m
    d = ndi.gaussian_filter(cw - mapped, params.TONE_CHANGE_SMOOTH_PX)
    v = d[m]
    sd = robust_sd(v) + 1e-6
    up, down = d - np.median(v) > params.BSPLINE_CHANGE_Z * sd, np.median(v) - d > params.BSPLINE_CHANGE_Z * sd
    inner = ndi.binary_erosion(lungs, iterations=params.BSPLINE_LUNG_DILATE_PX)
    lesion = (up | down) & inner
    for changed in (up, down):
        border = changed & ~inner
        mirrored = ndi.binary_dilation(_mirror(border, midline), iterations=params.BSPLINE_MIRROR_PX)
        lesion |= border & ~mirrored
    return m & ~lesion


def _mirror(a: np.ndarray, midline: float) -> np.ndarray:
    """`a` reflected about the column `midline`."""
    cols = np.round(2 * midline - np.arange(a.shape[1])).astype(int)
    ok = (cols >= 0) & (cols < a.shape[1])
    out = np.zeros_like(a)
    out[:, ok] = a[:, cols[ok]]
    return out


def fit_bspline(cw: np.ndarray, mapped: np.ndarray, lungs: np.ndarray, valid: np.ndarray, midline: float,
                seed: int = 1234, threads: int = 1, params: EngineParams = DEFAULT_PARAMS) -> sitk.Transform | None:
    """The B-spline transform (fixed = current, moving = registered prior; working-grid pixels), or
    None when the lungs give too little to fit. The caller leaves the pair affine where the field moves
    more than `BSPLINE_MAX_PX` inside the lungs (`max_displacement`)."""
    mask = _metric_mask(cw, mapped, lungs, valid, midline, params=params)
    if mask.sum() < params.BSPLINE_MIN_PIXELS:
        return None
    fixed = sitk.GetImageFromArray(cw.astype(np.float32))
    moving = sitk.GetImageFromArray(mapped.astype(np.float32))
    tx = sitk.BSplineTransformInitializer(fixed, list(params.BSPLINE_MESH), order=3)
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMeanSquares()
    r.SetMetricFixedMask(sitk.GetImageFromArray(mask.astype(np.uint8)))
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(params.BSPLINE_SAMPLING, seed)
    r.SetInterpolator(sitk.sitkLinear)
    # every control point's displacement is bounded (the field is a convex combination of them, so it is
    # bounded too): the regularisation that keeps the field from wandering where the lungs say little
    r.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-6, numberOfIterations=params.BSPLINE_ITERATIONS,
                           maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=2 * params.BSPLINE_ITERATIONS,
                           costFunctionConvergenceFactor=1e7, lowerBound=-params.BSPLINE_BOUND_PX,
                           upperBound=params.BSPLINE_BOUND_PX, trace=False)
    r.SetShrinkFactorsPerLevel(list(params.BSPLINE_SHRINK))
    r.SetSmoothingSigmasPerLevel([float(f) for f in params.BSPLINE_SHRINK])
    r.SetInitialTransform(tx, inPlace=True)
    r.SetNumberOfThreads(threads)
    r.Execute(fixed, moving)
    return tx


def max_displacement(tx: sitk.Transform, lungs: np.ndarray) -> float:
    """The largest displacement (working-grid pixels) of the field inside the lungs (outside them
    the mesh extrapolates freely and nothing is read)."""
    h, w = lungs.shape
    field = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
        tx, sitk.sitkVectorFloat64, [w, h], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0, 0.0, 1.0]))
    mag = np.sqrt((field ** 2).sum(-1))
    return float(mag[lungs].max()) if lungs.any() else float(mag.max())


def resample(a: np.ndarray, tx: sitk.Transform, interp: int = sitk.sitkLinear, default: float = 0.0) -> np.ndarray:
    """`a` (on the working grid) resampled through `tx` onto the same grid."""
    img = sitk.GetImageFromArray(a.astype(np.float32))
    return sitk.GetArrayFromImage(sitk.Resample(img, img, tx, interp, default, sitk.sitkFloat32))
