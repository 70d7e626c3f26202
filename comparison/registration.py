"""The registration engine: classical, CPU-only, no weights.

Pipeline for one current image against (at most) one prior, both float32 [H, W] in [0, 1]
with higher = denser (what `comparison.preprocess.load_image` returns):

1. both are resampled to a working grid (`work_size` on the long side);
2. lung fields are segmented on each (`comparison._anatomy`);
3. the prior is registered onto the current with SimpleITK: a multi-resolution
   similarity (rigid + scale) stage, then an affine stage, Mattes mutual information;
4. the prior's intensities are mapped onto the current's by a robust (trimmed) quadratic
   fit over registered pixel pairs — histogram matching that ignores the pixels that
   really changed;
5. signed differences that survive a one-pixel neighbourhood (so residual misregistration
   at rib and heart edges does not count) are thresholded against the noise inside the
   union of both lung fields;
6. each changed region is typed (nodule / mass / consolidation / effusion / pneumothorax)
   from its shape, place and texture (a dome-shaped compact change is a nodule / mass, a
   flat-topped or irregular one consolidation), its direction from evidence in both images:
   a ring of change around an unchanged core (the lesion is on both: worsened / improved,
   not new / resolved), fluid on both images below a moving basal level, a featureless
   band next to a pneumothorax's change on the prior (worsened) or on the current
   (improved); placed by side (patient's, PA convention) and zone (thirds of that lung);
7. one pneumothorax per side; a decrease of density inside a new or enlarging pneumothorax
   is the lucency itself and never reported as a resolved / improved opacity;
8. confidence: the raw score mapped by `comparison.calibration` (Platt, fitted offline).

No deformable (BSpline) stage: on the benchmark the residual errors are typing and
direction, not misregistration (stable and different-matrix pairs already stay silent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, Field
from scipy import ndimage as ndi

from comparison._anatomy import LungFields, segment_lungs
from comparison.calibration import calibrate
from comparison.draft import render_draft
from priorwatch.vocabulary import Change, ComparisonResult, Evidence, FindingResult, FindingType, Side, Zone

__all__ = ["ENGINE_NAME", "ENGINE_VERSION", "CompareContext", "ComparisonOutput", "RegistrationEngine"]

ENGINE_NAME = "registration"
ENGINE_VERSION = "0.2.0"
MODEL_NAME = "sitk-affine-mi"


class CompareContext(BaseModel):
    """What the worker knows beyond the pixels."""

    interval_days: int | None = None
    reason: str | None = None  # the clinical question, if the order carried one
    prior_report: str | None = None
    pixel_spacing_mm: float | None = Field(default=None, gt=0)  # of the current array, if known


@dataclass
class ComparisonOutput:
    """An engine's answer: the structured result plus a difference heat-map.

    `heatmap` is uint8 [H, W] in the current image's grid (0 = no change, 255 = strongest),
    or None when there was nothing to compare.
    """

    result: ComparisonResult
    heatmap: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Region:
    sign: int  # +1 denser now, -1 more lucent now
    mask: np.ndarray
    z: float  # mean difference / noise
    area: int


def _to_work(a: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    h, w = a.shape
    s = long_side / max(h, w)
    if abs(s - 1) < 1e-6:
        return a.astype(np.float32, copy=True)
    nh, nw = max(8, int(round(h * s))), max(8, int(round(w * s)))
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0), np.float32)


def _check(name: str, a: np.ndarray | None, allow_none: bool = False) -> np.ndarray | None:
    if a is None:
        if allow_none:
            return None
        raise ValueError(f"{name} image is missing")
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} image must be 2-D, got shape {a.shape}")
    if min(a.shape) < 32:
        raise ValueError(f"{name} image is too small: {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
        raise ValueError(f"{name} image must hold finite numbers")
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name} image must be scaled to [0, 1] (got {lo:.3g}..{hi:.3g})")
    if hi - lo < 1e-3:
        raise ValueError(f"{name} image is blank")
    return a


class RegistrationEngine:
    """Classical longitudinal comparison of two frontal chest radiographs."""

    ENGINE_NAME = ENGINE_NAME
    ENGINE_VERSION = ENGINE_VERSION

    def __init__(self, work_size: int = 256, threads: int = 1, seed: int = 1234, max_findings: int = 6,
                 z_threshold: float = 4.0, calibrated: bool = True) -> None:
        self.work_size = work_size
        self.threads = threads
        self.seed = seed
        self.max_findings = max_findings
        self.z_threshold = z_threshold
        self.calibrated = calibrated  # False: raw scores (what `comparison.calibration` is fitted on)
        self.last_features: list[dict[str, object]] = []

    # Public ---------------------------------------------------------------------------

    def compare(self, current: np.ndarray, prior: np.ndarray | None, context: CompareContext | None = None) -> ComparisonOutput:
        """Compare `current` with `prior` (None: no prior). Raises ValueError for bad input."""
        ctx = context or CompareContext()
        cur = _check("current", current)
        pri = _check("prior", prior, allow_none=True)
        assert cur is not None
        if pri is None:
            return self._no_prior(cur, ctx)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        cw = _to_work(cur, self.work_size)
        pw = _to_work(pri, self.work_size)
        lungs_c = segment_lungs(cw)
        lungs_p = segment_lungs(pw)
        timings["segment"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        tx, metric = self._register(cw, pw)
        timings["register"] = time.perf_counter() - t1
        warped, valid, lungs_pw = self._warp(cw, pw, lungs_p, tx)
        mapped, fit_ok = _match_intensity(cw, warped, valid & ndi.binary_dilation(lungs_c.both, iterations=8))
        lungs = _combine(lungs_c, lungs_pw)
        roi = lungs.both & ndi.binary_erosion(valid, iterations=3)
        quality = _ncc(cw, mapped, roi)
        regions, d_signed, sigma = self._regions(cw, mapped, roi)
        self._raw = ndi.gaussian_filter(cw, 1.0) - ndi.gaussian_filter(mapped, 1.0)
        spacing = ctx.pixel_spacing_mm * (max(cur.shape) / max(cw.shape)) if ctx.pixel_spacing_mm else 400.0 / max(cw.shape)
        findings, notes = [], []
        self.last_features = []
        tex_c, tex_p = _texture_map(cw, lungs.both), _texture_map(mapped, lungs.both)
        described: list[tuple[FindingResult, np.ndarray]] = []
        for reg in regions:
            f = self._describe(reg, cw, mapped, tex_c, tex_p, lungs, roi, sigma, spacing, quality, cur.shape)
            if f is not None:
                described.append((f, reg.mask))
        findings = _merge(_absorb_pneumothorax(described, tex_c, lungs))[: self.max_findings]
        if lungs_c.template:
            notes.append("Lung fields could not be segmented on the current image; a template was used.")
        if quality < 0.8 or not fit_ok:
            notes.append(f"Registration quality is limited (correlation {quality:.2f}); interpret with caution.")
        heat = _heatmap(d_signed, roi, sigma, cur.shape)
        timings["total"] = time.perf_counter() - t0
        result = ComparisonResult(
            engine=ENGINE_NAME, engine_version=ENGINE_VERSION, model=MODEL_NAME, model_version=f"SimpleITK {sitk.Version_VersionString()}",
            has_prior=True, findings=findings,
            draft_text=render_draft(findings, True, ctx.interval_days, notes), notes=notes + [
                f"registration: MI {metric:.3f}, correlation after matching {quality:.3f}, noise sd {sigma:.4f}"],
        )
        return ComparisonOutput(result=result, heatmap=heat, timings=timings)

    # Steps ----------------------------------------------------------------------------

    def _no_prior(self, cur: np.ndarray, ctx: CompareContext) -> ComparisonOutput:
        result = ComparisonResult(
            engine=ENGINE_NAME, engine_version=ENGINE_VERSION, model=MODEL_NAME,
            model_version=f"SimpleITK {sitk.Version_VersionString()}", has_prior=False, findings=[],
            draft_text=render_draft([], False), notes=["no prior available"],
        )
        return ComparisonOutput(result=result, heatmap=None)

    def _register(self, fixed_a: np.ndarray, moving_a: np.ndarray) -> tuple[sitk.Transform, float]:
        fixed = sitk.GetImageFromArray(fixed_a)
        moving = sitk.GetImageFromArray(moving_a)
        init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity2DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.GEOMETRY)

        def method(shrink: list[int], sigmas: list[float], iters: int) -> sitk.ImageRegistrationMethod:
            r = sitk.ImageRegistrationMethod()
            r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
            r.SetMetricSamplingStrategy(r.RANDOM)
            r.SetMetricSamplingPercentage(0.3, self.seed)
            r.SetInterpolator(sitk.sitkLinear)
            r.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=iters,
                                                       relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
            r.SetOptimizerScalesFromPhysicalShift()
            r.SetShrinkFactorsPerLevel(shrink)
            r.SetSmoothingSigmasPerLevel(sigmas)
            r.SetNumberOfThreads(self.threads)
            return r

        r1 = method([4, 2, 1], [2.0, 1.0, 0.0], 80)
        r1.SetInitialTransform(init, inPlace=False)
        sim = r1.Execute(fixed, moving)
        sim = sim.Downcast() if hasattr(sim, "Downcast") else sim
        if isinstance(sim, sitk.CompositeTransform):
            sim = sim.GetNthTransform(0).Downcast()
        aff = sitk.AffineTransform(2)
        aff.SetCenter(sim.GetCenter())
        aff.SetMatrix(sim.GetMatrix())
        aff.SetTranslation(sim.GetTranslation())
        r2 = method([2, 1], [1.0, 0.0], 60)
        r2.SetInitialTransform(aff, inPlace=False)
        out = r2.Execute(fixed, moving)
        return out, float(-r2.GetMetricValue())

    def _warp(self, cw: np.ndarray, pw: np.ndarray, lungs_p: LungFields, tx: sitk.Transform) -> tuple[np.ndarray, np.ndarray, LungFields]:
        fixed = sitk.GetImageFromArray(cw)

        def res(a: np.ndarray, interp: int, default: float) -> np.ndarray:
            img = sitk.GetImageFromArray(a.astype(np.float32))
            return sitk.GetArrayFromImage(sitk.Resample(img, fixed, tx, interp, default, sitk.sitkFloat32))

        warped = res(pw, sitk.sitkLinear, 0.0)
        valid = res(np.ones_like(pw), sitk.sitkLinear, 0.0) > 0.99
        right = res(lungs_p.right.astype(np.float32), sitk.sitkLinear, 0.0) > 0.5
        left = res(lungs_p.left.astype(np.float32), sitk.sitkLinear, 0.0) > 0.5
        return warped, valid, LungFields(right=right, left=left, midline=lungs_p.midline, template=lungs_p.template)

    def _regions(self, cw: np.ndarray, mapped: np.ndarray, roi: np.ndarray) -> tuple[list[_Region], np.ndarray, float]:
        c = ndi.gaussian_filter(cw, 1.0)
        p = ndi.gaussian_filter(mapped, 1.0)
        fp = np.ones((3, 3), bool)
        d_pos = np.clip(c - ndi.grey_dilation(p, footprint=fp), 0, None)  # denser than anything nearby before
        d_neg = np.clip(ndi.grey_erosion(p, footprint=fp) - c, 0, None)  # more lucent than anything nearby before
        raw = c - p
        vals = raw[roi]
        if vals.size < 50:
            return [], np.zeros_like(cw), 1.0
        sigma = float(1.4826 * np.median(np.abs(vals - np.median(vals)))) + 1e-4
        sigma = max(sigma, 0.004)
        d_signed = d_pos - d_neg
        regions: list[_Region] = []
        min_area = max(12, int(0.0004 * cw.size))
        for sign, d in ((1, d_pos), (-1, d_neg)):
            m = (d > self.z_threshold * sigma * 0.5) & roi
            m = ndi.binary_opening(m, structure=np.ones((3, 3), bool))
            m = ndi.binary_closing(m, structure=np.ones((5, 5), bool)) & roi  # patches of one change
            lab, n = ndi.label(m)
            if n == 0:
                continue
            idx = np.arange(1, n + 1)
            areas = ndi.sum(m, lab, idx)
            means = ndi.mean(d, lab, idx)
            for i, a, mu in zip(idx, areas, means):
                z = float(mu / sigma)
                if a < min_area or z < self.z_threshold:
                    continue
                regions.append(_Region(sign=sign, mask=lab == i, z=z, area=int(a)))
        regions.sort(key=lambda r: -r.z * np.sqrt(r.area))
        return regions[: 3 * self.max_findings], d_signed, sigma

    def _describe(self, reg: _Region, cw: np.ndarray, mapped: np.ndarray, tex_c: np.ndarray, tex_p: np.ndarray,
                  lungs: LungFields, roi: np.ndarray, sigma: float, spacing_mm: float, quality: float,
                  cur_shape: tuple[int, int]) -> FindingResult | None:
        m = ndi.binary_fill_holes(reg.mask)  # a growing lesion changes as a ring: fill it
        reg.mask = m
        ys, xs = np.nonzero(m)
        area = int(m.sum())
        cy, cx = float(ys.mean()), float(xs.mean())
        side = lungs.side_of(cx)
        zone = lungs.zone_of(side, cy)
        side_mask = lungs.mask(side)
        top, bottom = lungs.extent(side)
        lung_h = max(1, bottom - top)
        side_cols = np.nonzero(side_mask.any(axis=0))[0]
        lung_w = max(1, int(side_cols[-1] - side_cols[0] + 1)) if side_cols.size else cw.shape[1] // 3
        r = max(2, int(np.sqrt(area / np.pi)))
        ring = ndi.binary_dilation(m, iterations=max(2, r // 2 + 2)) & ~ndi.binary_dilation(m, iterations=1) & roi
        if ring.sum() < 5:
            ring = ndi.binary_dilation(m, iterations=3) & ~m
        # the region's core (inner half by distance to its edge): a lesion that grew or shrank
        # was there before (or is still there) at its core
        dist_in = ndi.distance_transform_edt(m)
        peak = dist_in >= 0.5 * dist_in.max()
        c_peak = float(cw[peak].mean() - cw[ring].mean())
        p_peak = float(mapped[peak].mean() - mapped[ring].mean())
        t_c, t_p = float(np.median(tex_c[m])), float(np.median(tex_p[m]))
        h = int(ys.max() - ys.min() + 1)
        w = int(xs.max() - xs.min() + 1)
        solidity = area / max(1.0, float(_hull_area(m)))
        diam_mm = 2 * np.sqrt(area / np.pi) * spacing_mm
        # effusion: the region sits on the lung base across its columns
        col_bottom = np.where(side_mask.any(axis=0), side_mask.shape[0] - 1 - np.argmax(side_mask[::-1], axis=0), -1)
        reg_cols = np.nonzero(m.any(axis=0))[0]
        reg_bottom = m.shape[0] - 1 - np.argmax(m[::-1][:, reg_cols], axis=0)
        contact = float(np.mean(reg_bottom >= col_bottom[reg_cols] - 4)) if reg_cols.size else 0.0
        basal = contact >= 0.6 and w >= 0.25 * lung_w and cy > top + 0.5 * lung_h
        dist_edge = ndi.distance_transform_edt(side_mask)
        peripheral = float(np.median(dist_edge[m])) < 0.12 * lung_w
        # Evidence from the difference alone (anatomy cancels): a lesion that grew or shrank
        # changes as a ring around a core that is the same on both images; one that appeared
        # or went away changes most at its centre.
        hull = _hull_mask(m)
        dh = ndi.distance_transform_edt(hull)
        core = dh >= 0.6 * dh.max()
        sd = self._raw * reg.sign
        p90 = float(np.percentile(sd[m], 90)) + 1e-6
        core_ratio = float(sd[core].mean() / p90)
        peaked = float(np.mean(sd[m]) / (np.percentile(sd[m], 95) + 1e-6))  # 2/3 for a dome, ~1 for a plateau
        # Basal evidence: below the changed band, is the change continuing (new / resolved) or is
        # there fluid on both images (the band is only the level moving: worsened / improved)?
        below = np.zeros_like(m)
        for c_ in reg_cols:
            rb = int(m.shape[0] - 1 - np.argmax(m[::-1, c_]))
            below[rb + 3 : rb + 12, c_] = True
        other = mapped if reg.sign > 0 else cw  # the image with less of the change
        d_below = float(sd[below].mean() / sigma) if below.any() else 0.0
        o_below = float((other[below].mean() - other[m].mean()) / sigma) if below.any() else 0.0
        fluid_both = d_below < 0.6 * reg.z and o_below > 10.0
        # Pneumothorax evidence: a featureless band right next to the region on each image.
        near = ndi.binary_dilation(m, iterations=8) & ~ndi.binary_dilation(m, iterations=1) & side_mask
        fl_p = float(np.mean(tex_p[near] < 0.45)) if near.any() else 0.0
        fl_c = float(np.mean(tex_c[near] < 0.45)) if near.any() else 0.0
        feats = dict(sign=reg.sign, z=round(reg.z, 1), area=area, c_peak=round(c_peak / sigma, 1),
                     p_peak=round(p_peak / sigma, 1), tex_c=round(t_c, 2), tex_p=round(t_p, 2),
                     sol=round(solidity, 2), h=h, w=w, lung_w=lung_w, contact=round(contact, 2),
                     periph=bool(peripheral), diam=round(diam_mm), side=side.value, zone=zone.value,
                     core_ratio=round(core_ratio, 2), peaked=round(peaked, 2), d_below=round(d_below, 1),
                     o_below=round(o_below, 1), fl_p=round(fl_p, 2), fl_c=round(fl_c, 2))
        self.last_features.append(feats)
        # the lesion's core is on both images: a clear ring, or a dome-less partial ring
        persists = core_ratio < 0.55 or (core_ratio < 0.8 and peaked < 0.78)
        opacity = _opacity_type(basal, solidity, h, w, diam_mm, core_ratio, peaked, area)
        finding: FindingType
        change: Change
        if reg.sign > 0:
            if t_p < 0.45 and t_c > t_p + 0.25 and p_peak < 0:
                # the prior was lucent and featureless here: a pneumothorax that shrank
                finding = FindingType.pneumothorax
                change = Change.improved if fl_c >= 0.07 else Change.resolved
            elif opacity == FindingType.effusion:
                finding = opacity
                change = Change.worsened if fluid_both else Change.new
            else:
                finding = opacity
                change = Change.worsened if (p_peak > max(3 * sigma, 0.5 * c_peak) or persists) else Change.new
        else:
            if t_c < 0.6 and t_p > t_c + 0.25 and (zone == Zone.upper or peripheral or t_c < 0.5):
                finding = FindingType.pneumothorax
                change = Change.worsened if fl_p >= 0.12 else Change.new
            elif opacity == FindingType.effusion:
                finding = opacity
                change = Change.improved if fluid_both else Change.resolved
            elif (p_peak > 3 * sigma or persists) and t_c >= 0.5:
                # an opacity that was there and is less now (lung markings are back: not a
                # lucency such as a pneumothorax); typed by the prior's shape
                finding = opacity
                change = Change.improved if (persists or c_peak > 0.45 * p_peak) else Change.resolved
            else:
                return None
        feats.update(finding=finding.value, change=change.value)
        urgent = (finding == FindingType.pneumothorax and change in (Change.new, Change.worsened)) or (
            finding == FindingType.effusion and change == Change.new and h >= 0.2 * lung_h)
        conf = _confidence(reg.z, self.z_threshold, area, quality)
        feats["raw_confidence"] = round(conf, 4)
        if self.calibrated:
            conf = float(calibrate(conf))
        sy, sx = cur_shape[0] / cw.shape[0], cur_shape[1] / cw.shape[1]
        box = (int(ys.min() * sy), int(xs.min() * sx), int((ys.max() + 1) * sy), int((xs.max() + 1) * sx))
        return FindingResult(
            finding=finding, side=side, zone=zone, change=change, urgent=urgent, confidence=conf,
            evidence=Evidence(zone=zone, side=side, box=box, score=round(reg.z * reg.sign, 3)),
        )


# Helpers -------------------------------------------------------------------------------


def _match_intensity(cur: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """Map prior intensities onto the current's: trimmed least squares, quadratic in the prior."""
    x = warped[mask].astype(np.float64)
    y = cur[mask].astype(np.float64)
    if x.size < 100:
        return warped, False
    if x.size > 40000:
        sel = np.random.default_rng(0).choice(x.size, 40000, replace=False)
        x, y = x[sel], y[sel]
    keep = np.ones(x.size, bool)
    coef = np.array([0.0, 1.0, 0.0])
    for _ in range(3):
        A = np.stack([x[keep] ** 2, x[keep], np.ones(keep.sum())], 1)
        coef = np.linalg.lstsq(A, y[keep], rcond=None)[0]
        res = y - (coef[0] * x**2 + coef[1] * x + coef[2])
        mad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep]))) + 1e-6
        keep = np.abs(res) < 2.5 * mad
        if keep.sum() < 50:
            return warped, False
    mapped = coef[0] * warped**2 + coef[1] * warped + coef[2]
    return mapped.astype(np.float32), True


