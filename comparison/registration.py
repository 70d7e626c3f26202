"""The registration engine: classical registration plus a small learned reader, CPU-only.

Pipeline for one current image against (at most) one prior, both float32 [H, W] in [0, 1]
with higher = denser (what `comparison.preprocess.load_image` returns):

0. view guard: a lateral or oblique view (`CompareContext` views: DICOM ViewPosition, or a
   PatientOrientation whose rows run front to back) is not compared: the result says so and
   claims nothing. AP against PA is compared, with a note and lower confidence (`_cautious`),
   as is a pair whose orientation was unknown (sides assume the standard display);
0b. after registration (steps 1-3), a prior whose fine anatomy does not line up with the
   current's (`same_person_score` under `SAME_PERSON_MIN`) is another person's: not compared;
   thin, very dense lines new on the current (`new_devices`: tubes, lines, leads) are taken
   out of the disease comparison and reported as a new support device;
1. both are resampled to a working grid (`thresholds.WORK_SIZE` on the long side);
2. lung fields are segmented on each (`comparison._anatomy`);
3. the prior is registered onto the current with SimpleITK: a multi-resolution similarity
   stage, then an affine stage (Mattes mutual information), started centred, or from the pose
   a coarse rotation x scale x shift search finds where it is clearly better
   (`comparison.coarse_pose`, `POSE_MARGIN`); a pair still under `REG_QUALITY_FAIL` is tried
   again from the other start, and the better kept; then a
   coarse, bounded B-spline (`comparison.nonrigid`) for inspiration, roll and posture, fitted on
   the lungs with lesions and one-sided border changes (effusion, pneumothorax) left out; where
   it is not fitted, inspiration is one vertical displacement growing from the apices to the
   bases, the same for every column (so it cannot mimic a one-sided effusion), chosen by
   correlation over the lungs;
4. the prior's intensities are mapped onto the current's by a robust quadratic fit (exposure,
   gamma, detector LUT); how badly that fit does is the exposure-mismatch guard;
5. registration quality (correlation after matching) below `REG_QUALITY_FAIL`: not compared;
6. signed differences that survive a one-pixel neighbourhood are thresholded against the
   noise inside the union of both lung fields;
7. the learned hemithorax reader (`comparison.reader`, ~0.1 M weights shipped with the package)
   reads each lung of the registered pair: changed or not, which finding, which change word,
   which third, urgent or not; the strongest changed region of that lung and third is its
   evidence box. It reads the pair twice: as matched in step 4, and after a monotone tone map of
   the prior inside the lungs (`_match_tone`: two detectors' tone curves differ by more than one
   quadratic, and the rest hides faint changes). The tone-mapped reading decides what changed;
   urgency is the higher of the two readings', since the fluid measure was calibrated on the
   quadratic match and the urgent head was first trained on it (`thresholds.TONE_READ`; the
   weights of engine 0.4.8 were fine-tuned on tone-mapped priors). Without the reader (no torch, no
   weights: said in the result's notes), or
   with `use_reader=False`, the sign rules below type each region instead. The rules run beside
   the reader anyway: their urgent pneumothorax at the apex is kept where the reader flagged
   nothing urgent (two readers for the urgent lucency), and their measured type (round <= 30 mm
   nodule, beyond a mass, patchy consolidation) is used where the reader is unsure which
   opacity it sees or reads a round one; a new effusion the reader typed is large (urgent)
   when the new fluid measured up from that lung's base (`comparison.fluid`) reaches
   `NEW_LARGE_FLUID_HEIGHT` of the lung's height;
7b. each changed region is typed from radiological signs on *each* image, not from the
   signed difference alone (density and lucency are different signs): a region more lucent
   now is a resolving opacity only when the prior showed an opacity there; new air against
   the chest wall at the apex or lateral edge (darker than the lung medial to it, markings
   lost or not, ribs stay) is a pneumothorax, worsened when the strip between it and the wall
   was already lucent; dependent basal opacity on the lung base is effusion (large when its
   height passes `LARGE_EFFUSION_FRACTION` of the lung); round convex opacities are nodules
   (<= 30 mm from the DICOM pixel spacing) or masses, patchy ones consolidation; a change the
   signs cannot type is `other` at its side and zone with low confidence, and a lucency at
   the apex or lateral edge errs towards a (urgent) pneumothorax;
7c. (issue 28) zones are thirds from the apex to the costophrenic angle read on the current itself
   (`_anatomy.zone_extents`, `ZONE_FROM_IMAGE`), an effusion is reported lower (`EFFUSION_LOWER`),
   a reader's lower opacity over large new fluid is an effusion (`FLUID_RETYPES`), new fluid is read
   against the prior's own lung-to-tissue contrast (`FLUID_CONTRAST`), "pneumothorax improved" needs
   the prior's air going and new air makes it new (`PTX_SIGNS`), and the rules' apical pneumothorax
   is kept beside the reader only where a region shows new air (`PTX_RULES_NEED_AIR`);
8. one pneumothorax per side; what lies inside it is part of it;
9. confidence: the reader's p(change) x p(finding) x registration quality; for the rules, the raw
   score mapped by `comparison.calibration` (Platt, fitted offline).

Every threshold lives in `comparison.thresholds` with the reason for its value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from comparison._anatomy import LungFields, robust_sd, segment_lungs, zone_extents
from comparison.calibration import calibrate
from comparison.coarse_pose import Pose, search_pose
from comparison.nonrigid import fit_bspline, max_displacement
from comparison.contract import CompareContext, ComparisonOutput
from comparison.thresholds import DEFAULT_PARAMS, LATERAL_VIEWS, OBLIQUE_VIEWS, EngineParams
from comparison.draft import DRAFT_HEADER, render_draft
from comparison.fluid import new_fluid_height
from comparison.measure import measure_only, measure_pair
from comparison.pleural_line import LineChange, PleuralLine, compare_lines, compare_wall_lines
from comparison.signs import Place, RegionSigns, locate, measure, texture_map, texture_signs
from comparison.typing_rules import describe, measured_large, new_air, opacity_type, pneumothorax_direction, reconcile
from priorwatch.vocabulary import APPEARING, DISAPPEARING, Change, ComparisonResult, Evidence, FindingResult, FindingType, Side, Zone

if TYPE_CHECKING:
    from comparison.reader import Reader

__all__ = ["ENGINE_NAME", "ENGINE_VERSION", "CompareContext", "ComparisonOutput", "RegistrationEngine"]

ENGINE_NAME = "registration"
ENGINE_VERSION = "0.4.16"  # 0.4.15 with opacities typed by their own shape, margin and size in mm (SIGNS_CHECK_SHAPE; nodule/mass vs consolidation) and a pleural-line pneumothorax detector present but off (PLEURAL_LINE_DETECTOR: it missed and raised false urgent on validation sets) (issue 28); 0.4.15: 0.4.14 with the reader fine-tuned across thorax3d, atlas2d, slabs and cxrpairs and its cut-offs 0.45 / 0.6 (issue 28); 0.4.14: 0.4.13 with parameters as one frozen value, zones on the image, fluid against the lung's contrast, a lower opacity over large new fluid an effusion, and the rules' apical pneumothorax only with new air (issue 28); 0.4.13: 0.4.12 (0.4.10 with the region signs and typing as pure modules (comparison.signs, comparison.typing_rules) checking the reader's type) and registration that survives other sources: pose search, fallback, B-spline (issue 28)
MODEL_NAME = "sitk-affine-mi"
READER_MODEL = "hemithorax-cnn"


@dataclass
class Aligned:
    """The pair on the working grid after registration (what detection and the reader see)."""

    cw: np.ndarray  # current, working grid
    mapped: np.ndarray  # prior registered onto it, intensities matched to it
    valid: np.ndarray  # where the registered prior has data
    lungs: LungFields  # union of both images' lung fields
    lungs_c: LungFields  # the current's own lung fields
    roi: np.ndarray  # lungs inside the valid area
    quality: float  # correlation after matching
    metric: float  # mutual information of the affine stage
    fit_ok: bool
    exposure_resid: float
    affine_mapped: np.ndarray | None = None  # the prior after the affine stage only (before the B-spline), matched:
    #                                         what the identity check reads, as a B-spline bends another person's
    #                                         anatomy towards the current's
    current_full: np.ndarray | None = None  # the prepared images as given to `align` (not the working grid): the
    prior_full: np.ndarray | None = None  #   pleural line at full size reads each on its own (PL_AT_FULL_SIZE)


@dataclass
class _Trace:
    """What one `analyse` call saw, kept for that call only (never on the engine, so calls cannot leak
    into each other) and returned as `ComparisonOutput.trace` for modeldev and benchmarks."""

    raw: np.ndarray  # the smoothed registered difference (current - prior) on the working grid
    features: list[dict[str, object]] = field(default_factory=list)  # each typed region's signs (calibration)
    signs: list[tuple[Side, Zone, int, RegionSigns]] = field(default_factory=list)  # per typed region, strongest first
    rules: list[FindingResult] = field(default_factory=list)  # the sign rules' findings
    reads: list = field(default_factory=list)  # the reader's readings per lung (`comparison.reader.LungRead`)
    fluid: dict[str, float] = field(default_factory=dict)  # new fluid height per lung (`comparison.fluid`)

    def as_dict(self) -> dict[str, object]:
        return {"features": self.features, "rules": self.rules, "reads": self.reads, "fluid": self.fluid}


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

    def __init__(self, threads: int = 1, seed: int = 1234, max_findings: int = 6, calibrated: bool = True,
                 use_reader: bool = True, reader: Reader | None = None, params: EngineParams = DEFAULT_PARAMS) -> None:
        # every tunable, one frozen value (`comparison.thresholds`): passed down to each pure function, never
        # read from a module at call time, so engines with other parameters (tuning, tests) never interfere
        self.params = params
        self.threads = threads
        # SimpleITK's pyramid filters and metric run on the process-wide thread pool whatever the
        # registration method is given: with 2+ threads the seeded random MI sampling summed in another
        # order each run, so the same pair gave slightly different transforms (p(change) 0.4619 vs
        # 0.4615, a borderline finding in or out). One thread per comparison is the design (a worker
        # runs many), so the pool is set to it: the same study gives the same result.
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        self.seed = seed
        self.max_findings = max_findings
        self.calibrated = calibrated  # False: the sign rules' raw scores (what `comparison.calibration` is fitted on);
        #                               the reader's confidence is not remapped (a Platt fit on dev did not help)
        self.use_reader = use_reader  # False: the hand-written sign rules type every change (the pre-0.4 engine)
        self._reader = reader  # other weights for this engine only (modeldev.reader_tune, modeldev.reader_replay); None: the shipped reader
        if use_reader and reader is None:
            _load_reader()  # at start (torch and the weights), not on the first study

    # Public ---------------------------------------------------------------------------

    def compare(self, current: np.ndarray, prior: np.ndarray | None, context: CompareContext | None = None) -> ComparisonOutput:
        """Compare `current` with `prior` (None: no prior). Raises ValueError for bad input."""
        ctx = context or CompareContext()
        cur = _check("current", current)
        pri = _check("prior", prior, allow_none=True)
        assert cur is not None
        if pri is None:
            return self._no_prior(cur, ctx)
        refusal = _not_frontal(ctx.current_view, ctx.prior_view)
        if refusal:
            return self._not_compared(refusal)
        if ctx.measure_only:  # issue 29: an older prior of the history, sizes at known places only
            return measure_only(self, cur, pri, ctx, _MEASURING_STEPS, MODEL_NAME)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        al = self.align(cur, pri, timings)
        out = self.analyse(al, cur.shape, ctx, timings)
        if out.result.not_compared is None:
            out.result = self._sizes(al, cur.shape, ctx, out.result)
        timings["total"] = time.perf_counter() - t0
        return out

    def _sizes(self, al: "Aligned", cur_shape: tuple[int, ...], ctx: CompareContext,
               result: ComparisonResult) -> ComparisonResult:
        """Issue 29: sizes on the current and the registered prior at each finding and where the
        worker asked (`ctx.measure_at`), on the working grid (`comparison.measure`)."""
        spacing = (ctx.pixel_spacing_mm or 400.0 / max(cur_shape)) * (max(cur_shape) / max(al.cw.shape))
        return measure_pair(al.cw, al.mapped, al.valid, cur_shape, spacing, result, ctx.measure_at)

    def analyse(self, al: "Aligned", cur_shape: tuple[int, ...], ctx: CompareContext,
                timings: dict[str, float] | None = None) -> ComparisonOutput:
        """Everything after `align`: the changed regions, their signs, the reader and the draft.
        Public so that a saved aligned pair (modeldev.reader_tune) is read exactly as in production."""
        timings = timings if timings is not None else {}
        cw, mapped, lungs, lungs_c, roi, quality = al.cw, al.mapped, al.lungs, al.lungs_c, al.roi, al.quality
        metric, fit_ok, exposure_resid = al.metric, al.fit_ok, al.exposure_resid
        notes: list[str] = []
        refused, identity_doubt = self._refusal(al, notes)
        if refused is not None:
            return refused
        spacing = ctx.pixel_spacing_mm * (max(cur_shape) / max(cw.shape)) if ctx.pixel_spacing_mm else 400.0 / max(cw.shape)
        devices = new_devices(al, spacing, params=self.params)
        if devices.any():  # a tube or line is a device, never disease: the change detection and the reader do not see it
            al = replace(al, cw=np.where(devices, al.mapped, al.cw).astype(np.float32))
            cw = al.cw
        if self.params.ZONE_FROM_IMAGE:  # zones from the apex and costophrenic angle on the image (the reader's crop
            #                              reads the masks, untouched)
            p = self.params
            rows = zone_extents(cw, lungs_c, p.ZONE_SMOOTH_PX, p.ZONE_LEVEL, p.ZONE_CENTRAL,
                                (p.ZONE_LATERAL[0], p.ZONE_LATERAL[1]), p.ZONE_MIN_SHARE)
            lungs = replace(lungs, zone_rows=rows)
            al = replace(al, lungs=lungs)
        regions, d_signed, sigma = self._regions(cw, mapped, roi)
        trace = _Trace(raw=ndi.gaussian_filter(cw, 1.0) - ndi.gaussian_filter(mapped, 1.0))
        if not ctx.pixel_spacing_mm:
            notes.append("pixel spacing unknown: sizes assume a 40 cm field of view")
        tex_c, tex_p = texture_map(cw, lungs.both), texture_map(mapped, lungs.both)
        q = quality if exposure_resid <= self.params.EXPOSURE_RESIDUAL_FAIL else min(quality, self.params.REG_QUALITY_WARN - 0.1)
        reader = (self._reader or _load_reader()) if self.use_reader else None
        if reader is None and self.use_reader:
            notes.append(f"The learned reader is unavailable ({_READER_ERROR}); the sign rules typed the changes.")
        described: list[tuple[FindingResult, np.ndarray]] = []
        for reg in regions:
            f = self._describe(reg, cw, mapped, tex_c, tex_p, lungs, roi, sigma, spacing, q, cur_shape, trace)
            if f is not None:
                described.append((f, reg.mask))
        described = _patchy(described, spacing, params=self.params)
        by_rules = _merge(_absorb_pneumothorax(described))[: self.max_findings]
        trace.rules = by_rules
        if reader is not None:
            findings = self._read(reader, al, spacing, regions, q, cur_shape, by_rules, sigma, timings, notes, trace)
        else:
            findings = by_rules
        findings, added = pleural_line_findings(findings, cw, mapped, lungs, spacing, cur_shape, params=self.params,
                                                full=(al.current_full, al.prior_full), lungs_c=lungs_c)
        if added:  # issue 28: the visceral pleural line, a pneumothorax without a dark rim
            notes.append("A thin pleural line parallel to the chest wall with no lung markings beyond it differs from "
                         "the prior: pneumothorax evidence the density change did not show; verify.")
            findings = findings[: self.max_findings]
        findings, caution = _cautious(findings, ctx, params=self.params)
        notes += caution
        if identity_doubt:
            findings = [f.model_copy(update={"confidence": float(max(0.05, f.confidence * self.params.IDENTITY_DOUBT_CONFIDENCE))})
                        for f in findings]
        if devices.any():
            findings.append(_device_finding(devices, lungs, cur_shape, params=self.params))
            notes.append("A new tube or line (thin, very dense) was found on the current: reported as a support "
                         "device, left out of the disease comparison.")
        notes += _quality_notes(lungs_c.template, quality, fit_ok, exposure_resid, params=self.params)
        heat = _heatmap(d_signed, roi, sigma, cur_shape)
        result = ComparisonResult(
            engine=ENGINE_NAME, engine_version=ENGINE_VERSION,
            model=f"{MODEL_NAME}+{READER_MODEL}" if reader is not None else MODEL_NAME,
            model_version=f"SimpleITK {sitk.Version_VersionString()}" + (f"; reader {reader.version}" if reader is not None else ""),
            has_prior=True, findings=findings,
            draft_text=render_draft(findings, True, ctx.interval_days, notes), notes=notes + [
                f"registration: MI {metric:.3f}, correlation after matching {quality:.3f}, noise sd {sigma:.4f}, "
                f"exposure residual {exposure_resid:.2f}"],
        )
        return ComparisonOutput(result=result, heatmap=heat, timings=timings, trace=trace.as_dict())

    def _refusal(self, al: "Aligned", notes: list[str]) -> tuple[ComparisonOutput | None, bool]:
        """(the not-compared answer when the pair cannot be registered, else None; whether the
        prior's identity is in doubt). A doubtful identity is a note and lower confidence, never a
        refusal: on independent generators the anatomy match refused one person's pairs far more
        often than it caught another person's (`SAME_PERSON_REFUSES`)."""
        quality, metric = al.quality, al.metric
        if quality < self.params.REG_QUALITY_FAIL:
            return self._not_compared(f"the images could not be registered (correlation {quality:.2f}): "
                                      "not compared; compare them by eye", metric=metric), False
        identity = same_person_score(al, params=self.params)
        if identity >= self.params.SAME_PERSON_MIN:
            return None, False
        if self.params.SAME_PERSON_REFUSES and quality >= self.params.REG_QUALITY_WARN:
            return self._not_compared(
                f"the prior does not appear to be the same patient (its anatomy matches the current's at "
                f"{identity:.2f} after registration; one person's pairs match at {self.params.SAME_PERSON_MIN:.2f} or more): "
                "check which patient the prior belongs to", metric=metric), True
        notes.append(f"The fine anatomy of the two images does not line up (match {identity:.2f}, one person's pairs "
                     f"usually {self.params.SAME_PERSON_MIN:.2f} or more): the registration is limited, or the prior is not this "
                     "patient's; check that it is. Confidence lowered.")
        return None, True

    def _read(self, reader: Reader, al: "Aligned", spacing: float, regions: list[_Region], q: float,
              cur_shape: tuple[int, ...], by_rules: list[FindingResult], sigma: float,
              timings: dict[str, float], notes: list[str], trace: "_Trace") -> list[FindingResult]:
        """The learned reader types the changes (the sign rules' urgent findings kept beside it);
        notes on measured large effusions and on urgent findings only the rules saw go to `notes`."""
        t2 = time.perf_counter()
        tta = self.params.READER_SWAP_TTA
        reads = reader.read(al, spacing, swap_tta=tta)
        if self.params.TONE_READ:
            toned = replace(al, mapped=_match_tone(al.cw, al.mapped, al.roi, params=self.params))
            reads = _toned_reads(reads, reader.read(toned, spacing, swap_tta=tta))
        timings["read"] = time.perf_counter() - t2
        fluid = trace.fluid = new_fluid_height(al, trace.raw, sigma, params=self.params)
        findings = _from_reads(reads, regions, al.lungs, q, al.cw.shape, cur_shape, by_rules, fluid,
                               signs=trace.signs if self.params.SIGNS_CHECK_READER else None, params=self.params)
        trace.reads = reads
        notes += [f"{f.change.value.capitalize()} {f.side.value} effusion: new fluid rises {fluid[f.side.value]:.0%} of the lung's height "
                  "from its base at the chest wall (large by the engine's measure)." for f in findings
                  if f.side is not None and _measured_large(f.finding, f.change, f.side, fluid, params=self.params)]
        if self.params.RULES_URGENT_ZONES:
            air = ({sd_ for sd_, _, g, x in trace.signs if new_air(g, x, params=self.params)}
                   if self.params.PTX_RULES_NEED_AIR else None)
            findings, kept = _urgent_from_either(findings, by_rules, params=self.params, air_sides=air)
            if kept:
                notes.append("The sign rules flagged an urgent finding the learned reader did not: kept, verify.")
        if self.params.PTX_SIGNS:
            findings, added = _ptx_from_signs(findings, by_rules, trace.signs, params=self.params)
            if added:
                notes.append("New air at the chest wall with a pleural line and no lung markings: a new pneumothorax "
                             "the learned reader did not call; kept, verify.")
        return findings[: self.max_findings]

    def align(self, cur: np.ndarray, pri: np.ndarray, timings: dict[str, float] | None = None) -> "Aligned":
        """Both images on the working grid, the prior registered, inspiration-corrected and
        intensity-matched onto the current; the lung fields of both. Public so that the
        learned reader is trained on exactly what it sees in production."""
        timings = timings if timings is not None else {}
        t0 = time.perf_counter()
        cw = _to_work(cur, self.params.WORK_SIZE)
        pw = _to_work(pri, self.params.WORK_SIZE)
        lungs_c = segment_lungs(cw)
        lungs_p = segment_lungs(pw)
        timings["segment"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        pose = search_pose(cw, pw, params=self.params) if self.params.POSE_SEARCH else None
        starts: list[Pose | None] = [None] if pose is None else [pose, None] if pose.needed else [None, pose]
        best: Aligned | None = None
        for start in starts:  # the fallback chain: the likelier start, then the other
            al = self._align_from(cw, pw, lungs_c, lungs_p, start)
            if best is None or al.quality > best.quality:
                best = al
            if best.quality >= self.params.REG_QUALITY_FAIL:  # registered: the fallback is for pairs that would be refused
                break
        timings["register"] = time.perf_counter() - t1
        assert best is not None
        return replace(best, current_full=cur, prior_full=pri)

    def _align_from(self, cw: np.ndarray, pw: np.ndarray, lungs_c: LungFields, lungs_p: LungFields,
                    start: Pose | None) -> "Aligned":
        """One registration of the prior onto the current from `start`, intensity-matched and
        inspiration-corrected, with its quality (correlation after matching over the lungs)."""
        tx, metric = self._register(cw, pw, start)
        warped, valid, lungs_pw = self._warp(cw, pw, lungs_p, tx)
        fit_mask = valid & ndi.binary_dilation(lungs_c.both, iterations=8)
        mapped, fit_ok, exposure_resid = _match_intensity(cw, warped, fit_mask)
        affine_mapped: np.ndarray | None = mapped
        bent = (fit_bspline(cw, mapped, lungs_c.both, valid, lungs_c.midline, self.seed, self.threads, params=self.params)
                if self.params.BSPLINE else None)
        if bent is not None and max_displacement(bent, lungs_c.both) <= self.params.BSPLINE_MAX_PX:
            # the prior is resampled once, through the affine and the B-spline together (no double blur)
            warped, valid, lungs_pw = self._warp(cw, pw, lungs_p, sitk.CompositeTransform([tx, bent]))
            fit_mask = valid & ndi.binary_dilation(lungs_c.both, iterations=8)
            mapped, fit_ok, exposure_resid = _match_intensity(cw, warped, fit_mask)
        else:
            affine_mapped = None  # no B-spline: the identity check reads `mapped` itself
            warped, valid, lungs_pw, mapped = self._inspiration(cw, warped, valid, lungs_pw, mapped, lungs_c)
        lungs = _combine(lungs_c, lungs_pw)
        roi = lungs.both & ndi.binary_erosion(valid, iterations=3)
        quality = _ncc(cw, mapped, roi)
        return Aligned(cw, mapped, valid, lungs, lungs_c, roi, quality, metric, fit_ok, exposure_resid,
                       affine_mapped=affine_mapped)

    # Steps ----------------------------------------------------------------------------

    def _no_prior(self, cur: np.ndarray, ctx: CompareContext) -> ComparisonOutput:
        result = ComparisonResult(
            engine=ENGINE_NAME, engine_version=ENGINE_VERSION, model=MODEL_NAME,
            model_version=f"SimpleITK {sitk.Version_VersionString()}", has_prior=False, findings=[],
            draft_text=render_draft([], False), notes=["no prior available"],
        )
        return ComparisonOutput(result=result, heatmap=None)

    def _not_compared(self, why: str, metric: float | None = None) -> ComparisonOutput:
        """A prior that cannot be compared (another view, failed registration): say so, claim nothing."""
        note = f"Not compared: {why}."
        result = ComparisonResult(
            engine=ENGINE_NAME, engine_version=ENGINE_VERSION, model=MODEL_NAME,
            model_version=f"SimpleITK {sitk.Version_VersionString()}", has_prior=True, findings=[],
            draft_text=f"{DRAFT_HEADER} {note} No interval change is assessed.", notes=[note], not_compared=why,
        )
        return ComparisonOutput(result=result, heatmap=None)

    def _inspiration(self, cw: np.ndarray, warped: np.ndarray, valid: np.ndarray, lungs_pw: LungFields,
                     mapped: np.ndarray, lungs_c: LungFields) -> tuple[np.ndarray, np.ndarray, LungFields, np.ndarray]:
        """Inspiration change after the affine stage: the diaphragm moves more than the apex, the
        same on both sides. One vertical displacement that grows quadratically from the lung
        apices to the bases (same for every column, so it cannot mimic a one-sided effusion),
        chosen by the best correlation over the lungs."""
        rows = np.nonzero(lungs_c.both.any(axis=1))[0]
        if rows.size < 10:
            return warped, valid, lungs_pw, mapped
        top, bot = float(rows[0]), float(rows[-1])
        span = max(1.0, bot - top)
        mask = ndi.binary_dilation(lungs_c.both, iterations=6) & valid
        hh, ww = cw.shape
        yy = np.arange(hh, dtype=np.float32)
        prof = np.clip((yy - top) / span, 0.0, None) ** 2

        def shifted(a: np.ndarray, k: float, order: int = 1) -> np.ndarray:
            src = yy - k * span * prof  # sample the prior further up (k > 0) the lower we go
            coords = np.stack(np.broadcast_arrays(src[:, None], np.arange(ww, dtype=np.float32)[None, :]))
            return ndi.map_coordinates(a, coords, order=order, mode="nearest")

        best_k, best = 0.0, _ncc(cw, mapped, mask)
        for k in self.params.INSPIRATION_STEPS:
            if k == 0.0:
                continue
            score = _ncc(cw, shifted(mapped, k), mask)
            if score > best + 1e-3:
                best_k, best = k, score
        if best_k == 0.0:
            return warped, valid, lungs_pw, mapped
        valid2 = shifted(valid.astype(np.float32), best_k) > 0.99
        lungs2 = LungFields(right=shifted(lungs_pw.right.astype(np.float32), best_k) > 0.5,
                            left=shifted(lungs_pw.left.astype(np.float32), best_k) > 0.5,
                            midline=lungs_pw.midline, template=lungs_pw.template)
        return shifted(warped, best_k), valid2, lungs2, shifted(mapped, best_k)

    def _register(self, fixed_a: np.ndarray, moving_a: np.ndarray,
                  start: Pose | None = None) -> tuple[sitk.Transform, float]:
        """Similarity then affine (Mattes MI) from `start` (`comparison.coarse_pose`), else from the
        images' centres unrotated."""
        fixed = sitk.GetImageFromArray(fixed_a)
        moving = sitk.GetImageFromArray(moving_a)
        if start is None:
            init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity2DTransform(),
                                                     sitk.CenteredTransformInitializerFilter.GEOMETRY)
        else:
            init = sitk.Similarity2DTransform(start.scale, start.angle_rad, start.translation, start.center)

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
        sigma = robust_sd(vals) + 1e-4
        sigma = max(sigma, self.params.SIGMA_FLOOR)
        d_signed = d_pos - d_neg
        regions: list[_Region] = []
        min_area = max(self.params.MIN_AREA_PX, int(self.params.MIN_AREA_FRACTION * cw.size))
        for sign, d in ((1, d_pos), (-1, d_neg)):
            m = (d > self.params.Z_THRESHOLD * sigma * 0.5) & roi
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
                z_need = (self.params.Z_THRESHOLD if a < self.params.LARGE_AREA_FRACTION * cw.size
                          else min(self.params.Z_THRESHOLD, self.params.Z_THRESHOLD_LARGE))
                if a < min_area or z < z_need:
                    continue
                regions.append(_Region(sign=sign, mask=lab == i, z=z, area=int(a)))
        regions.sort(key=lambda r: -r.z * np.sqrt(r.area))
        return regions[: 3 * self.max_findings], d_signed, sigma

    def _describe(self, reg: _Region, cw: np.ndarray, mapped: np.ndarray, tex_c: np.ndarray, tex_p: np.ndarray,
                  lungs: LungFields, roi: np.ndarray,
                  sigma: float, spacing_mm: float, quality: float, cur_shape: tuple[int, int],
                  trace: "_Trace") -> FindingResult | None:
        """Type one changed region from radiological signs on each image, not from the difference alone.

        Density and lucency are different signs: for the region and the lung around it we measure
        its contrast on the current (`c_con`) and on the registered prior (`p_con`). A region that
        is darker now is a resolving opacity only when the prior showed an opacity there; when it
        is darker than the lung around it now (air) at the lung's edge or apex it is a
        pneumothorax; otherwise an untyped change (`other`). The steps: where the region lies
        (`_locate`), its signs on each image (`_measure`, `_texture_signs`), the sign rules
        (`_type_change`); `last_features` records the signs for calibration and benchmarks.
        """
        at = _locate(reg, lungs, roi, cw.shape)
        if at is None:
            return None
        s = _measure(reg, at, cw, mapped, lungs, sigma, spacing_mm, trace.raw * reg.sign, params=self.params)
        feats = dict(sign=reg.sign, z=round(reg.z, 1), area=at.area, c_con=round(s.c_con, 1), p_con=round(s.p_con, 1),
                     c_core=round(s.c_core, 1), p_core=round(s.p_core, 1), sol=round(s.solidity, 2), h=s.h, w=s.w,
                     lung_w=at.lung_w, lung_h=at.lung_h, contact=round(s.contact, 2), periph=bool(s.peripheral),
                     apical=bool(s.apical), diam=round(s.diam_mm), side=at.side.value, zone=at.zone.value,
                     core_ratio=round(s.core_ratio, 2), peaked=round(s.peaked, 2), c_in=round(s.c_in, 1),
                     p_in=round(s.p_in, 1), strip_p=round(s.strip_p, 1),
                     strip_c=round(s.strip_c, 1), d_below=round(s.d_below, 1), o_below=round(s.o_below, 1))
        trace.features.append(feats)
        _texture_signs(s, at, tex_c, tex_p, cw, mapped, sigma, feats, params=self.params)
        feats.update(margin=round(s.margin, 2), meniscus=round(s.meniscus, 3), cp_angle=bool(s.cp_angle),
                     pleural_line=round(s.pleural_line, 1), bronchogram=round(s.bronchogram, 3))
        finding, change, large, typed = _type_change(reg, s, at, params=self.params)
        trace.signs.append((at.side, at.zone, reg.sign, s))
        feats.update(finding=finding.value, change=change.value)
        urgent = (finding == FindingType.pneumothorax and change in APPEARING) or (
            finding == FindingType.effusion and change == Change.new and large)
        conf = _confidence(reg.z, self.params.Z_THRESHOLD, at.area, quality)
        if not typed:
            conf = min(conf, self.params.UNTYPED_CONFIDENCE_CAP)
        feats["raw_confidence"] = round(conf, 4)
        if self.calibrated:
            conf = float(calibrate(conf))
        ys, xs = at.ys, at.xs
        sy, sx = cur_shape[0] / cw.shape[0], cur_shape[1] / cw.shape[1]
        box = (int(ys.min() * sy), int(xs.min() * sx), int((ys.max() + 1) * sy), int((xs.max() + 1) * sx))
        return FindingResult(
            finding=finding, side=at.side, zone=at.zone, change=change, urgent=urgent, confidence=conf,
            evidence=Evidence(zone=at.zone, side=at.side, box=box, score=round(reg.z * reg.sign, 3)),
        )


# Describing one changed region (RegistrationEngine._describe's steps) -------------------

def _quality_notes(template: bool, quality: float, fit_ok: bool, exposure_resid: float, *, params: EngineParams) -> list[str]:
    """The notes on what limits a comparison: a template lung field, a weak registration, exposures too far apart."""
    notes = []
    if template:
        notes.append("Lung fields could not be segmented on the current image; a template was used.")
    if quality < params.REG_QUALITY_WARN or not fit_ok:
        notes.append(f"Registration quality is limited (correlation {quality:.2f}); interpret with caution.")
    if exposure_resid > params.EXPOSURE_RESIDUAL_FAIL:
        notes.append("The two exposures differ too much to map one onto the other; confidence lowered.")
    return notes


def _locate(reg: _Region, lungs: LungFields, roi: np.ndarray, shape: tuple[int, ...]) -> Place | None:
    """The region's place (`comparison.signs.locate`); None when no ring of lung around it can be
    measured. Fills the region's holes (`reg.mask` too): a growing lesion changes as a ring."""
    reg.mask = ndi.binary_fill_holes(reg.mask)
    return locate(reg.mask, lungs, roi)


def _measure(reg: _Region, at: Place, cw: np.ndarray, mapped: np.ndarray, lungs: LungFields, sigma: float,
             spacing_mm: float, sd: np.ndarray, *, params: EngineParams) -> RegionSigns:
    """The region's physical signs on each image (`comparison.signs.measure`; `sd`: the smoothed
    difference, signed so that the change is positive)."""
    return measure(reg.sign, reg.z, at, cw, mapped, lungs, sigma, spacing_mm, sd, params=params)


def _texture_signs(s: RegionSigns, at: Place, tex_c: np.ndarray, tex_p: np.ndarray, cw: np.ndarray, mapped: np.ndarray,
                   sigma: float, feats: dict[str, object], *, params: EngineParams) -> None:
    """Lung markings and pleural signs into `s` (`comparison.signs.texture_signs`) and `feats`."""
    texture_signs(s, at, tex_c, tex_p, cw, mapped, sigma, params=params)
    feats.update(tex_c=round(s.t_c, 2), tex_p=round(s.t_p, 2), vessels_c=round(s.vessels_c, 1),
                 vessels_p=round(s.vessels_p, 1))
    feats.update(crescent=bool(s.crescent), touch=bool(s.touches), fl_p=round(s.fl_p, 2), fl_c=round(s.fl_c, 2),
                 c_sym=round(s.c_sym, 1), p_sym=round(s.p_sym, 1), t_prior=round(s.t_prior, 2), mirror=s.mirror)


def _type_change(reg: _Region, s: RegionSigns, at: Place, *, params: EngineParams) -> tuple[FindingType, Change, bool, bool]:
    """The sign rules (`comparison.typing_rules.describe`): (finding, change, large, typed); typed
    False where the signs could not type the region (its confidence is capped)."""
    return describe(reg.sign, s, reg.z, at.area, at.lung_h, params=params)


# Helpers -------------------------------------------------------------------------------

_READER = None
_READER_ERROR: str | None = None


# what `comparison.measure.measure_only` takes from this module (it cannot import the engine that imports it)
_MEASURING_STEPS = {"to_work": lambda a, n: _to_work(a, n), "match_intensity": lambda *a: _match_intensity(*a),
                    "ncc": lambda *a: _ncc(*a)}


def _load_reader():
    """The learned reader, loaded once per process; None (and why, in `_READER_ERROR`) when it
    cannot load (no torch, no weights): the engine then says so and types by its sign rules."""
    global _READER, _READER_ERROR
    if _READER is None and _READER_ERROR is None:
        try:
            from comparison.reader import Reader

            _READER = Reader()
        except Exception as exc:  # noqa: BLE001 - any load failure means: no reader, said in the result
            _READER_ERROR = f"{type(exc).__name__}: {exc}"[:200]
    return _READER


def _from_reads(reads: list, regions: list[_Region], lungs: LungFields, quality: float,
                work_shape: tuple[int, int], cur_shape: tuple[int, int],
                by_rules: list[FindingResult] | None = None,
                fluid_height: dict[str, float] | None = None,
                signs: list[tuple[Side, Zone, int, RegionSigns]] | None = None, params: EngineParams = DEFAULT_PARAMS) -> list[FindingResult]:
    """One finding per lung the reader calls changed, grounded on the strongest changed region
    of that lung and zone (else the zone of the lung itself) as its evidence box. A new effusion
    is urgent when the reader says so or when `fluid_height` (`comparison.fluid`, share of the
    lung's height) of its side reaches `NEW_LARGE_FLUID_HEIGHT`: "large" is a measured size."""
    out: list[FindingResult] = []
    sy, sx = cur_shape[0] / work_shape[0], cur_shape[1] / work_shape[1]
    for rd in reads:
        if rd.p_change < change_cut(rd.finding, params=params):
            continue
        side, zone = Side(rd.side), Zone(rd.zone)
        finding, change = FindingType(rd.finding), Change(rd.change)
        if params.ZONE_FROM_REGION and finding not in (FindingType.pneumothorax, FindingType.other):
            own = _strongest(regions, lungs, side, 1 if change in APPEARING else -1)
            if own is not None:  # the third holding the centre of the lesion's own change, not the crop's third
                zone = lungs.zone_of(side, float(np.nonzero(own.mask)[0].mean()))
        adopted = False
        if rd.p_finding < params.READER_TYPE_SURE and finding in OPACITIES:
            # unsure which opacity: the rules' measured shape and size in mm (round and <= 30 mm a
            # nodule, beyond a mass; patchy consolidation) for the same change in the same place
            same = _rules_here(by_rules, side, zone, change, OPACITIES)
            if same:
                finding, adopted = same[0].finding, True
        elif finding in ROUND:
            # a round opacity: nodule or mass is a size (< 30 mm), so the rules' measured size in mm of
            # a round change in the same place decides it over the reader's estimate
            same = _rules_here(by_rules, side, zone, change, ROUND)
            if same:
                finding = same[0].finding
        if signs:  # the measured signs of the changed regions in this lung and zone check the reader's words
            finding, change = reconcile(finding, change, zone, [(g, x) for sd_, zn, g, x in signs if sd_ == side and zn == zone],
                                        params=params)
            finding, change = pneumothorax_direction(finding, change, [(g, x) for sd_, _, g, x in signs if sd_ == side],
                                                     params=params)
        if (params.FLUID_RETYPES and finding in OPACITIES and change in APPEARING and zone == Zone.lower
                and (fluid_height or {}).get(side.value, 0.0) >= params.NEW_LARGE_FLUID_HEIGHT):
            finding = FindingType.effusion  # dependent density climbing the chest wall from the base: a meniscus
        if params.EFFUSION_LOWER and finding == FindingType.effusion:
            zone = Zone.lower  # dependent fluid: its centre is at the base
        urgent = (finding == FindingType.pneumothorax and change in APPEARING) or rd.p_urgent >= params.READER_URGENT_P
        urgent = urgent or _measured_large(finding, change, side, fluid_height, params=params)
        top, bottom = lungs.zone_span(side)
        z0 = top + (bottom - top) * ZONE_ORDER.index(zone) / 3
        z1 = top + (bottom - top) * (ZONE_ORDER.index(zone) + 1) / 3
        best, score = None, None
        for reg in regions:
            ys, xs = np.nonzero(reg.mask)
            if lungs.side_of(float(xs.mean())) != side or not (z0 - 2 <= ys.mean() <= z1 + 2):
                continue
            if best is None or reg.z * np.sqrt(reg.area) > score:
                best, score = (ys, xs, reg), reg.z * np.sqrt(reg.area)
        if best is not None:
            ys, xs, reg = best
            box = (int(ys.min() * sy), int(xs.min() * sx), int((ys.max() + 1) * sy), int((xs.max() + 1) * sx))
            effect = round(reg.z * reg.sign, 3)
        else:
            r0, c0, r1, c1 = rd.box
            box = (int(z0 * sy), int(c0 * sx), int(z1 * sy), int(c1 * sx))
            effect = None
        conf = rd.p_change * rd.p_finding * float(np.clip((quality - 0.5) / 0.45, 0.5, 1.0))
        if rd.p_finding < params.READER_TYPE_P and not adopted:  # changed, but nobody can say what: `other`, said unsure
            finding, conf = FindingType.other, min(conf, params.UNTYPED_CONFIDENCE_CAP)
        out.append(FindingResult(
            finding=finding, side=side, zone=zone, change=change, urgent=bool(urgent),
            confidence=float(np.clip(conf, 0.05, 0.99)),
            evidence=Evidence(zone=zone, side=side, box=box, score=effect),
        ))
    out.sort(key=lambda f: (not f.urgent, -f.confidence))
    return out


ZONE_ORDER = (Zone.upper, Zone.middle, Zone.lower)


def change_cut(finding: str, params: EngineParams = DEFAULT_PARAMS) -> float:
    """The reader's change cut-off for a lung whose top finding is `finding` (`READER_CHANGE_P_BY_FINDING`),
    else the global `READER_CHANGE_P`."""
    return dict(params.READER_CHANGE_P_BY_FINDING).get(str(finding), params.READER_CHANGE_P)


def _strongest(regions: list[_Region], lungs: LungFields, side: Side, sign: int) -> _Region | None:
    """The strongest changed region (z x sqrt(area)) of this polarity on this side, or None."""
    mine = [r for r in regions if r.sign == sign and lungs.side_of(float(np.nonzero(r.mask)[1].mean())) == side]
    return max(mine, key=lambda r: r.z * np.sqrt(r.area)) if mine else None


def _ptx_from_signs(by_reader: list[FindingResult], by_rules: list[FindingResult],
                    signs: list[tuple[Side, Zone, int, RegionSigns]], *,
                    params: EngineParams) -> tuple[list[FindingResult], int]:
    """The sign rules' new or worsened pneumothorax on a side where a region shows new air (`new_air`: lucent
    at the wall, vessel markings lost, a pleural line, no prior opacity) and the reader called no pneumothorax
    appearing: kept, urgent (a new pneumothorax errs towards urgent). Returns the findings and how many were added."""
    have = {f.side for f in by_reader if f.finding == FindingType.pneumothorax and f.change in APPEARING}
    air = {sd_ for sd_, _, g, x in signs if new_air(g, x, params=params)}
    extra = [f.model_copy(update={"urgent": True}) for f in by_rules
             if f.finding == FindingType.pneumothorax and f.change in APPEARING and f.side in air - have]
    extra = list({f.side: f for f in reversed(extra)}.values())  # one per side, the strongest
    return extra + by_reader, len(extra)


def pleural_line_findings(findings: list[FindingResult], cw: np.ndarray, mapped: np.ndarray, lungs: LungFields,
                          spacing: float, cur_shape: tuple[int, ...], *,
                          params: EngineParams, full: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
                          lungs_c: LungFields | None = None) -> tuple[list[FindingResult], int]:
    """The findings with the pleural-line detector's evidence (`_ptx_from_lines`) where `PLEURAL_LINE_DETECTOR`
    is on (unchanged, 0 where it is off): the engine's one entry to `comparison.pleural_line`. With
    `PL_AT_FULL_SIZE` and the prepared images (`full`: current, prior) and the current's own lung fields, the line
    is read on each prepared image on its own against the chest wall found on it (`compare_wall_lines`); else on the
    registered pair on the working grid (`compare_lines`)."""
    if not params.PLEURAL_LINE_DETECTOR:
        return list(findings), 0
    cur_full, pri_full = full
    if params.PL_AT_FULL_SIZE and cur_full is not None and pri_full is not None and lungs_c is not None:
        return _ptx_from_lines(findings, _wall_line_changes(cur_full, pri_full, lungs_c, spacing * cw.shape[0] / cur_shape[0],
                                                            cw.shape, params=params), lungs, cur_shape, params=params)
    return _ptx_from_lines(findings, compare_lines(cw, mapped, lungs, spacing, params=params), lungs, cur_shape, params=params)


def _full_masks(lungs: LungFields, shape: tuple[int, ...]) -> dict[Side, np.ndarray]:
    """A working grid's lung fields scaled up (nearest) onto a prepared image's grid."""
    z = (shape[0] / lungs.right.shape[0], shape[1] / lungs.right.shape[1])
    out = {}
    for side in (Side.right, Side.left):
        m = ndi.zoom(lungs.mask(side).astype(np.uint8), z, order=0)[: shape[0], : shape[1]].astype(bool)
        out[side] = np.pad(m, ((0, shape[0] - m.shape[0]), (0, shape[1] - m.shape[1])))
    return out


def _wall_line_changes(cur_full: np.ndarray, pri_full: np.ndarray, lungs_c: LungFields, spacing_full: float,
                       work_shape: tuple[int, ...], params: EngineParams) -> list[LineChange]:
    """`compare_wall_lines` on the prepared images (the prior's own lung fields segmented on its working grid; the
    prior's pixel size taken as the current's: the prepared images share a long side), as `LineChange`s whose line
    mask is on the prepared current's grid and whose row is on the working grid (for the zone)."""
    lungs_p = segment_lungs(_to_work(pri_full, params.WORK_SIZE))
    changes = compare_wall_lines(cur_full, pri_full, _full_masks(lungs_c, cur_full.shape), _full_masks(lungs_p, pri_full.shape),
                                 spacing_full, spacing_full, params=params)
    out = []
    for side, change, wl in changes:
        mask = np.zeros(cur_full.shape, bool)
        mask[wl.rows, np.clip(wl.cols, 0, cur_full.shape[1] - 1)] = True
        line = PleuralLine(side=side, mask=mask, strength=wl.strength, length_mm=wl.length_mm, gap_mm=wl.gap_mm,
                           beyond_ratio=wl.beyond_ratio, row=wl.row * work_shape[0] / cur_full.shape[0])
        out.append(LineChange(side, change, line))
    return out


def _ptx_from_lines(findings: list[FindingResult], changes: list[LineChange], lungs: LungFields,
                    cur_shape: tuple[int, ...], *, params: EngineParams) -> tuple[list[FindingResult], int]:
    """The pleural-line detector's claims (`comparison.pleural_line.compare_lines`) as pneumothorax evidence.
    A line new or moved inwards (new / worsened) on a side: that side's appearing pneumothorax is made urgent,
    or one is added (urgent, zone of the line, `PL_CONFIDENCE`), replacing a "pneumothorax improved / resolved"
    there (the line says the lung was pulled in). A line gone or moved out (resolved / improved): a pneumothorax
    of that change is added where the side has none; an urgent claim is never dropped for it.
    Returns the findings and how many the lines added or changed."""
    out, n = list(findings), 0
    for ch in changes:
        side = ch.side
        here = [f for f in out if f.finding == FindingType.pneumothorax and f.side == side]
        ys, xs = np.nonzero(ch.line.mask)
        sy, sx = cur_shape[0] / ch.line.mask.shape[0], cur_shape[1] / ch.line.mask.shape[1]
        box = (int(ys.min() * sy), int(xs.min() * sx), int((ys.max() + 1) * sy), int((xs.max() + 1) * sx))
        zone = lungs.zone_of(side, ch.line.row)
        made = FindingResult(finding=FindingType.pneumothorax, side=side, zone=zone, change=ch.change,
                             urgent=ch.change in APPEARING, confidence=params.PL_CONFIDENCE,
                             evidence=Evidence(zone=zone, side=side, box=box, score=round(ch.line.strength, 3)))
        if ch.change in APPEARING:
            if any(f.change in APPEARING for f in here):
                if not all(f.urgent for f in here if f.change in APPEARING):
                    out = [f.model_copy(update={"urgent": True}) if f in here and f.change in APPEARING else f for f in out]
                    n += 1
                continue
            out = [made] + [f for f in out if f not in here]
            n += 1
        elif not here:
            out.append(made)
            n += 1
    out.sort(key=lambda f: (not f.urgent, -f.confidence))
    return out, n


OPACITIES = (FindingType.nodule, FindingType.mass, FindingType.consolidation)
ROUND = (FindingType.nodule, FindingType.mass)


def _measured_large(finding: FindingType, change: Change, side: Side, fluid_height: dict[str, float] | None, *,
                    params: EngineParams) -> bool:
    """An effusion called new or worse whose new fluid on its side (`comparison.fluid`) is large:
    urgent (`comparison.typing_rules.measured_large` says why worsened counts too)."""
    return measured_large(finding, change, (fluid_height or {}).get(side.value, 0.0), params=params)


def _rules_here(by_rules: list[FindingResult] | None, side: Side, zone: Zone, change: Change,
                kinds: tuple[FindingType, ...]) -> list[FindingResult]:
    """The sign rules' findings of these kinds in the same side and zone, with the same polarity."""
    worse = change in APPEARING
    return [f for f in by_rules or [] if f.side == side and f.zone == zone and f.finding in kinds
            and (f.change in APPEARING) == worse]


def _urgent_from_either(by_reader: list[FindingResult], by_rules: list[FindingResult], params: EngineParams = DEFAULT_PARAMS,
                        air_sides: set[Side] | None = None) -> tuple[list[FindingResult], int]:
    """Two readers for the urgent flag at the apex: an urgent pneumothorax of the sign rules in
    a zone of `RULES_URGENT_ZONES` (the apex, where air collects on an erect film: a lucency
    there errs towards urgent) on a side where the reader flagged nothing urgent is kept (first).
    The rules' other urgent findings are not: their basal "new effusion" and lower-zone
    "pneumothorax" beside the reader were false on every dev pair where they differed from it.
    With `air_sides` (`PTX_RULES_NEED_AIR`) only on a side where a region shows new air (`new_air`).
    Returns the findings and how many of the rules' were kept."""
    flagged = {f.side for f in by_reader if f.urgent}
    extra = [f for f in by_rules if f.urgent and f.side not in flagged
             and f.finding == FindingType.pneumothorax and f.zone is not None and f.zone.value in params.RULES_URGENT_ZONES
             and (air_sides is None or f.side in air_sides)]
    return extra + by_reader, len(extra)



def _match_intensity(cur: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """Map prior intensities onto the current's: trimmed least squares, quadratic in the prior.
    Also returns the robust residual over the spread of the current's values there (exposure
    mismatch: how badly one exposure maps onto the other)."""
    x = warped[mask].astype(np.float64)
    y = cur[mask].astype(np.float64)
    if x.size < 100:
        return warped, False, 1.0
    if x.size > 40000:
        sel = np.random.default_rng(0).choice(x.size, 40000, replace=False)
        x, y = x[sel], y[sel]
    keep = np.ones(x.size, bool)
    coef = np.array([0.0, 1.0, 0.0])
    for _ in range(3):
        A = np.stack([x[keep] ** 2, x[keep], np.ones(keep.sum())], 1)
        coef = np.linalg.lstsq(A, y[keep], rcond=None)[0]
        res = y - (coef[0] * x**2 + coef[1] * x + coef[2])
        mad = robust_sd(res[keep]) + 1e-6
        keep = np.abs(res) < 2.5 * mad
        if keep.sum() < 50:
            return warped, False, 1.0
    mapped = coef[0] * warped**2 + coef[1] * warped + coef[2]
    spread = float(np.percentile(y, 90) - np.percentile(y, 10)) + 1e-6
    return mapped.astype(np.float32), True, float(mad / spread)


def _toned_reads(plain: list, toned: list) -> list:
    """Per lung, the reading of the tone-mapped pair (`_match_tone`) decides whether the lung changed
    and what changed; its urgency is the higher of the two readings. The fluid measure and the sign
    rules stay on the quadratic-matched prior they were calibrated on. Why: a tone map lets the
    reader see faint changes that the two detectors' different tone curves hide, but it also moves
    the basal intensities that urgency was learned on (stop 17: a new 123 mm effusion read "new"
    at 0.99 on the tone-mapped pair lost its urgent flag)."""
    assert [r.side for r in plain] == [r.side for r in toned]  # `Reader.read` gives right, then left
    return [replace(t, p_urgent=max(t.p_urgent, p.p_urgent)) for p, t in zip(plain, toned)]


def _match_tone(cur: np.ndarray, mapped: np.ndarray, roi: np.ndarray, params: EngineParams = DEFAULT_PARAMS) -> np.ndarray:
    """A second, monotone intensity map fitted inside the lungs only: the current's median at each
    of `TONE_BINS` quantile bins of the (already quadratic-matched) prior, made non-decreasing and
    interpolated (extended linearly past the ends). Two detectors' tone curves (gamma against a
    sigmoid LUT, another exposure) differ by more than one quadratic over the whole chest can take
    up; what is left is a function of intensity, so ribs and intercostal spaces keep residuals of
    opposite sign (stripes in the difference image) and a faint lesion's contrast is scaled.
    Pixels of a change (the smoothed difference past `TONE_CHANGE_Z` robust sd) are left out of the
    fit: a large new effusion fills the bins of the prior's basal intensities, and a map fitted
    through it paints the effusion onto the prior. Returns `mapped` unchanged when too few lung
    pixels are left to fit it."""
    coarse = ndi.gaussian_filter(cur - mapped, params.TONE_CHANGE_SMOOTH_PX)[roi]
    if coarse.size < params.TONE_MIN_PIXELS:
        return mapped
    mad = robust_sd(coarse) + 1e-6
    fit = np.zeros_like(roi)
    fit[roi] = np.abs(coarse - np.median(coarse)) <= params.TONE_CHANGE_Z * mad  # what changed is not fitted
    x = mapped[fit].astype(np.float64)
    y = cur[fit].astype(np.float64)
    if x.size < params.TONE_MIN_PIXELS:
        return mapped
    edges = np.quantile(x, np.linspace(0.0, 1.0, params.TONE_BINS + 1))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, params.TONE_BINS - 1)
    xc, yc = [], []
    for b in range(params.TONE_BINS):
        sel = idx == b
        if sel.sum() >= params.TONE_MIN_BIN:
            xc.append(float(np.median(x[sel])))
            yc.append(float(np.median(y[sel])))
    if len(xc) < 4:
        return mapped
    xa, ya = np.array(xc), np.array(yc)
    keep = np.concatenate([[True], np.diff(xa) > 1e-6])  # tied bin medians (a flat image) once
    xa, ya = xa[keep], np.maximum.accumulate(ya[keep])  # monotone: a brighter prior pixel never maps darker
    if xa.size < 4:
        return mapped
    out = np.interp(mapped, xa, ya)
    lo, hi = mapped < xa[0], mapped > xa[-1]
    out[lo] = ya[0] + (mapped[lo] - xa[0]) * (ya[1] - ya[0]) / max(xa[1] - xa[0], 1e-6)
    out[hi] = ya[-1] + (mapped[hi] - xa[-1]) * (ya[-1] - ya[-2]) / max(xa[-1] - xa[-2], 1e-6)
    return out.astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    if m.sum() < 10:
        return 0.0
    x, y = a[m] - a[m].mean(), b[m] - b[m].mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-9))


def _not_frontal(cur: str | None, prior: str | None) -> str | None:
    """Why this frontal engine does not compare the pair, or None: a lateral or oblique view on either
    side (`LATERAL_VIEWS`, `OBLIQUE_VIEWS`). Unknown views are assumed frontal; AP against PA is compared
    (`_cautious` notes it)."""
    c, p = ((v or "").strip().upper() for v in (cur, prior))
    for role, view in (("current", c), ("prior", p)):
        if view in LATERAL_VIEWS or view in OBLIQUE_VIEWS:
            kind = "lateral" if view in LATERAL_VIEWS else "oblique"
            return (f"the {role} is a {kind} view (current {c or 'unknown'}, prior {p or 'unknown'}); this engine "
                    "compares frontal chest radiographs only")
    return None


def _cautious(findings: list[FindingResult], ctx: CompareContext, *, params: EngineParams) -> tuple[list[FindingResult], list[str]]:
    """Findings with confidence lowered, and notes saying why, where the pair is comparable but less so:
    AP against PA (magnification, scapulae: `AP_PA_CONFIDENCE`), a PatientOrientation that did not say
    which side is which (`ORIENTATION_UNKNOWN_CONFIDENCE`). Urgent flags are kept."""
    notes: list[str] = []
    factor = 1.0
    c, p = ((v or "").strip().upper() for v in (ctx.current_view, ctx.prior_view))
    if {c, p} == {"AP", "PA"}:
        factor *= params.AP_PA_CONFIDENCE
        notes.append(f"The current is {c} and the prior {p}: an AP film magnifies the heart and mediastinum and "
                     "projects the scapulae over the lungs, so a difference in heart size or at the lung edges may "
                     "not be interval change; confidence lowered.")
    if ctx.orientation_known is False:
        factor *= params.ORIENTATION_UNKNOWN_CONFIDENCE
        notes.append("The image orientation (PatientOrientation) is absent or unusable on at least one image: "
                     "sides assume the standard display (patient's right on the image's left); confirm the side; "
                     "confidence lowered.")
    if factor < 1.0:
        findings = [f.model_copy(update={"confidence": float(max(0.05, f.confidence * factor))}) for f in findings]
    return list(findings), notes