def _ncc(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    if m.sum() < 10:
        return 0.0
    x, y = a[m] - a[m].mean(), b[m] - b[m].mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-9))


def _texture(img: np.ndarray, m: np.ndarray, lungs: np.ndarray) -> float:
    """High-frequency energy inside `m` relative to the lungs as a whole (lung markings)."""
    hp = img - ndi.gaussian_filter(img, 2.0)
    e = np.abs(hp)
    ref = float(np.median(e[lungs])) + 1e-6
    return float(np.median(e[m])) / ref


def _hull_area(m: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(m)
    if len(pts) < 3:
        return float(len(pts))
    try:
        return float(ConvexHull(pts.astype(float)).volume) + 0.5 * len(pts) ** 0.5 * 2
    except QhullError:
        return float(len(pts))


def _hull_mask(m: np.ndarray) -> np.ndarray:
    from comparison._anatomy import fill_convex_hull

    return fill_convex_hull(m)


def _opacity_type(basal: bool, solidity: float, h: int, w: int, diam_mm: float, core_ratio: float = 1.0,
                  peaked: float = 0.67, area: int = 0) -> FindingType:
    """Effusion (basal, meniscus), nodule / mass (round, compact, dome-shaped change) or
    consolidation (patchy: irregular outline, or a flat-topped change without a dome)."""
    if basal:
        return FindingType.effusion
    aspect = max(h, w) / max(1, min(h, w))
    if (core_ratio >= 0.8 and peaked >= 0.77) or (peaked >= 0.79 and area >= 200):
        return FindingType.consolidation  # a plateau of density, not a dome: patchy airspace opacity
    if solidity >= 0.8 and aspect <= 1.6:
        return FindingType.nodule if diam_mm <= 30 else FindingType.mass
    return FindingType.consolidation


def _texture_map(img: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Local high-frequency energy (lung markings), 1.0 = the lungs' median."""
    e = ndi.gaussian_filter(np.abs(img - ndi.gaussian_filter(img, 2.0)), 2.0)
    return e / (float(np.median(e[lungs])) + 1e-6) if lungs.any() else e / (float(np.median(e)) + 1e-6)


def _featureless_near(tex: np.ndarray, m: np.ndarray, side_mask: np.ndarray) -> bool:
    """Is there a featureless (no lung markings) band right next to the region, in the lung?"""
    near = ndi.binary_dilation(m, iterations=6) & ~m & side_mask
    if near.sum() < 8:
        return False
    return float(np.mean(tex[near] < 0.45)) > 0.25


def _combine(cur: LungFields, prior: LungFields) -> LungFields:
    """Union of the two lung fields per side, clipped to the rows both agree the lung starts at."""
    out = {}
    for side in (Side.right, Side.left):
        a, b = cur.mask(side), prior.mask(side)
        ra, rb = np.nonzero(a.any(axis=1))[0], np.nonzero(b.any(axis=1))[0]
        u = a | b
        if ra.size and rb.size:
            u[: max(ra[0], rb[0])] = False
        out[side] = u
    return LungFields(right=out[Side.right], left=out[Side.left], midline=cur.midline, template=cur.template and prior.template)


def _absorb_pneumothorax(items: list[tuple[FindingResult, np.ndarray]], tex_c: np.ndarray | None = None,
                         lungs: LungFields | None = None) -> list[FindingResult]:
    """One pneumothorax per side, and what lies in it is part of it.

    Changes touching a pneumothorax on the same side are its edge or its pleural line; and
    inside a new or enlarging pneumothorax the lung markings are gone, so a decrease of
    density there is the lucency itself, never a resolved or improved opacity. Every region
    of a side's pneumothorax gets the direction of its largest region.
    """
    ptx = [(f, m) for f, m in items if f.finding == FindingType.pneumothorax]
    if not ptx:
        return [f for f, _ in items]
    extent: dict[Side | None, np.ndarray] = {}
    lead: dict[Side | None, tuple[FindingResult, int]] = {}
    for f, m in ptx:
        if f.side not in lead or m.sum() > lead[f.side][1]:
            lead[f.side] = (f, int(m.sum()))
    for side, (f0, _) in lead.items():
        masks = [m for f, m in ptx if f.side == side]
        u = np.logical_or.reduce(masks)
        ext = ndi.binary_dilation(_hull_mask(u), iterations=16)
        if tex_c is not None and lungs is not None and side is not None and f0.change in (Change.new, Change.worsened):
            sm = lungs.mask(side)
            top, bottom = lungs.extent(side)
            featureless = (tex_c < 0.45) & sm
            featureless[int(top + 0.66 * (bottom - top)) :] = False
            ext |= featureless
        extent[side] = ext
    keep: list[FindingResult] = []
    done: set[Side | None] = set()
    for f, m in items:
        if f.finding == FindingType.pneumothorax:
            if f.side in done:
                continue
            done.add(f.side)
            f0 = lead[f.side][0]
            keep.append(f.model_copy(update=dict(change=f0.change, urgent=any(g.urgent for g, _ in ptx if g.side == f.side),
                                                 confidence=max(g.confidence for g, _ in ptx if g.side == f.side),
                                                 zone=f0.zone, evidence=f0.evidence)))
            continue
        ext = extent.get(f.side)
        if ext is not None and (ext & m).any():
            continue
        keep.append(f)
    return keep


def _confidence(z: float, z_thr: float, area: int, quality: float) -> float:
    strength = 1.0 - np.exp(-max(0.0, z - z_thr * 0.75) / z_thr)
    size = min(1.0, 0.6 + 0.4 * np.log10(max(area, 1)) / 3)
    q = float(np.clip((quality - 0.5) / 0.45, 0.2, 1.0))
    return float(np.clip(0.15 + 0.85 * strength * size * q, 0.05, 0.99))


def _merge(findings: list[FindingResult]) -> list[FindingResult]:
    """One finding per (type, side, zone, change): the strongest; urgent first, then by confidence."""
    best: dict[tuple[str, str | None, str | None, str], FindingResult] = {}
    for f in findings:
        zone = None if f.finding == FindingType.pneumothorax else (f.zone.value if f.zone else None)
        k = (f.finding.value, f.side.value if f.side else None, zone, f.change.value)
        if k not in best or f.confidence > best[k].confidence:
            best[k] = f
    return sorted(best.values(), key=lambda f: (not f.urgent, -f.confidence))


def _heatmap(d_signed: np.ndarray, roi: np.ndarray, sigma: float, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    mag = np.abs(d_signed) * roi
    scaled = np.clip((mag / sigma - 1.5) / 8.0, 0.0, 1.0)
    im = Image.fromarray((scaled * 255).astype(np.uint8))
    return np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.uint8)