def _bandpass(a: np.ndarray, *, params: EngineParams) -> np.ndarray:
    return ndi.gaussian_filter(a, params.SAME_PERSON_BAND[0]) - ndi.gaussian_filter(a, params.SAME_PERSON_BAND[1])


def same_person_score(al: "Aligned", params: EngineParams = DEFAULT_PARAMS) -> float:
    """How well the fine anatomy (ribs, vessels, lung markings) of the registered prior matches the
    current's: the median, over tiles of the lungs (`SAME_PERSON_TILE` px of the working grid), of the
    correlation of the band-passed images (`SAME_PERSON_BAND`). Tiles where the pair changed (the
    smoothed difference departs from its median by over `SAME_PERSON_CHANGE_Z` robust sd on average)
    are left out: a lesion or a pneumothorax hides the anatomy there. One person's ribs and vessels
    line up after registration elsewhere; another person's do not line up anywhere. 1.0 when too few
    tiles are left to judge."""
    prior = al.affine_mapped if al.affine_mapped is not None else al.mapped  # not the B-spline's bent anatomy
    a, b, roi = _bandpass(al.cw, params=params), _bandpass(prior, params=params), al.roi
    coarse = ndi.gaussian_filter(al.cw - prior, params.TONE_CHANGE_SMOOTH_PX)
    if roi.sum() < 10:
        return 1.0
    centre, spread = float(np.median(coarse[roi])), robust_sd(coarse[roi]) + 1e-6
    t = params.SAME_PERSON_TILE
    h, w = roi.shape
    scores = []
    for y in range(0, h - t + 1, t // 2):
        for x in range(0, w - t + 1, t // 2):
            m = roi[y:y + t, x:x + t]
            if m.mean() < 0.6 or np.abs(coarse[y:y + t, x:x + t][m] - centre).mean() > params.SAME_PERSON_CHANGE_Z * spread:
                continue
            scores.append(_ncc(a[y:y + t, x:x + t], b[y:y + t, x:x + t], m))
    return float(np.median(scores)) if len(scores) >= params.SAME_PERSON_MIN_TILES else 1.0


def new_devices(al: "Aligned", spacing_mm: float, params: EngineParams = DEFAULT_PARAMS) -> np.ndarray:
    """Pixels of thin, very dense lines new on the current (tubes, lines, leads), dilated: what is
    brighter than anything within `DEVICE_TOPHAT_MM` around it (a white top-hat) on the current and
    not on the registered prior by `DEVICE_EDGE_Z` robust sd, in components at least
    `DEVICE_MIN_LENGTH_MM` long, on average no wider than `DEVICE_MAX_WIDTH_MM`, whose median
    reaches `DEVICE_Z` (far denser than a lesion's rim or a pleural line)."""
    r = max(1, int(round(params.DEVICE_TOPHAT_MM / 2 / max(spacing_mm, 1e-3))))
    yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
    fp = (yy * yy + xx * xx) <= r * r
    th_c = al.cw - ndi.grey_opening(al.cw, footprint=fp)
    th_p = ndi.grey_dilation(al.mapped - ndi.grey_opening(al.mapped, footprint=fp), size=(3, 3))
    d = th_c - th_p
    body = ndi.binary_erosion(al.valid, iterations=3)
    if body.sum() < 100:
        return np.zeros_like(al.valid)
    z = d / max(robust_sd(d[body]), params.SIGMA_FLOOR)
    m = ndi.binary_closing((z > params.DEVICE_EDGE_Z) & body, structure=np.ones((3, 3), bool))
    lab, n = ndi.label(m)
    keep = np.zeros_like(m)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        comp = lab[sl] == i
        length_mm = float(np.hypot(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)) * spacing_mm
        width_mm = float(comp.sum()) * spacing_mm * spacing_mm / max(length_mm, 1e-3)
        if (length_mm >= params.DEVICE_MIN_LENGTH_MM and width_mm <= params.DEVICE_MAX_WIDTH_MM
                and float(np.median(z[sl][comp])) >= params.DEVICE_Z):
            keep[sl] |= comp
    return ndi.binary_dilation(keep, iterations=2) & al.valid if keep.any() else keep


def _device_finding(devices: np.ndarray, lungs: LungFields, cur_shape: tuple[int, ...], *, params: EngineParams) -> FindingResult:
    """A new support device, placed by the side holding most of it; never urgent (a malposition is
    the radiologist's call)."""
    ys, xs = np.nonzero(devices)
    side = lungs.side_of(float(np.median(xs)))
    sy, sx = cur_shape[0] / devices.shape[0], cur_shape[1] / devices.shape[1]
    box = (int(ys.min() * sy), int(xs.min() * sx), int((ys.max() + 1) * sy), int((xs.max() + 1) * sx))
    return FindingResult(finding=FindingType.support_device, side=side, change=Change.new, urgent=False,
                         confidence=params.DEVICE_CONFIDENCE, evidence=Evidence(side=side, box=box))


def _hull_mask(m: np.ndarray) -> np.ndarray:
    from comparison._anatomy import fill_convex_hull

    return fill_convex_hull(m)


def _opacity_type(s: RegionSigns, area: int, *, params: EngineParams) -> FindingType:
    """Which opacity a region's shape and place say (`comparison.typing_rules.opacity_type`)."""
    return opacity_type(s, area, params=params)


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


def _patchy(items: list[tuple[FindingResult, np.ndarray]], spacing_mm: float, params: EngineParams = DEFAULT_PARAMS) -> list[tuple[FindingResult, np.ndarray]]:
    """Islands of one patchy opacity: two or more nodule / mass / consolidation changes of one sign
    close together on one side are one consolidation (several round lesions do not appear or go
    together): each island is typed consolidation and `_merge` keeps the strongest per zone."""
    kinds = (FindingType.nodule, FindingType.mass, FindingType.consolidation)
    gap = params.PATCHY_GAP_MM / max(spacing_mm, 1e-3)  # in working pixels
    out = list(items)
    for side in (Side.right, Side.left):
        for sign in (1, -1):
            idx = [i for i, (f, _) in enumerate(items) if f.finding in kinds and f.side == side
                   and f.evidence is not None and (f.evidence.score or 0) * sign > 0]
            if len(idx) < 2:
                continue
            grown = {i: ndi.distance_transform_edt(~items[i][1]) <= gap for i in idx}
            for i in idx:
                if any((grown[i] & items[j][1]).any() for j in idx if j != i):
                    f, m = out[i]
                    out[i] = (f.model_copy(update=dict(finding=FindingType.consolidation)), m)
    return out


def _absorb_pneumothorax(items: list[tuple[FindingResult, np.ndarray]]) -> list[FindingResult]:
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
    for side in lead:
        u = np.logical_or.reduce([m for f, m in ptx if f.side == side])
        extent[side] = ndi.binary_dilation(_hull_mask(u), iterations=16)
    keep: list[FindingResult] = []
    done: set[Side | None] = set()
    for f, m in items:
        if f.finding == FindingType.pneumothorax:
            if f.side in done:
                continue
            done.add(f.side)
            f0 = lead[f.side][0]
            keep.append(f.model_copy(update=dict(change=f0.change, urgent=f0.urgent,
                                                 confidence=max(g.confidence for g, _ in ptx if g.side == f.side),
                                                 zone=f0.zone, evidence=f0.evidence)))
            continue
        ext = extent.get(f.side)
        lucency = f.change in DISAPPEARING or f.finding == FindingType.other
        if ext is not None and (ext & m).any() and (lucency or lead[f.side][0].change in APPEARING):
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
