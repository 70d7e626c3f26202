"""ssmfield: a fifth, independent generator of longitudinal chest-radiograph pairs.

Independence statement: written from BRIEF.md (modeldev/generators/BRIEF.md) by the gen5
helper, who read none of comparison/, benchmarks/ (cxrpairs/, change_engine.py, reader_*.py),
comparison/synthetic.py, workers/demo.py, modeldev/evaluate.py, tests/, nor any other generator
under modeldev/generators/ (thorax3d.py, atlas2d.py, slabs.py, cxrpairs_export.py), and read no
git history or diffs. Only BRIEF.md, the helper briefs, numpy/scipy/pydicom documentation and
DCMTK help were consulted. It was never run against the engine or the evaluation.

How it differs from the four existing generators:
- anatomy: a landmark statistical shape model (hand-specified mean shape of ~45 landmarks with
  named modes: width, height, heart size, diaphragm asymmetry, mediastinal width, apex height)
  warps one canonical template (lungs, body, trachea, gastric air) by thin-plate splines; lung
  parenchyma is a correlated random field with a power-law spectrum; vessels are grown per
  patient by space colonisation with Murray's-law radii; ribs and clavicles are 3-D hoops
  (bucket-handle tilt changes with inspiration) projected orthographically after patient roll;
  every landmark carries a depth so roll shifts the heart against the spine.
- lesions: density fields that fill lung air: nodules/masses with Gaussian-process (random
  Fourier) margins and spicules; consolidation as a fuzzy front with a random-field texture,
  a sharp fissure edge and air bronchograms; effusion as fluid layered by gravity whose surface
  has a capillary-style meniscus rising along the chest wall; pneumothorax as an anisotropic
  retraction of the lung surface towards the hilum (markings go with the lung, the rim is pure
  air) with a visceral pleural line.
- acquisition: exposure in linear intensity with scatter (reduced by a grid), a two-Gaussian
  scintillator/phosphor MTF with glare, quantum + electronic noise with a two-component NPS,
  aliased grid lines, log transform, equalisation + unsharp masking, sigmoid or gamma LUT,
  BitsStored 12-15, MONOCHROME1/2, CR or DX (For Presentation), explicit VR LE, deflated, or
  RLE Lossless (own numpy PackBits encoder, literal runs only, decoded by pydicom natively).

The brief (BRIEF.md, abridged but complete in its requirements): generate pairs (prior,
current) of frontal chest radiographs with exact labels. Patient's right is on the image's left
in standard display (PatientOrientation L\\F; mirrored images say R\\F). Findings: nodule (<=30
mm), mass (>30 mm), consolidation (30-120 mm), effusion (height 15-150 mm, large if it reaches a
third of the lung height), pneumothorax (rim 5-40 mm), support_device (never disease). Changes
new/worsened/stable/improved/resolved; side right/left/bilateral; zone upper/middle/lower =
thirds of the lung from apex to the costophrenic angle. Urgent: new or worsened pneumothorax;
new large effusion. Acquisition varies: CR/DR, spacing 0.10-0.20 mm, 1700-3000 px, processing,
noise, grid lines, inspiration +-12 mm, roll <= 4 deg, rotation, scale +-5 %, shift,
collimation, burned-in text, MONOCHROME1/2, transfer syntax. Cases: change (60 %), stable
(20 %), normal (20 %) by default, plus mirrored, lateral, other_person, devices_only, ap_vs_pa,
rotated on request. Output: DIR/<pair_id>/{prior,current}.dcm and DIR/labels.jsonl with
pair_id, generator, seed, case, prior, current, expect, findings, notes. Deterministic per seed,
under ~3 s per pair on one core, numpy/scipy/pydicom only, nothing downloaded.

Label conventions chosen here: at most one disease finding per lung in a pair (so no two
findings share a side/zone answer); support devices are listed as `support_device` rows
(new / resolved / stable, never urgent), with side = the device's side, `bilateral` for midline
tubes (endotracheal) and ECG leads, zone from the tip on the mean shape; lateral and
other_person pairs carry no findings. Pneumothorax zone is the third holding the rim's centroid.

Extra output (not part of the brief's format): DIR/geometry.jsonl records, per pair, where
each finding and the body midline lie in each stored image's pixels, so `--verify DIR` can check
the labels against the rendered pixels (side in standard display, direction of change).

CLI: python -m modeldev.generators.ssmfield --seed S --n N --out DIR [--cases mirrored=5,...]
     python -m modeldev.generators.ssmfield --verify DIR [--png DIR2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from scipy import ndimage as ndi

GENERATOR = "ssmfield"

# --------------------------------------------------------------------------------------------
# Tunables (each named once, with why)
# --------------------------------------------------------------------------------------------
WS = 0.625  # mm per working-grid pixel: fine enough for 1 mm vessels/pleural line, cheap to warp
X_RANGE = (-240.0, 240.0)  # patient-space extent (mm, +x = patient's left): whole thorax + margin
Y_RANGE = (-250.0, 250.0)  # patient-space extent (mm, +y = feet): neck to upper abdomen
MU_SOFT = 0.02  # /mm, soft tissue at ~60 keV effective: sets lung/mediastinum contrast (~2.3 log)
MU_BONE = 0.045  # /mm extra over soft tissue for rib/clavicle bone: ribs visible but below vessels
LUNG_TISSUE_FRACTION = 0.22  # lung density relative to water: parenchyma + blood in inflated lung
LUNG_MAX_AIR_MM = 140.0  # max antero-posterior air path through one lung
LUNG_EDGE_ROUNDING_MM = 28.0  # distance over which lung thickness rises from its edge (rounded lung)
TEXTURE_GAIN = 0.18  # relative modulation of lung tissue density by the power-law field
TEXTURE_BETA = 3.0  # power-law exponent of the parenchymal field (1/f^beta: fractal-like)
TPS_BLOCK = 12  # TPS evaluated every 12 working pixels (7.5 mm) then interpolated: the warp is smooth
TPS_REGULARISATION = 1e-3  # keeps the TPS system well conditioned; landmarks still met to <0.1 mm
COARSE_DETECTOR_MM = 0.5  # physics/processing grid; full resolution only for noise, grid, LUT
SCATTER_SIGMA_MM = 45.0  # scatter kernel width: scatter is a broad haze
GRID_SCATTER_FACTOR = 0.25  # a grid removes ~3/4 of scatter
STRIPE_FREQ_PER_MM = (4.0, 7.0)  # anti-scatter grid line frequencies (40-70 lines/cm), aliased
RIB_LEVELS = 10  # posterior ribs visible from apex to diaphragm
RIB_GAIN = 0.45  # ribs are thin cortical shells: fainter than their outline suggests
VESSEL_GAIN = 1.6  # vessels overlap in depth (both branches of a pair): markings must beat rib contrast
RIB_DROP_MM = 78.0  # posterior-to-anterior drop of a rib at neutral breath (bucket-handle tilt)
VESSEL_ATTRACTORS = 420  # space-colonisation attractors per lung: sets peripheral vessel density
VESSEL_INFLUENCE_MM = 45.0  # attractor influence radius
VESSEL_KILL_MM = 9.0  # attractor removal distance
VESSEL_STEP_MM = 5.0  # growth step
VESSEL_LEAF_RADIUS_MM = 0.7  # terminal vessel radius still visible at 0.6 mm sampling (faint)
VESSEL_MAX_RADIUS_MM = 7.0  # hilar vessels
PLEURAL_LINE_MM = 10.0  # tissue path of the visceral pleura seen tangentially: a thin bright line
STABLE_TOLERANCE = 0.05  # stable findings change size by at most 5 % (brief allows 10 %)
ZONE_MARGIN = 0.06  # lesion centres stay this fraction of lung height away from zone borders
LARGE_EFFUSION_MARGIN = 0.12  # effusion heights stay 12 % away from the "large" threshold
PRIOR_DAYS = (30, 700)  # prior study 30-700 days before current
BASE_DATE = dt.date(2025, 1, 1)
DEFAULT_MIX = {"change": 0.6, "stable": 0.2, "normal": 0.2}
SAFETY_CASES = ("mirrored", "lateral", "other_person", "devices_only", "ap_vs_pa", "rotated")
DISEASE_KINDS = ("nodule", "mass", "consolidation", "effusion", "pneumothorax")
SIZE_RANGES = {  # brief's size ranges (mm)
    "nodule": (8.0, 30.0),
    "mass": (35.0, 80.0),
    "consolidation": (30.0, 120.0),
    "effusion": (15.0, 150.0),
    "pneumothorax": (5.0, 40.0),
}
SPACINGS = (0.125, 0.139, 0.143, 0.148, 0.15, 0.16, 0.168, 0.175, 0.2)  # real detector pitches
MATRIX_RANGE = (1700, 3000)

NX = int(round((X_RANGE[1] - X_RANGE[0]) / WS))
NY = int(round((Y_RANGE[1] - Y_RANGE[0]) / WS))


def _axis_x() -> np.ndarray:
    return (X_RANGE[0] + (np.arange(NX) + 0.5) * WS).astype(np.float32)


def _axis_y() -> np.ndarray:
    return (Y_RANGE[0] + (np.arange(NY) + 0.5) * WS).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Small geometry helpers
# --------------------------------------------------------------------------------------------
def catmull_rom_closed(pts: np.ndarray, n_per: int = 12) -> np.ndarray:
    """Closed Catmull-Rom curve through landmark points (smooth organ outlines)."""
    p = np.asarray(pts, float)
    t = np.linspace(0, 1, n_per, endpoint=False)[:, None]
    out = []
    for i in range(len(p)):
        p0, p1, p2, p3 = p[i - 1], p[i], p[(i + 1) % len(p)], p[(i + 2) % len(p)]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    return np.concatenate(out)


def fill_polygon(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Scanline fill of a polygon (mm) on the grid given by pixel-centre axes xs, ys."""
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    mask = np.zeros((len(ys), len(xs)), bool)
    rows = np.nonzero((ys >= y1.min()) & (ys <= y1.max()))[0]
    dx = xs[1] - xs[0]
    for r in rows:
        y = ys[r]
        hit = (y1 <= y) != (y2 <= y)
        if not hit.any():
            continue
        xc = np.sort(x1[hit] + (y - y1[hit]) * (x2[hit] - x1[hit]) / (y2[hit] - y1[hit]))
        for a, b in zip(xc[0::2], xc[1::2]):
            c0 = int(np.ceil((a - xs[0]) / dx))
            c1 = int(np.floor((b - xs[0]) / dx))
            if c1 >= c0:
                mask[r, max(c0, 0) : max(c1 + 1, 0)] = True
    return mask


def densify(poly: np.ndarray, radii: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline (mm) with per-vertex radii at roughly `step` spacing."""
    seg = np.diff(poly, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    if cum[-1] <= 0:
        return poly[:1], radii[:1]
    s = np.arange(0.0, cum[-1] + step * 0.5, step)
    return (
        np.stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])], 1),
        np.interp(s, cum, radii),
    )


def render_tubes(
    paths: list[tuple[np.ndarray, np.ndarray]],
    xs: np.ndarray,
    ys: np.ndarray,
    cortex: float = 0.0,
) -> np.ndarray:
    """Projected chord length (mm) of tubes along polylines.

    Uses one Euclidean distance transform with nearest-centreline indices, so crossing tubes
    take the nearer one; `cortex` > 0 hollows the tube so bone edges look brighter.
    """
    out = np.zeros((len(ys), len(xs)), np.float32)
    pts_all, rad_all = [], []
    for poly, radii in paths:
        p, r = densify(np.asarray(poly, float), np.asarray(radii, float), WS * 0.5)
        pts_all.append(p)
        rad_all.append(r)
    if not pts_all:
        return out
    pts = np.concatenate(pts_all)
    rad = np.concatenate(rad_all)
    dx = xs[1] - xs[0]
    rmax = rad.max() + 2 * dx
    c0 = max(int((pts[:, 0].min() - rmax - xs[0]) / dx), 0)
    c1 = min(int((pts[:, 0].max() + rmax - xs[0]) / dx) + 2, len(xs))
    r0 = max(int((pts[:, 1].min() - rmax - ys[0]) / dx), 0)
    r1 = min(int((pts[:, 1].max() + rmax - ys[0]) / dx) + 2, len(ys))
    if c1 <= c0 or r1 <= r0:
        return out
    ci = np.round((pts[:, 0] - xs[c0]) / dx).astype(int)
    ri = np.round((pts[:, 1] - ys[r0]) / dx).astype(int)
    ok = (ci >= 0) & (ci < c1 - c0) & (ri >= 0) & (ri < r1 - r0)
    rimg = np.zeros((r1 - r0, c1 - c0), np.float32)
    np.maximum.at(rimg, (ri[ok], ci[ok]), rad[ok].astype(np.float32))
    dist, idx = ndi.distance_transform_edt(rimg == 0, return_indices=True)
    d = dist.astype(np.float32) * dx
    r = rimg[idx[0], idx[1]]
    chord = 2 * np.sqrt(np.clip(r * r - d * d, 0, None))
    if cortex > 0:
        inner = 0.72 * r
        chord -= cortex * 2 * np.sqrt(np.clip(inner * inner - d * d, 0, None))
    out[r0:r1, c0:c1] = chord
    return out


def box(cx: float, cy: float, half: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Working-grid slices around a point and the local coordinate grids (mm)."""
    c0 = max(int((cx - half - X_RANGE[0]) / WS), 0)
    c1 = min(int((cx + half - X_RANGE[0]) / WS) + 1, NX)
    r0 = max(int((cy - half - Y_RANGE[0]) / WS), 0)
    r1 = min(int((cy + half - Y_RANGE[0]) / WS) + 1, NY)
    c1, r1 = max(c1, c0 + 1), max(r1, r0 + 1)
    xs = X_RANGE[0] + (np.arange(c0, c1) + 0.5) * WS
    ys = Y_RANGE[0] + (np.arange(r0, r1) + 0.5) * WS
    gx, gy = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    return slice(r0, r1), slice(c0, c1), gx, gy


def upsample_linear(img: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Separable linear upsampling by an integer factor (pixel-centre aligned), cropped."""
    def weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) / k - 0.5
        i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
        i1 = np.clip(i0 + 1, 0, n_in - 1)
        w = np.clip(pos - np.floor(pos), 0, 1).astype(np.float32)
        w[pos < 0] = 0.0
        return i0, i1, w

    img = img.astype(np.float32, copy=False)
    j0, j1, v = weights(shape[1], img.shape[1])
    a = img[:, j0]
    a += (img[:, j1] - a) * v  # columns first, on the small array
    i0, i1, w = weights(shape[0], img.shape[0])
    out = a[i0]
    out += (a[i1] - out) * w[:, None]
    return out


def smooth(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a block-averaged copy (scatter, equalisation)."""
    if sigma_px <= 6:
        return ndi.gaussian_filter(img, sigma_px, mode="nearest")
    f = int(sigma_px // 3)
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    small = img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma_px / f, mode="nearest")
    big = upsample_linear(small, f, (img.shape[0], img.shape[1]))
    return big.astype(np.float32)


def power_law_field(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Gaussian random field with a 1/f^beta power spectrum, zero mean, unit std."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2)
    amp[0, 0] = 0.0
    amp *= np.exp(-((f / 0.25) ** 2))  # no energy at the grid's Nyquist
    noise = rng.standard_normal((shape[0], shape[1] // 2 + 1)) + 1j * rng.standard_normal(
        (shape[0], shape[1] // 2 + 1)
    )
    field_ = np.fft.irfft2(noise * amp, s=shape)
    return ((field_ - field_.mean()) / (field_.std() + 1e-9)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# --------------------------------------------------------------------------------------------
# Statistical shape model (landmarks) and thin-plate splines
# --------------------------------------------------------------------------------------------
# name, x (patient left +), y (feet +), depth z (anterior +) in mm
LANDMARKS: list[tuple[str, float, float, float]] = [
    ("r_apex", -70, -140, -10), ("r_apex_lat", -108, -118, -10), ("r_upper_lat", -132, -75, 0),
    ("r_mid_lat", -143, -5, 0), ("r_low_lat", -147, 75, 0), ("r_cp", -140, 130, -20),
    ("r_diaph_lat", -120, 110, 0), ("r_dome", -78, 93, 0), ("r_cardiophrenic", -40, 104, 30),
    ("r_heart", -46, 60, 40), ("r_atrium_top", -42, 18, 30), ("r_svc", -30, -40, 20),
    ("r_upper_med", -24, -100, 10), ("r_apex_med", -40, -130, 0),
    ("l_apex", 68, -134, -10), ("l_apex_lat", 106, -114, -10), ("l_upper_lat", 130, -70, 0),
    ("l_mid_lat", 142, 0, 0), ("l_low_lat", 147, 85, 0), ("l_cp", 140, 142, -20),
    ("l_diaph_lat", 122, 123, 0), ("l_dome", 104, 115, 0), ("l_cardiophrenic", 88, 114, 40),
    ("l_lv", 90, 84, 45), ("l_lv_up", 80, 45, 40), ("l_appendage", 64, 14, 30),
    ("l_pulm_trunk", 56, -14, 20), ("l_aortic_knob", 52, -44, 0), ("l_upper_med", 30, -82, 0),
    ("l_upper_med2", 27, -112, 0), ("l_apex_med", 40, -128, 0),
    ("neck_r", -55, -205, 0), ("neck_l", 55, -205, 0), ("shoulder_r", -185, -160, -20),
    ("shoulder_l", 185, -160, -20), ("wall_r_up", -172, -70, 0), ("wall_l_up", 172, -70, 0),
    ("wall_r_low", -175, 70, 0), ("wall_l_low", 175, 70, 0), ("flank_r", -165, 190, 0),
    ("flank_l", 165, 190, 0), ("carina", 0, -35, 10), ("trachea_top", 0, -190, 10),
]
LM_NAMES = [n for n, *_ in LANDMARKS]
LM = {n: i for i, n in enumerate(LM_NAMES)}
LM_MEAN = np.array([[x, y] for _, x, y, _ in LANDMARKS], float)
LM_DEPTH = np.array([z for *_, z in LANDMARKS], float)
ANCHORS = np.array(
    [[x, y] for x in (-235.0, 0.0, 235.0) for y in (-245.0, 0.0, 245.0) if (x, y) != (0.0, 0.0)]
)
R_LUNG = LM_NAMES[0:14]
L_LUNG = LM_NAMES[14:31]
HEART_LMS = ("r_heart", "r_atrium_top", "l_lv", "l_lv_up", "l_appendage")  # not the
# cardiophrenic angles: moving them against the domes folds the TPS
UPPER_MEDIASTINUM = ("r_svc", "r_upper_med", "r_apex_med", "l_aortic_knob", "l_upper_med",
                     "l_upper_med2", "l_apex_med", "l_pulm_trunk")
DIAPHRAGM = ("r_cp", "r_diaph_lat", "r_dome", "r_cardiophrenic", "l_cp", "l_diaph_lat", "l_dome",
             "l_cardiophrenic")
HEART_CENTRE = np.array([25.0, 65.0])
HILA = {"right": np.array([-58.0, -5.0]), "left": np.array([62.0, -18.0])}
R_FISSURE_Y = -2.0  # canonical right horizontal (minor) fissure level
MODE_SD = {"width": 1.0, "height": 1.0, "heart": 1.0, "asym": 1.0, "mediast": 1.0, "apex": 1.0}


def _mode_displacement(name: str) -> np.ndarray:
    """Displacement (mm) of all landmarks for one unit of a named shape mode."""
    d = np.zeros_like(LM_MEAN)
    body_and_lungs = [i for i, n in enumerate(LM_NAMES) if n not in ("carina", "trachea_top")]
    if name == "width":
        d[body_and_lungs, 0] = 0.06 * LM_MEAN[body_and_lungs, 0]
    elif name == "height":
        d[body_and_lungs, 1] = 0.05 * (LM_MEAN[body_and_lungs, 1] + 35.0)
    elif name == "heart":
        idx = [LM[n] for n in HEART_LMS]
        d[idx] = 0.07 * (LM_MEAN[idx] - HEART_CENTRE)
    elif name == "asym":
        for n in ("r_dome", "r_diaph_lat", "r_cardiophrenic"):
            d[LM[n], 1] = 7.0
    elif name == "mediast":
        idx = [LM[n] for n in UPPER_MEDIASTINUM]
        d[idx, 0] = 0.12 * LM_MEAN[idx, 0]
    elif name == "apex":
        for n in ("r_apex", "l_apex", "r_apex_lat", "l_apex_lat", "shoulder_r", "shoulder_l"):
            d[LM[n], 1] = -8.0
    return d


MODES = {name: _mode_displacement(name) for name in MODE_SD}


@dataclass
class Patient:
    """One body: shape-model coefficients and everything that must stay the same over time."""

    seed: int
    sex: str
    age: int
    coeffs: dict[str, float]
    jitter: np.ndarray
    breast: float
    heart_extra: float = 0.0  # cardiomegaly-like enlargement used for habitus variety only

    def landmarks(self, insp_mm: float, roll_deg: float, ap: bool) -> np.ndarray:
        """Landmarks of this body in one exposure (breath, roll, AP magnification)."""
        p = LM_MEAN + self.jitter
        for name, b in self.coeffs.items():
            p = p + b * MODES[name]
        hi = [LM[n] for n in HEART_LMS]
        p[hi] = HEART_CENTRE + (p[hi] - HEART_CENTRE) * (1 + self.heart_extra)
        if ap:  # AP: heart/mediastinum far from detector (magnified), shallower breath
            p[hi] = HEART_CENTRE + (p[hi] - HEART_CENTRE) * 1.15
            mi = [LM[n] for n in UPPER_MEDIASTINUM]
            p[mi, 0] *= 1.12
            for n in ("r_apex", "l_apex", "r_apex_lat", "l_apex_lat", "shoulder_r", "shoulder_l"):
                p[LM[n], 1] -= 12.0
        for n in DIAPHRAGM:
            p[LM[n], 1] += insp_mm
        p[LM["l_lv"], 1] += 0.5 * insp_mm
        for n in ("r_low_lat", "l_low_lat"):
            p[LM[n], 1] += 0.5 * insp_mm
        lat = [i for i, n in enumerate(LM_NAMES) if "lat" in n or "wall" in n]
        p[lat, 0] *= 1 + 0.02 * insp_mm / 12.0
        th = math.radians(roll_deg)
        p[:, 0] = p[:, 0] * math.cos(th) + LM_DEPTH * math.sin(th)
        return p


def tps_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate spline mapping src points onto dst points; returns (src, coefficients)."""
    n = len(src)
    d = np.hypot(*(src[:, None, :] - src[None, :, :]).transpose(2, 0, 1))
    k = np.where(d > 0, d * d * np.log(d + 1e-12), 0.0) + TPS_REGULARISATION * np.eye(n)
    p = np.hstack([np.ones((n, 1)), src])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n], a[:n, n:], a[n:, :n] = k, p, p.T
    b = np.zeros((n + 3, 2))
    b[:n] = dst
    return src, np.linalg.solve(a, b)


def tps_eval(model: tuple[np.ndarray, np.ndarray], pts: np.ndarray) -> np.ndarray:
    src, coef = model
    d = np.hypot(*(pts[:, None, :] - src[None, :, :]).transpose(2, 0, 1))
    u = np.where(d > 0, d * d * np.log(d + 1e-12), 0.0)
    n = len(src)
    return u @ coef[:n] + coef[n] + pts @ coef[n + 1 :]


def warp_models(lms: np.ndarray) -> tuple[tuple, tuple]:
    """Backward (patient -> canonical) and forward (canonical -> patient) TPS for one image."""
    pat = np.vstack([lms, ANCHORS])
    can = np.vstack([LM_MEAN, ANCHORS])
    return tps_fit(pat, can), tps_fit(can, pat)


def backward_grid(model: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Canonical coordinates (mm) of every working-grid pixel, via a coarse TPS grid."""
    step = TPS_BLOCK * WS
    gx = X_RANGE[0] + (np.arange(-(-NX // TPS_BLOCK)) + 0.5) * step
    gy = Y_RANGE[0] + (np.arange(-(-NY // TPS_BLOCK)) + 0.5) * step
    mx, my = np.meshgrid(gx, gy)
    can = tps_eval(model, np.stack([mx.ravel(), my.ravel()], 1))
    cx = can[:, 0].reshape(mx.shape).astype(np.float32)
    cy = can[:, 1].reshape(mx.shape).astype(np.float32)
    return upsample_linear(cx, TPS_BLOCK, (NY, NX)), upsample_linear(cy, TPS_BLOCK, (NY, NX))


class Sampler:
    """Bilinear sampling of canonical layers at fixed canonical coordinates (zero outside).

    The indices and weights are computed once per image and shared by every layer, which is
    several times cheaper than one map_coordinates call per layer.
    """

    def __init__(self, cx: np.ndarray, cy: np.ndarray) -> None:
        fy = (cy - Y_RANGE[0]) / WS - 0.5
        fx = (cx - X_RANGE[0]) / WS - 0.5
        y0, x0 = np.floor(fy), np.floor(fx)
        self.wy = (fy - y0).astype(np.float32)
        self.wx = (fx - x0).astype(np.float32)
        self.valid = (y0 >= 0) & (y0 < NY - 1) & (x0 >= 0) & (x0 < NX - 1)
        self.idx = (np.clip(y0, 0, NY - 2) * NX + np.clip(x0, 0, NX - 2)).astype(np.int64)

    def __call__(self, layer: np.ndarray) -> np.ndarray:
        flat = layer.ravel()
        a, b = flat[self.idx], flat[self.idx + 1]
        c, d = flat[self.idx + NX], flat[self.idx + NX + 1]
        top = a + (b - a) * self.wx
        out = top + (c + (d - c) * self.wx - top) * self.wy
        return np.where(self.valid, out, 0).astype(np.float32)


def sample(layer: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Sample one canonical layer at canonical mm coordinates."""
    return Sampler(cx, cy)(layer)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Unit-variance, near-Gaussian noise as a sum of four uniform bytes (Irwin-Hall):
    about 3x cheaper than standard_normal at 6-9 Mpixel, indistinguishable after the MTF."""
    b = rng.integers(0, 256, (4, *shape), dtype=np.uint8)
    total = b.sum(axis=0, dtype=np.int16).astype(np.float32)
    total -= np.float32(510.0)
    total *= np.float32(1.0 / math.sqrt(4 * (256**2 - 1) / 12))
    return total


# --------------------------------------------------------------------------------------------
# Canonical template (shared) and per-patient canonical layers (vessels, texture)
# --------------------------------------------------------------------------------------------
def _body_profile(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ky = [-250, -205, -175, -160, -120, -70, 70, 190, 250]
    half_w = np.interp(y, ky, [52, 55, 120, 185, 178, 172, 175, 165, 160])
    half_d = np.interp(y, ky, [55, 58, 80, 95, 100, 105, 110, 110, 110])
    return half_w, half_d


@lru_cache(maxsize=1)
def canonical_template() -> dict[str, np.ndarray]:
    """Body thickness, lung mask and lung air thickness on the canonical (mean-shape) grid."""
    xs, ys = _axis_x(), _axis_y()
    gx, gy = np.meshgrid(xs, ys)
    half_w, half_d = _body_profile(ys)
    body = 2 * half_d[:, None] * np.sqrt(np.clip(1 - (gx / half_w[:, None]) ** 2, 0, 1))
    trachea = (np.abs(gx) < 9) & (gy < -35) & (gy > -250)
    body -= 16.0 * trachea * np.sqrt(np.clip(1 - (gx / 9) ** 2, 0, 1))
    bubble = ((gx - 95) / 36) ** 2 + ((gy - 140) / 20) ** 2
    body -= 35.0 * np.sqrt(np.clip(1 - bubble, 0, 1)) * (gy > 128)
    lungs = np.zeros_like(gx, dtype=bool)
    for names in (R_LUNG, L_LUNG):
        poly = catmull_rom_closed(LM_MEAN[[LM[n] for n in names]])
        lungs |= fill_polygon(poly, xs, ys)
    edt = ndi.distance_transform_edt(lungs) * WS
    air = LUNG_MAX_AIR_MM * np.sqrt(np.clip(edt / LUNG_EDGE_ROUNDING_MM, 0, 1))
    heart_poly = catmull_rom_closed(
        np.array([LM_MEAN[LM[n]] for n in ("r_cardiophrenic", "r_heart", "r_atrium_top")]
                 + [[10, 0]]
                 + [LM_MEAN[LM[n]] for n in ("l_appendage", "l_lv_up", "l_lv", "l_cardiophrenic")]
                 + [[40, 122], [0, 116]])
    )
    heart = fill_polygon(heart_poly, xs, ys)
    retro = ndi.gaussian_filter((heart & (gy > 40)).astype(np.float32), 8 / WS)
    air = air + 0.3 * LUNG_MAX_AIR_MM * retro
    mask = ndi.gaussian_filter(lungs.astype(np.float32), 0.8 / WS)
    air = ndi.gaussian_filter(air.astype(np.float32), 0.8 / WS)
    return {
        "body": ndi.gaussian_filter(body.astype(np.float32), 1.0 / WS),
        "air": air.astype(np.float32),
        "mask": mask.astype(np.float32),
        "heart": heart,
        "edt": edt.astype(np.float32),
    }


def grow_vessel_tree(rng: np.random.Generator, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Space-colonisation vessel tree in canonical space; returns nodes, parents, radii (mm)."""
    tpl = canonical_template()
    sel = (tpl["mask"] > 0.5) & ((_axis_x()[None, :] < 0) == (side == "right"))
    iy, ix = np.nonzero(sel)
    pick = rng.choice(len(iy), VESSEL_ATTRACTORS, replace=False)
    attr = np.stack([_axis_x()[ix[pick]], _axis_y()[iy[pick]]], 1) + rng.uniform(-0.3, 0.3, (VESSEL_ATTRACTORS, 2))
    root = HILA[side]
    nodes = [root, root + np.array([-12.0 if side == "right" else 12.0, 0.0])]
    parents = [-1, 0]
    for _ in range(160):
        pts = np.array(nodes)
        d = np.hypot(*(attr[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        near = d.argmin(1)
        ok = d[np.arange(len(attr)), near] < VESSEL_INFLUENCE_MM
        if not ok.any() or len(attr) == 0:
            break
        vec = attr[ok] - pts[near[ok]]
        vec /= np.linalg.norm(vec, axis=1, keepdims=True) + 1e-9
        acc = np.zeros_like(pts)
        np.add.at(acc, near[ok], vec)
        grow = np.nonzero(np.linalg.norm(acc, axis=1) > 1e-6)[0]
        for g in grow:
            direction = acc[g] / np.linalg.norm(acc[g]) + rng.normal(0, 0.12, 2)
            nodes.append(pts[g] + VESSEL_STEP_MM * direction / np.linalg.norm(direction))
            parents.append(int(g))
        pts = np.array(nodes)
        d = np.hypot(*(attr[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        attr = attr[d.min(1) > VESSEL_KILL_MM]
        if len(attr) == 0:
            break
    parents_a = np.array(parents)
    r3 = np.zeros(len(nodes))
    has_child = np.zeros(len(nodes), bool)
    has_child[parents_a[parents_a >= 0]] = True
    r3[~has_child] = VESSEL_LEAF_RADIUS_MM**3
    for i in range(len(nodes) - 1, 0, -1):  # children always come after parents
        r3[parents_a[i]] += r3[i]
    radii = np.minimum(np.cbrt(r3), VESSEL_MAX_RADIUS_MM)
    return np.array(nodes), parents_a, radii


def patient_layers(patient: Patient) -> dict[str, np.ndarray]:
    """Per-patient canonical layers: vessel chord (mm) and parenchymal texture."""
    rng = np.random.default_rng([patient.seed, 77])
    paths = []
    for side in ("right", "left"):
        nodes, parents, radii = grow_vessel_tree(rng, side)
        for i in range(1, len(nodes)):
            j = parents[i]
            paths.append((np.stack([nodes[j], nodes[i]]), np.array([radii[i], radii[i]])))
    vessels = render_tubes(paths, _axis_x(), _axis_y())
    tpl = canonical_template()
    vessels *= np.clip(tpl["mask"] * 1.4, 0, 1) + 0.25 * (tpl["mask"] < 0.5)
    texture = power_law_field(rng, (NY, NX), TEXTURE_BETA)
    return {"vessels": vessels, "texture": texture}


# --------------------------------------------------------------------------------------------
# Findings and devices
# --------------------------------------------------------------------------------------------
@dataclass
class Finding:
    """One disease finding: where it is (canonical mm), how big in each image, its own shape."""

    kind: str
    side: str
    canon: tuple[float, float]
    size_prior: float | None
    size_current: float | None
    change: str
    shape_seed: int
    fissure: bool = False


@dataclass
class Device:
    kind: str
    side: str
    canon_path: np.ndarray
    radius: float
    density: float


@dataclass
class View:
    """Per-image anatomy state: breath, roll, projection."""

    insp_mm: float
    roll_deg: float
    ap: bool
    lateral: bool = False


@dataclass
class Rendered:
    """Patient-space projected attenuation plus what the labels need."""

    atten: np.ndarray
    lung_extent: dict[str, tuple[float, float]]
    centres: dict[int, tuple[float, float]]
    midline: tuple[float, float]
    probes: dict[int, tuple[float, float]] | None = None


def lung_extent(lms: np.ndarray) -> dict[str, tuple[float, float]]:
    """Apex and costophrenic-angle heights (mm) per lung from this image's landmarks."""
    out = {}
    for side, names in (("right", R_LUNG), ("left", L_LUNG)):
        curve = catmull_rom_closed(lms[[LM[n] for n in names]])
        out[side] = (float(curve[:, 1].min()), float(curve[:, 1].max()))
    return out


def zone_of(y: float, extent: tuple[float, float]) -> str:
    frac = (y - extent[0]) / (extent[1] - extent[0])
    return "upper" if frac < 1 / 3 else ("middle" if frac < 2 / 3 else "lower")


def margin_profile(rng: np.random.Generator, n: int, rough: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random Fourier margin (a Gaussian process on the circle): harmonics 2..n+1."""
    k = np.arange(2, n + 2)
    return k, rng.normal(0, rough / k**0.9), rng.uniform(0, 2 * np.pi, n)


def render_round(f: Finding, size: float, c: tuple[float, float], air: np.ndarray, out: np.ndarray) -> None:
    """Nodule/mass: solid sphere-like density with random lobulated margin (+ spicules)."""
    rng = np.random.default_rng(f.shape_seed)
    big = f.kind == "mass"
    k, a, ph = margin_profile(rng, 6, 0.10 if big else 0.05)
    n_sp = int(rng.integers(4, 10)) if big and rng.random() < 0.5 else 0
    sp_ang = rng.uniform(0, 2 * np.pi, n_sp)
    sp_len = rng.uniform(0.15, 0.35, n_sp) * size
    r0 = size / 2
    half = r0 * 1.6 + (sp_len.max() if n_sp else 0) + 3
    sy, sx, gx, gy = box(c[0], c[1], half)
    dx, dy = gx - c[0], gy - c[1]
    rho = np.hypot(dx, dy)
    th = np.arctan2(dy, dx)
    rr = r0 * (1 + (a[:, None, None] * np.cos(k[:, None, None] * th + ph[:, None, None])).sum(0))
    t = 2 * rr * np.sqrt(np.clip(1 - (rho / rr) ** 2, 0, 1))
    for ang, ln in zip(sp_ang, sp_len):
        dth = np.angle(np.exp(1j * (th - ang)))
        along = np.clip(1 - (rho - rr) / ln, 0, 1) * (rho > rr * 0.8)
        t += 3.0 * along * np.exp(-((dth * rho) ** 2) / (2 * 0.6**2))
    out[sy, sx] += MU_SOFT * (1 - LUNG_TISSUE_FRACTION) * np.minimum(t, air[sy, sx] + 5)


def bronchogram_paths(rng: np.random.Generator, c: tuple[float, float], r: float, side: str) -> list:
    """Short branching air-filled bronchi running from the hilar side through the opacity."""
    hil = HILA[side]
    direction = np.array(c) - hil
    direction /= np.linalg.norm(direction) + 1e-9
    start = np.array(c) - direction * r * 0.7
    paths, stack = [], [(start, direction, 2.2, 0)]
    while stack:
        p, d, rad, lvl = stack.pop()
        ln = r * rng.uniform(0.35, 0.6)
        q = p + d * ln
        paths.append((np.stack([p, q]), np.array([rad, rad * 0.8])))
        if lvl < 2:
            for turn in (-0.45, 0.45):
                ang = turn + rng.normal(0, 0.12)
                rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
                stack.append((q, rot @ d, rad * 0.75, lvl + 1))
    return paths


def render_consolidation(f: Finding, size: float, c: tuple[float, float], ctx: dict, out: np.ndarray) -> float:
    """Airspace filling: fuzzy irregular front, fissure edge, texture, air bronchograms."""
    rng = np.random.default_rng(f.shape_seed)
    k, a, ph = margin_profile(rng, 8, 0.22)
    r0 = size / 2
    sy, sx, gx, gy = box(c[0], c[1], r0 * 1.7 + 8)
    dx, dy = gx - c[0], gy - c[1]
    rho = np.hypot(dx, dy)
    th = np.arctan2(dy, dx)
    rr = r0 * (1 + (a[:, None, None] * np.cos(k[:, None, None] * th + ph[:, None, None])).sum(0))
    fill = sigmoid((rr - rho) / max(2.5, 0.07 * size))
    if f.fissure:  # right upper-lobe pneumonia stops sharply at the minor fissure
        fy = ctx["fissure_y"]
        fill *= sigmoid((fy - gy) / 0.5)
    tex = ctx["texture"][sy, sx]
    fill *= np.clip(0.8 + 0.2 * tex, 0.4, 1.0) * np.clip(ctx["mask"][sy, sx] * 1.3, 0, 1)
    air = ctx["air"][sy, sx]
    delta = MU_SOFT * (1 - LUNG_TISSUE_FRACTION) * air * fill * 0.9
    paths = bronchogram_paths(rng, c, r0, f.side)
    br = render_tubes(paths, gx[0], gy[:, 0])
    delta -= MU_SOFT * (1 - LUNG_TISSUE_FRACTION) * br * 2.5 * np.clip(fill - 0.4, 0, 1)
    out[sy, sx] += delta
    ctx["fill"][sy, sx] = np.maximum(ctx["fill"][sy, sx], fill)
    w = fill.sum()
    return float((gy * fill).sum() / max(w, 1e-6))


def render_effusion(f: Finding, height: float, ctx: dict, lms: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """Upright effusion: fluid under gravity, meniscus rising along the lateral chest wall."""
    rng = np.random.default_rng(f.shape_seed)
    pre = "r_" if f.side == "right" else "l_"
    cp = lms[LM[pre + "cp"]]
    x_wall = lms[LM[pre + "low_lat"], 0]
    ell = rng.uniform(22, 40)
    base = 0.45 * height
    xs, ys = _axis_x(), _axis_y()
    gx, gy = np.meshgrid(xs, ys)
    surface = cp[1] - base - (height - base) * np.exp(-np.abs(x_wall - gx) / ell)
    taper = float(np.clip(0.2 * height, 6.0, 25.0))
    fill = np.clip((gy - surface) / taper + 0.5, 0, 1)
    side_sel = ctx["side_right"] if f.side == "right" else ~ctx["side_right"]
    fill = fill * side_sel * (gy > cp[1] - height * 1.4 - 20)
    out += MU_SOFT * (1 - LUNG_TISSUE_FRACTION) * ctx["air"] * fill
    ctx["fill"] = np.maximum(ctx["fill"], fill)
    w = fill * ctx["mask"]
    cx = float((gx * w).sum() / max(w.sum(), 1e-6))
    cy = float((gy * w).sum() / max(w.sum(), 1e-6))
    return cx, cy


def pneumothorax_retraction(f: Finding, rim: float, lms: np.ndarray, fwd: tuple, gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Patient-space points the retracted lung samples from (scaling about the hilum).

    Points above the hilum are pulled down (apical rim) and points lateral to it are pulled
    medially (lateral rim, tapering to nothing at the costophrenic angle); returns (qx, qy) and
    the volume compression factor of the lung.
    """
    pre = "r_" if f.side == "right" else "l_"
    hx, hy = tps_eval(fwd, HILA[f.side][None, :])[0]
    apex_y = lms[LM[pre + "apex"], 1]
    wall_x = lms[LM[pre + "mid_lat"], 0]
    cp_y = lms[LM[pre + "cp"], 1]
    s_y = 1 - rim / max(hy - apex_y, rim + 20)
    s_x0 = 1 - rim / max(abs(wall_x - hx), rim + 20)
    taper = np.clip(1 - (gy - hy) / max(cp_y - hy, 1.0), 0.0, 1.0)
    s_x = 1 - (1 - s_x0) * np.where(gy < hy, 1.0, taper)
    lateral = (gx - hx) * (1 if f.side == "left" else -1) > 0
    qx = np.where(lateral, hx + (gx - hx) / s_x, gx)
    qy = np.where(gy < hy, hy + (gy - hy) / s_y, gy)
    return qx.astype(np.float32), qy.astype(np.float32), float(min(1 / (s_y * s_x0), 1.6))


def render_ptx(f: Finding, rim: float, lms: np.ndarray, fwd: tuple, ctx: dict, cxg: np.ndarray, cyg: np.ndarray) -> tuple[float, float]:
    """Replace the lung layers on one side by the retracted lung; add the visceral pleural line."""
    gx, gy = ctx["gx"], ctx["gy"]
    qx, qy, comp = pneumothorax_retraction(f, rim, lms, fwd, gx, gy)
    fy, fx = (qy - Y_RANGE[0]) / WS - 0.5, (qx - X_RANGE[0]) / WS - 0.5
    ccx = ndi.map_coordinates(cxg, [fy, fx], order=1, mode="nearest")
    ccy = ndi.map_coordinates(cyg, [fy, fx], order=1, mode="nearest")
    tpl, pl = canonical_template(), ctx["patient_layers"]
    side_sel = ctx["side_right"] if f.side == "right" else ~ctx["side_right"]
    keep_side = (ccx < 0) if f.side == "right" else (ccx >= 0)
    smp = Sampler(ccx, ccy)
    m_r = smp(tpl["mask"]) * keep_side
    for key, layer in (("tissue", tpl["air"]), ("vessels", pl["vessels"]), ("texture", pl["texture"])):
        val = smp(layer) * keep_side
        if key == "tissue":  # denser collapsed lung, never outside the original lung space
            val = np.minimum(val * comp, ctx["air"] * comp)
        ctx[key] = np.where(side_sel, val, ctx[key]).astype(np.float32)
    rim_zone = (ctx["mask"] > 0.5) & (m_r < 0.5) & side_sel
    near = ndi.binary_dilation(rim_zone, iterations=int(3 / WS))
    ridge = 4 * m_r * (1 - m_r) * near
    ctx["extra"] += MU_SOFT * PLEURAL_LINE_MM * ridge
    ctx["mask_lung_tissue"] = np.where(side_sel, m_r, ctx["mask_lung_tissue"])
    w = rim_zone.astype(np.float32)
    pre = "r_" if f.side == "right" else "l_"
    below_clavicle = gy > (lms[LM[pre + "apex"], 1] + ctx["hilum_y"][f.side]) / 2 + 10
    deep = ndi.distance_transform_edt(rim_zone & below_clavicle)  # lateral rim: where to look for it
    r, c = np.unravel_index(int(np.argmax(deep)), deep.shape)
    ctx["probes"][id(f)] = (float(gx[r, c]), float(gy[r, c]))
    return float((gx * w).sum() / max(w.sum(), 1)), float((gy * w).sum() / max(w.sum(), 1))


def lateral_contour_x(lms: np.ndarray, side: str, y: float) -> float:
    pre = "r_" if side == "right" else "l_"
    names = ("apex", "apex_lat", "upper_lat", "mid_lat", "low_lat", "cp")
    pts = np.array([lms[LM[pre + n]] for n in names])
    order = np.argsort(pts[:, 1])
    return float(np.interp(y, pts[order, 1], np.abs(pts[order, 0])))


def render_bones(lms: np.ndarray, view: View) -> np.ndarray:
    """Ribs (3-D hoops), clavicles, spine and scapulae, projected after patient roll (mm bone)."""
    xs, ys = _axis_x(), _axis_y()
    th = math.radians(view.roll_deg)
    post, ant, clav = [], [], []
    for side, sg in (("right", -1), ("left", 1)):
        pre = "r_" if side == "right" else "l_"
        apex_y = lms[LM[pre + "apex"], 1]
        cp_y = lms[LM[pre + "cp"], 1]
        gap = (cp_y - apex_y - 55) / RIB_LEVELS * (1 + 0.04 * view.insp_mm / 12)
        drop = RIB_DROP_MM * (1 - 0.25 * view.insp_mm / 12) * (0.85 if view.ap else 1.0)
        for i in range(RIB_LEVELS):
            y0 = apex_y - 4 + i * gap
            a = lateral_contour_x(lms, side, y0 + drop / 2) + 7
            b = 0.7 * a
            phi = np.linspace(math.asin(min(30 / a, 0.9)), math.pi - math.asin(0.42), 40)
            X = sg * a * np.sin(phi)
            Z = -b * np.cos(phi)
            Y = y0 + drop * (1 - np.cos(phi)) / 2 + 6 * np.sin(phi) ** 2
            x = X * math.cos(th) + Z * math.sin(th)
            half = np.searchsorted(phi, math.pi / 2)
            r_p = (3.9 + 0.05 * i) * (0.55 + 0.45 * np.clip(np.arange(half + 1) / 6.0, 0, 1))  # rib neck
            post.append((np.stack([x[: half + 1], Y[: half + 1]], 1), r_p))
            ant.append((np.stack([x[half:], Y[half:]], 1), np.full(len(x) - half, 5.6)))
        t = np.linspace(0, 1, 30)
        yc = lms[LM[pre + "apex"], 1] + 14 - (18 if view.ap else 0)
        X = sg * (18 + 135 * t)
        Z = 55 - 45 * t
        Y = yc - 22 * t + 7 * np.sin(2 * np.pi * t)
        clav.append((np.stack([X * math.cos(th) + Z * math.sin(th), Y], 1), 6.5 - 1.5 * t))
    bone = RIB_GAIN * render_tubes(post, xs, ys, cortex=0.55)
    bone += 0.35 * RIB_GAIN * render_tubes(ant, xs, ys, cortex=0.4)  # anterior: thin, cartilage
    bone += 0.8 * render_tubes(clav, xs, ys, cortex=0.5)
    bone += render_spine(th) + render_scapulae(view, th)
    return bone


def render_spine(th: float) -> np.ndarray:
    """Vertebral column (posterior, so roll moves it against the heart), pedicles, discs."""
    out = np.zeros((NY, NX), np.float32)
    xs_ = -70 * math.sin(th)
    sy, sx, gx, gy = box(xs_, 0.0, 45.0)
    sy = slice(0, NY)
    gx, gy = np.meshgrid(_axis_x()[sx], _axis_y())
    body = 2 * np.sqrt(np.clip(21.0**2 - (gx - xs_) ** 2, 0, None))
    phase = np.mod(gy + 250, 26.0)
    disc = 1 - 0.4 * np.exp(-((phase - 13.0) ** 2) / 8.0)
    ped = np.zeros_like(gx)
    for off in (-14.0, 14.0):
        e = ((gx - xs_ - off) / 4.5) ** 2 + ((phase - 8.0) / 6.0) ** 2
        ped += np.exp(-((np.sqrt(e) - 1) ** 2) / 0.08) * 4.0
    out[sy, sx] = 0.15 * body * disc + 0.3 * ped
    return out


def render_scapulae(view: View, th: float) -> np.ndarray:
    """Scapular plates: lateral, off the lungs, in PA; over the lateral lungs in AP."""
    out = np.zeros((NY, NX), np.float32)
    shift = -60 * math.sin(th)
    for sg in (-1, 1):
        if view.ap:
            tri = np.array([[sg * 95, -150], [sg * 182, -155], [sg * 120, 25]], float)
        else:
            tri = np.array([[sg * 150, -150], [sg * 205, -155], [sg * 180, 30]], float)
        tri[:, 0] += shift
        sy, sx, gx, gy = box(float(tri[:, 0].mean()), -60.0, 120.0)
        plate = fill_polygon(tri, gx[0], gy[:, 0]).astype(np.float32)
        plate = ndi.gaussian_filter(plate, 1.0 / WS) * 4.0
        border = render_tubes([(tri[[1, 2]], np.array([3.5, 3.0]))], gx[0], gy[:, 0], cortex=0.5)
        out[sy, sx] += plate + border
    return out


def render_breasts(patient: Patient, lms: np.ndarray, gx: np.ndarray, gy: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Smooth soft-tissue density over the lower chest, sharp inferior border."""
    out = np.zeros_like(gx)
    if patient.breast <= 0:
        return out
    for side, sg in (("right", -1), ("left", 1)):
        pre = "r_" if side == "right" else "l_"
        yc = lms[LM[pre + "cp"], 1] - 45
        a, b = 95 * patient.breast, 78 * patient.breast
        r2 = ((gx - sg * 85) / a) ** 2 + ((gy - yc) / b) ** 2
        t = 48 * patient.breast * np.sqrt(np.clip(1 - r2, 0, 1))
        out += t * sigmoid((gy - yc + 0.3 * b) / 15.0) * np.clip(body / 40.0, 0, 1)
    return out


GLYPHS = {
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "B": ["11110", "10001", "10001", "11110", "10001", "10001", "11110"],
    "C": ["01111", "10000", "10000", "10000", "10000", "10000", "01111"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "H": ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
    "I": ["11111", "00100", "00100", "00100", "00100", "00100", "11111"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "N": ["10001", "11001", "10101", "10011", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "U": ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
    "X": ["10001", "10001", "01010", "00100", "01010", "10001", "10001"],
    " ": ["00000"] * 7,
}


def text_bitmap(text: str) -> np.ndarray:
    """5x7 bitmap font with one column of spacing (burned-in annotation and lead markers)."""
    cols = []
    for ch in text.upper():
        g = np.array([[c == "1" for c in row] for row in GLYPHS.get(ch, GLYPHS[" "])])
        cols += [g, np.zeros((7, 1), bool)]
    return np.hstack(cols) if cols else np.zeros((7, 1), bool)


def stamp_marker(atten: np.ndarray, letter: str, x_mm: float, y_mm: float) -> None:
    """A lead letter on the cassette: a physical object, so it mirrors with the image."""
    bm = text_bitmap(letter)
    px = max(int(round(2.0 / WS)), 1)
    big = np.kron(bm, np.ones((px, px), bool))
    c0 = int((x_mm - X_RANGE[0]) / WS)
    r0 = int((y_mm - Y_RANGE[0]) / WS)
    h, w = big.shape
    atten[r0 : r0 + h, c0 : c0 + w] += 5.0 * big


def render_devices(devices: list[Device], fwd: tuple) -> np.ndarray:
    """Tubes, lines, drains and ECG leads: thin, very bright, smooth (forward-warped paths)."""
    out = np.zeros((NY, NX), np.float32)
    xs, ys = _axis_x(), _axis_y()
    for d in devices:
        path = tps_eval(fwd, d.canon_path)
        if len(path) > 1:
            path, _ = densify(path, np.zeros(len(path)), 3.0)
            path = ndi.gaussian_filter1d(path, 2.0, axis=0, mode="nearest")
        radii = np.full(len(path), d.radius)
        out += MU_SOFT * d.density * render_tubes([(path, radii)], xs, ys)
        if d.kind in ("et_tube", "ng_tube", "chest_drain"):  # radiopaque stripe in the wall
            stripe = path + np.array([d.radius * 0.6, 0.0])
            out += MU_SOFT * 12.0 * render_tubes([(stripe, np.full(len(path), 0.7))], xs, ys)
    return out


def image_context(patient: Patient, layers: dict, view: View) -> tuple[dict, np.ndarray, tuple, tuple]:
    """Warp the canonical layers to this exposure's anatomy (TPS from this breath/roll)."""
    lms = patient.landmarks(view.insp_mm, view.roll_deg, view.ap)
    back, fwd = warp_models(lms)
    cxg, cyg = backward_grid(back)
    tpl = canonical_template()
    gx, gy = np.meshgrid(_axis_x(), _axis_y())
    smp = Sampler(cxg, cyg)
    ctx = {
        "gx": gx, "gy": gy, "patient_layers": layers,
        "body": smp(tpl["body"]), "air": smp(tpl["air"]), "mask": smp(tpl["mask"]),
        "vessels": smp(layers["vessels"]), "texture": smp(layers["texture"]),
        "side_right": cxg < 0, "fill": np.zeros((NY, NX), np.float32),
        "extra": np.zeros((NY, NX), np.float32), "probes": {},
        "fissure_y": float(tps_eval(fwd, np.array([[-100.0, R_FISSURE_Y]]))[0, 1]),
        "hilum_y": {side: float(tps_eval(fwd, h[None, :])[0, 1]) for side, h in HILA.items()},
    }
    ctx["tissue"] = ctx["air"].copy()
    ctx["mask_lung_tissue"] = ctx["mask"].copy()
    return ctx, lms, (back, fwd), (cxg, cyg)


def render_frontal(patient: Patient, layers: dict, view: View, items: list[tuple[int, Finding, float]],
                   devices: list[Device], marker: str) -> Rendered:
    """Projected attenuation (line integral of mu) of one frontal exposure in patient space."""
    ctx, lms, (back, fwd), (cxg, cyg) = image_context(patient, layers, view)
    lesions = np.zeros((NY, NX), np.float32)
    centres: dict[int, tuple[float, float]] = {}
    for idx, f, size in items:
        if f.kind == "pneumothorax":
            centres[idx] = render_ptx(f, size, lms, fwd, ctx, cxg, cyg)
    for idx, f, size in items:
        c = tuple(tps_eval(fwd, np.array([f.canon]))[0])
        if f.kind in ("nodule", "mass"):
            render_round(f, size, c, ctx["air"], lesions)
            centres[idx] = c
        elif f.kind == "consolidation":
            centres[idx] = (c[0], render_consolidation(f, size, c, ctx, lesions))
        elif f.kind == "effusion":
            centres[idx] = render_effusion(f, size, ctx, lms, lesions)
    solid = 1 - ctx["fill"]
    atten = MU_SOFT * (ctx["body"] - ctx["air"])
    atten += MU_SOFT * LUNG_TISSUE_FRACTION * ctx["tissue"] * (1 + TEXTURE_GAIN * ctx["texture"])
    atten += MU_SOFT * (1 - LUNG_TISSUE_FRACTION) * VESSEL_GAIN * ctx["vessels"] * solid
    atten += lesions + ctx["extra"]
    atten += MU_BONE * render_bones(lms, view)
    atten += MU_SOFT * render_breasts(patient, lms, ctx["gx"], ctx["gy"], ctx["body"])
    atten += render_devices(devices, fwd)
    sg = -1 if marker == "R" else 1
    stamp_marker(atten, marker, sg * 200 - (8 if sg > 0 else 0), -215.0)
    mid = tuple(tps_eval(fwd, np.array([[0.0, -35.0]]))[0])
    probes = {idx: ctx["probes"].get(id(f), centres[idx]) for idx, f, _ in items}
    return Rendered(np.clip(atten, 0, None).astype(np.float32), lung_extent(lms), centres, mid, probes)


def render_lateral(patient: Patient, view: View, marker: str) -> Rendered:
    """Lateral chest (anterior towards image left): spine posterior, heart anterior, lungs overlap."""
    xs, ys = _axis_x(), _axis_y()
    gx, gy = np.meshgrid(xs, ys)
    hd = 105 * (1 + 0.05 * patient.coeffs["width"])  # half antero-posterior depth
    hw = 165 * (1 + 0.06 * patient.coeffs["width"])  # half width: the path length through the body
    top = -140 * (1 + 0.05 * patient.coeffs["height"])
    dia = 100 + view.insp_mm
    outline = np.array([[-0.05 * hd, top], [0.45 * hd, top + 15], [0.62 * hd, top + 80], [0.66 * hd, dia + 20],
                        [0.6 * hd, dia + 45], [0.2 * hd, dia + 5], [-0.3 * hd, dia - 10], [-0.78 * hd, dia - 25],
                        [-0.85 * hd, 20], [-0.8 * hd, top + 70], [-0.45 * hd, top + 20]])
    inside = fill_polygon(catmull_rom_closed(outline), xs, ys)
    depth = np.sqrt(np.clip(ndi.distance_transform_edt(inside) * WS / 45.0, 0, 1))  # rounded lungs
    lung = ndi.gaussian_filter(depth.astype(np.float32), 1.5 / WS)
    heart = np.clip(1 - ((gx + 0.3 * hd) / 70) ** 2 - ((gy - dia + 40) / 66) ** 2, 0, 1)
    air = 2 * LUNG_MAX_AIR_MM * 0.85 * lung * (1 - 0.6 * heart)  # the lungs wrap round the heart
    body = 2 * hw * np.sqrt(np.clip(1 - (gx / hd) ** 2, 0, 1)) * sigmoid((gy + 205) / 3)
    atten = MU_SOFT * (body - air * (1 - LUNG_TISSUE_FRACTION))
    phase = np.mod(gy + 250, 26.0)
    verteb = (np.abs(gx - hd * 0.78) < 16) * (1 - 0.6 * np.exp(-((phase - 13) ** 2) / 6))
    atten += MU_BONE * 22 * ndi.gaussian_filter(verteb.astype(np.float32), 0.8 / WS)
    sternum = np.exp(-((gx + hd * 0.92 - 0.05 * (gy + 100)) ** 2) / 30) * (gy > -125) * (gy < 60)
    atten += MU_BONE * 8 * sternum
    stamp_marker(atten, marker, -200.0, -215.0)
    return Rendered(np.clip(atten, 0, None).astype(np.float32), {}, {}, (0.0, -35.0))


# --------------------------------------------------------------------------------------------
# Acquisition: detector physics, processing, DICOM
# --------------------------------------------------------------------------------------------
@dataclass
class Acquisition:
    """Everything the site, the device and the radiographer change between exposures."""

    modality: str
    spacing: float
    rows: int
    cols: int
    view: str
    rotation_deg: float
    scale: float
    shift: tuple[float, float]
    mirrored: bool
    quanta_per_mm2: float
    electronic_noise: float
    grid: bool
    grid_freq: float
    grid_amp: float
    grid_phase: float
    mtf_sigma: float
    glare_frac: float
    glare_sigma: float
    scatter_frac: float
    eq_strength: float
    eq_sigma: float
    usm_gain: float
    usm_sigma: float
    lut: str
    lut_gain: float
    lut_centre: float
    bits: int
    photometric: str
    transfer: str
    collimation: tuple[float, float, float, float] | None
    text: str | None
    marker: str
    kvp: int
    window_jitter: float

    def describe(self) -> str:
        parts = [f"{self.modality} {self.spacing:.3f}mm {self.rows}x{self.cols} {self.view}",
                 self.photometric, {"explicit": "explicit LE", "deflate": "deflated", "rle": "RLE"}[self.transfer],
                 f"{self.bits}-bit", f"LUT {self.lut}", f"USM {self.usm_gain:.1f}", f"EQ {self.eq_strength:.2f}"]
        if self.grid:
            parts.append(f"grid lines {self.grid_freq:.1f}/mm")
        if abs(self.rotation_deg) > 0.05:
            parts.append(f"rot {self.rotation_deg:+.1f}deg")
        parts.append(f"scale {self.scale:.3f}")
        if self.mirrored:
            parts.append("stored mirrored (R\\F)")
        if self.collimation:
            parts.append("collimated")
        if self.text:
            parts.append(f"burned-in '{self.text}'")
        return ", ".join(parts)


def detector_to_patient(acq: Acquisition, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stored pixel (row, col) -> patient mm (x to patient's left, y to feet)."""
    u = (c - (acq.cols - 1) / 2) * acq.spacing / acq.scale
    v = (r - (acq.rows - 1) / 2) * acq.spacing / acq.scale
    a = math.radians(acq.rotation_deg)
    x = u * math.cos(a) - v * math.sin(a) + acq.shift[0]
    y = u * math.sin(a) + v * math.cos(a) + acq.shift[1]
    return (-x if acq.mirrored else x), y


def patient_to_detector(acq: Acquisition, x: float, y: float) -> tuple[float, float]:
    """Patient mm -> stored pixel (row, col); inverse of detector_to_patient."""
    x = -x if acq.mirrored else x
    x, y = x - acq.shift[0], y - acq.shift[1]
    a = math.radians(acq.rotation_deg)
    u = x * math.cos(a) + y * math.sin(a)
    v = -x * math.sin(a) + y * math.cos(a)
    return (v * acq.scale / acq.spacing + (acq.rows - 1) / 2,
            u * acq.scale / acq.spacing + (acq.cols - 1) / 2)


def expose_coarse(atten: np.ndarray, acq: Acquisition, k: int) -> np.ndarray:
    """Measured log-attenuation on the coarse detector grid: scatter, MTF with glare, log."""
    shape = (-(-acq.rows // k), -(-acq.cols // k))
    rr = ((np.arange(shape[0]) + 0.5) * k - 0.5).astype(np.float32)
    cc = ((np.arange(shape[1]) + 0.5) * k - 0.5).astype(np.float32)
    r2, c2 = np.meshgrid(rr, cc, indexing="ij")
    x, y = detector_to_patient(acq, r2, c2)
    p = ndi.map_coordinates(atten, [(y - Y_RANGE[0]) / WS - 0.5, (x - X_RANGE[0]) / WS - 0.5],
                            order=1, mode="constant", cval=0.0).astype(np.float32)
    sc = acq.spacing * k
    if acq.collimation:
        top, bottom, left, right = acq.collimation
        vv = rr * acq.spacing
        uu = cc * acq.spacing
        inside = (sigmoid((vv - top) / 0.8)[:, None] * sigmoid((acq.rows * acq.spacing - bottom - vv) / 0.8)[:, None]
                  * sigmoid((uu - left) / 0.8)[None, :] * sigmoid((acq.cols * acq.spacing - right - uu) / 0.8)[None, :])
        p += 6.0 * (1 - inside).astype(np.float32)
    inten = np.exp(-p)
    scatter = acq.scatter_frac * (GRID_SCATTER_FACTOR if acq.grid else 1.0)
    inten = (inten + scatter * smooth(inten, SCATTER_SIGMA_MM / sc)) / (1 + scatter)
    inten = (1 - acq.glare_frac) * ndi.gaussian_filter(inten, acq.mtf_sigma / sc) + acq.glare_frac * smooth(
        inten, acq.glare_sigma / sc)
    return -np.log(np.clip(inten, 1e-6, None)).astype(np.float32)


def process_image(atten: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Detector + processing chain to stored pixel values (uint16, photometric applied)."""
    k = max(1, int(round(COARSE_DETECTOR_MM / acq.spacing)))
    pm = expose_coarse(atten, acq, k)
    sc = acq.spacing * k
    quanta = acq.quanta_per_mm2 * acq.spacing**2
    signal = np.exp(-pm) * quanta
    sig = np.sqrt(signal + acq.electronic_noise**2) / signal  # relative noise = noise in log domain
    corr = acq.usm_gain * (pm - ndi.gaussian_filter(pm, acq.usm_sigma / sc))
    corr -= acq.eq_strength * (smooth(pm, acq.eq_sigma / sc) - float(pm.mean()))
    coarse_noise = sig * 0.45 * rng.standard_normal(pm.shape, dtype=np.float32) / math.sqrt(k)
    proc_c = pm + corr
    lo, hi = np.percentile(proc_c[::2, ::2], [0.5, 99.5])
    full = upsample_linear(proc_c + coarse_noise, k, (acq.rows, acq.cols))
    sig_full = np.repeat(np.repeat(sig * (0.9 * (1 + 0.5 * acq.usm_gain)), k, 0), k, 1)
    white = gaussian_noise(rng, (acq.rows, acq.cols))
    white *= sig_full[: acq.rows, : acq.cols]
    full += white
    if acq.grid:
        pos = np.arange(acq.cols, dtype=np.float32) * acq.spacing
        full += (acq.grid_amp * np.cos(2 * np.pi * acq.grid_freq * pos + acq.grid_phase)).astype(np.float32)[None, :]
    maxv = (1 << acq.bits) - 1
    table = lut_table(acq, maxv)
    idx = (full - lo) * np.float32(LUT_STEPS / max(hi - lo, 1e-3)) + np.float32(LUT_STEPS // 4)
    np.clip(idx, 0, len(table) - 1, out=idx)
    out = table[idx.astype(np.int32)]
    if acq.text:
        burn_text(out, acq.text, acq, maxv)
    if acq.photometric == "MONOCHROME1":
        out = (maxv - out).astype(np.uint16)
    return out


LUT_STEPS = 4096  # LUT resolution over the [lo, hi] range of processed log-exposure


def lut_table(acq: Acquisition, maxv: int) -> np.ndarray:
    """Display LUT (sigmoid or gamma) tabulated over z in [-0.25, 1.25] of the [lo, hi] range."""
    z = (np.arange(LUT_STEPS * 3 // 2, dtype=np.float64) - LUT_STEPS // 4) / LUT_STEPS
    if acq.lut == "sigmoid":
        g, c0 = acq.lut_gain, acq.lut_centre
        s0, s1 = sigmoid(np.float64(-g * c0)), sigmoid(np.float64(g * (1 - c0)))
        y = (sigmoid(g * (z - c0)) - s0) / (s1 - s0)
    else:
        y = np.clip(z, 0, 1) ** acq.lut_gain
    return np.clip(y * maxv + 0.5, 0, maxv).astype(np.uint16)


def burn_text(img: np.ndarray, text: str, acq: Acquisition, maxv: int) -> None:
    """Software annotation burned into the pixels (display white), after mirroring: readable."""
    bm = text_bitmap(text)
    px = max(int(round(2.2 / acq.spacing)), 1)
    big = np.kron(bm, np.ones((px, px), bool))
    r0 = int(12 / acq.spacing)
    c0 = acq.cols - big.shape[1] - int(15 / acq.spacing)
    h, w = big.shape
    region = img[r0 : r0 + h, c0 : c0 + w]
    region[big[: region.shape[0], : region.shape[1]]] = maxv


def rle_encode_frame(pixels: np.ndarray) -> bytes:
    """DICOM RLE Lossless frame: one segment per byte plane, rows as PackBits literal runs."""
    rows, cols = pixels.shape
    planes = [(pixels >> 8).astype(np.uint8), (pixels & 0xFF).astype(np.uint8)]
    segments = []
    for plane in planes:
        nfull, rem = divmod(cols, 128)
        parts = []
        if nfull:
            full = plane[:, : nfull * 128].reshape(rows, nfull, 128)
            hdr = np.full((rows, nfull, 1), 127, np.uint8)
            parts.append(np.concatenate([hdr, full], axis=2).reshape(rows, -1))
        if rem:
            parts.append(np.concatenate([np.full((rows, 1), rem - 1, np.uint8), plane[:, nfull * 128 :]], axis=1))
        seg = np.concatenate(parts, axis=1).tobytes()
        if len(seg) % 2:
            seg += b"\x00"
        segments.append(seg)
    header = struct.pack("<16I", len(segments), 64, 64 + len(segments[0]), *([0] * 13))
    return header + b"".join(segments)


CR_SOP = "1.2.840.10008.5.1.4.1.1.1"
DX_SOP = "1.2.840.10008.5.1.4.1.1.1.1"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def build_dataset(pixels: np.ndarray, acq: Acquisition, meta: dict[str, str]) -> Dataset:
    """Part-10 dataset (CR Image Storage or DX For Presentation) for one exposure."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = CR_SOP if acq.modality == "CR" else DX_SOP
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = meta["sop"]
    ds.file_meta.TransferSyntaxUID = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless,
                                      "deflate": DeflatedExplicitVRLittleEndian}[acq.transfer]
    ds.file_meta.ImplementationClassUID = generate_uid(entropy_srcs=[GENERATOR, "impl"])
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta["sop"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = meta["date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = meta["time"]
    ds.AccessionNumber = meta["accession"]
    ds.Modality = acq.modality
    ds.Manufacturer = "SYNTHETIC-SSMFIELD"
    ds.InstitutionName = "Synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CHEST " + ("PORTABLE" if acq.view == "AP" else acq.view)
    ds.SeriesDescription = f"Chest {acq.view}"
    ds.PatientName, ds.PatientID = meta["name"], meta["patient_id"]
    ds.PatientBirthDate, ds.PatientSex = meta["birth"], meta["sex"]
    ds.BodyPartExamined = "CHEST"
    ds.KVP = str(acq.kvp)
    ds.ViewPosition = acq.view
    ds.PatientPosition = ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = meta["study"], meta["series"]
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.PatientOrientation = meta["orientation"].split("\\")
    ds.ImagerPixelSpacing = [f"{acq.spacing:.4f}", f"{acq.spacing:.4f}"]
    ds.PixelSpacing = [f"{acq.spacing:.4f}", f"{acq.spacing:.4f}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = acq.photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, acq.bits, acq.bits - 1
    ds.PixelRepresentation = 0
    maxv = (1 << acq.bits) - 1
    ds.WindowCenter = f"{maxv / 2 * (1 + acq.window_jitter):.1f}"
    ds.WindowWidth = f"{maxv * (0.92 + abs(acq.window_jitter)):.1f}"
    ds.WindowCenterWidthExplanation = "SSMFIELD DEFAULT"
    ds.BurnedInAnnotation = "YES" if acq.text else "NO"
    ds.LossyImageCompression = "00"
    if acq.modality == "DX":
        add_dx_attributes(ds, acq)
    if acq.transfer == "rle":
        ds.PixelData = encapsulate([rle_encode_frame(pixels)])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
    return ds


def add_dx_attributes(ds: Dataset, acq: Acquisition) -> None:
    """Attributes the DX (For Presentation) IOD requires beyond CR."""
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = [_code("T-D3000", "SRT", "Chest")]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if acq.photometric == "MONOCHROME1" else 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.PresentationLUTShape = "INVERSE" if acq.photometric == "MONOCHROME1" else "IDENTITY"
    ds.DetectorType = "SCINTILLATOR"
    ds.DetectorConfiguration = "AREA"
    ds.AcquisitionContextSequence = []
    ds.ViewCodeSequence = [_code("R-10214" if acq.view == "AP" else "R-10206", "SRT",
                                 "antero-posterior" if acq.view == "AP" else "postero-anterior")]
    ds.PositionerType = "NONE"
    ds.QualityControlImage = "NO"


def write_dicom(path: Path, ds: Dataset) -> None:
    """Write Part-10; deflated files are compressed here at zlib level 1 (pydicom uses 6: slow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
        ds.save_as(path, enforce_file_format=True)
        return
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = comp.compress(body.getvalue()) + comp.flush()
    if len(data) % 2:
        data += b"\x00"
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    path.write_bytes(b"\x00" * 128 + b"DICM" + head.getvalue() + data)


# --------------------------------------------------------------------------------------------
# Planning a pair
# --------------------------------------------------------------------------------------------
def make_patient(rng: np.random.Generator, seed: int) -> Patient:
    sex = "F" if rng.random() < 0.5 else "M"
    coeffs = {k: float(np.clip(rng.normal(0, MODE_SD[k]), -2.2, 2.2)) for k in MODE_SD}
    if sex == "F":
        coeffs["width"] -= 0.6
        coeffs["height"] -= 0.4
    return Patient(seed=seed, sex=sex, age=int(rng.integers(25, 90)), coeffs=coeffs,
                   jitter=np.vstack([rng.normal(0, 1.5, (len(LM_MEAN) - 2, 2)), np.zeros((2, 2))]),
                   breast=float(rng.uniform(0.7, 1.25)) if sex == "F" else 0.0,
                   heart_extra=float(rng.uniform(-0.05, 0.12)))


def make_view(rng: np.random.Generator, ap: bool, lateral: bool = False) -> View:
    if ap:
        return View(insp_mm=float(rng.uniform(-12, 0)), roll_deg=float(rng.uniform(-4, 4)), ap=True)
    return View(insp_mm=float(np.clip(rng.normal(0, 5), -12, 12)), roll_deg=float(rng.uniform(-2.5, 2.5)),
                ap=False, lateral=lateral)


def make_acquisition(rng: np.random.Generator, view: str) -> Acquisition:
    """One site's detector, processing and the radiographer's choices."""
    portable = view == "AP"
    modality = "CR" if rng.random() < (0.6 if portable else 0.4) else "DX"
    spacing = float(rng.choice(SPACINGS))
    width = rng.uniform(355, 430)
    height = width * rng.uniform(0.95, 1.12)
    cols = int(np.clip(round(width / spacing), *MATRIX_RANGE))
    rows = int(np.clip(round(height / spacing), *MATRIX_RANGE))
    cr = modality == "CR"
    coll = tuple(float(v) for v in rng.uniform(4, 22, 4)) if rng.random() < 0.4 else None
    text = (str(rng.choice(["PORTABLE AP", "AP SUPINE", "PORTABLE"])) if portable
            else ("PA ERECT" if rng.random() < 0.2 else None))
    return Acquisition(
        modality=modality, spacing=spacing, rows=rows, cols=cols, view=view,
        rotation_deg=float(rng.uniform(-2.5, 2.5)), scale=float(rng.uniform(0.95, 1.05)),
        shift=(float(rng.normal(0, 8)), float(-8 + rng.normal(0, 8))), mirrored=False,
        quanta_per_mm2=float(rng.uniform(4e5, 1e6) if portable else rng.uniform(1e6, 3e6)),
        electronic_noise=float(rng.uniform(2, 8)),
        grid=bool(rng.random() < (0.6 if portable else 0.45)),
        grid_freq=float(rng.uniform(*STRIPE_FREQ_PER_MM)), grid_amp=float(rng.uniform(0.008, 0.025)),
        grid_phase=float(rng.uniform(0, 2 * np.pi)),
        mtf_sigma=float(rng.uniform(0.2, 0.3) if cr else rng.uniform(0.1, 0.18)),
        glare_frac=float(rng.uniform(0.1, 0.2) if cr else rng.uniform(0.04, 0.1)),
        glare_sigma=float(rng.uniform(2, 4) if cr else rng.uniform(1, 2)),
        scatter_frac=float(rng.uniform(0.6, 1.0) if portable else rng.uniform(0.35, 0.7)),
        eq_strength=float(rng.uniform(0, 0.5)), eq_sigma=float(rng.uniform(18, 40)),
        usm_gain=float(rng.uniform(0.2, 1.5)), usm_sigma=float(rng.uniform(1.5, 4)),
        lut=str(rng.choice(["sigmoid", "gamma"])), lut_gain=0.0, lut_centre=float(rng.uniform(0.45, 0.6)),
        bits=int(rng.integers(12, 16)),
        photometric="MONOCHROME1" if rng.random() < (0.6 if cr else 0.2) else "MONOCHROME2",
        transfer=str(rng.choice(["explicit", "rle", "deflate"], p=[0.6, 0.25, 0.15])),
        collimation=coll, text=text, marker=str(rng.choice(["R", "L"])),
        kvp=int(rng.integers(80, 96) if portable else rng.integers(110, 126)),
        window_jitter=float(rng.uniform(-0.05, 0.05)),
    )


def finalize_lut(acq: Acquisition, rng: np.random.Generator) -> Acquisition:
    acq.lut_gain = float(rng.uniform(3.5, 6.0) if acq.lut == "sigmoid" else rng.uniform(0.8, 1.3))
    return acq


def sizes_for(rng: np.random.Generator, kind: str, change: str) -> tuple[float | None, float | None]:
    """Prior/current sizes (mm) for a change; changes are clear (>= x1.4), stable within 5 %."""
    lo, hi = SIZE_RANGES[kind]
    if change in ("new", "resolved"):
        s = float(rng.uniform(lo + 0.15 * (hi - lo), hi))
        return (None, s) if change == "new" else (s, None)
    if change == "stable":
        s = float(rng.uniform(lo + 0.1 * (hi - lo), hi))
        return s, float(s * (1 + rng.uniform(-STABLE_TOLERANCE, STABLE_TOLERANCE)))
    small = float(rng.uniform(lo, max(lo, hi / 1.6)))
    big = float(min(hi, small * rng.uniform(1.45, 2.2), max(small + 8, small * 1.45)))
    big = max(big, min(hi, small * 1.45))
    return (small, big) if change == "worsened" else (big, small)


def canonical_position(rng: np.random.Generator, kind: str, side: str, size: float) -> tuple[tuple[float, float], bool]:
    """A centre inside the canonical lung, mid-zone, with room for the lesion."""
    tpl = canonical_template()
    ext = lung_extent(LM_MEAN)[side]
    zone = int(rng.integers(0, 3))
    frac = (zone + 0.5) / 3 + rng.uniform(-1, 1) * (1 / 6 - ZONE_MARGIN)
    y = ext[0] + frac * (ext[1] - ext[0])
    row = int((y - Y_RANGE[0]) / WS)
    edt = tpl["edt"][row] * ((_axis_x() < 0) if side == "right" else (_axis_x() >= 0))
    need = min(size / 2 * 0.8, 32.0) + 6
    cand = np.nonzero(edt >= need)[0]
    if len(cand) == 0:
        cand = np.nonzero(edt >= edt.max() * 0.8)[0]
    x = float(_axis_x()[int(rng.choice(cand))])
    fissure = kind == "consolidation" and side == "right" and y < R_FISSURE_Y - size * 0.3 and rng.random() < 0.6
    return (x, y), bool(fissure)


def make_finding(rng: np.random.Generator, kind: str, change: str, taken: set) -> Finding | None:
    """One finding per lung at most: two findings on one side would share a side/zone answer
    and one could mask the other's change."""
    free = [s for s in ("right", "left") if s not in taken]
    if not free:
        return None
    side = str(rng.choice(free))
    taken.add(side)
    sp, scur = sizes_for(rng, kind, change)
    canon, fissure = canonical_position(rng, kind, side, max(sp or 0, scur or 0))
    return Finding(kind, side, canon, sp, scur, change, int(rng.integers(1 << 31)), fissure)


def plan_findings(rng: np.random.Generator, case: str) -> list[Finding]:
    """Disease findings for a case (devices are planned separately)."""
    changes = ("new", "worsened", "improved", "resolved")
    plan: list[tuple[str, str]] = []
    if case in ("change", "mirrored", "ap_vs_pa", "rotated"):
        n = 1 if rng.random() < 0.7 else 2
        for _ in range(n):
            kinds = DISEASE_KINDS
            if case == "ap_vs_pa" and rng.random() < 0.5:
                kinds = ("pneumothorax", "effusion")
            plan.append((str(rng.choice(kinds)), str(rng.choice(changes))))
        if rng.random() < 0.3:
            plan.append((str(rng.choice(DISEASE_KINDS)), "stable"))
    elif case == "stable":
        plan = [(str(rng.choice(DISEASE_KINDS)), "stable") for _ in range(int(rng.integers(1, 3)))]
    elif case == "devices_only" and rng.random() < 0.4:
        plan = [(str(rng.choice(DISEASE_KINDS)), "stable")]
    taken: set = set()
    found = [make_finding(rng, k, c, taken) for k, c in plan]
    return [f for f in found if f is not None]


DEVICE_LIBRARY: dict[str, tuple[str, float, float, list[list[float]]]] = {
    # kind: (side label, radius mm, density rel. water, canonical path)
    "et_tube": ("bilateral", 3.5, 0.6, [[2, -250], [1, -170], [0, -95]]),
    "ng_tube": ("left", 2.0, 0.8, [[-4, -250], [2, -120], [8, 20], [14, 110], [60, 150], [100, 140]]),
    "central_line_right": ("right", 1.1, 6.0, [[-70, -215], [-40, -140], [-24, -70], [-18, -10]]),
    "central_line_left": ("left", 1.1, 6.0, [[150, -150], [80, -128], [20, -100], [-15, -35]]),
    "chest_drain_right": ("right", 3.8, 0.9, [[-178, 40], [-140, 20], [-115, -60], [-85, -110]]),
    "chest_drain_left": ("left", 3.8, 0.9, [[178, 40], [140, 20], [115, -60], [85, -110]]),
    "ecg_leads": ("bilateral", 5.0, 8.0, [[-120, -165]]),
}


def make_devices(rng: np.random.Generator, kinds: list[str], jitter: float) -> list[Device]:
    out = []
    for k in kinds:
        side, radius, dens, path = DEVICE_LIBRARY[k]
        p = np.array(path, float) + rng.normal(0, jitter, (len(path), 2)) * (np.arange(len(path)) > 0)[:, None]
        kind = k.rsplit("_", 1)[0] if k.endswith(("_right", "_left")) else k
        if k == "ecg_leads":
            for c in ([-120, -165], [120, -165], [115, 150]):
                out.append(Device("ecg_lead", side, np.array([c], float) + rng.normal(0, 5, 2), radius, dens))
            continue
        out.append(Device(kind, side, p, radius, dens))
    return out


def plan_devices(rng: np.random.Generator, case: str) -> tuple[list[str], list[str]]:
    names = list(DEVICE_LIBRARY)
    if case == "devices_only":
        prior = [str(n) for n in rng.choice(names, int(rng.integers(0, 3)), replace=False)]
        current = [n for n in prior if rng.random() < 0.5]
        extra = [n for n in names if n not in prior]
        current += [str(n) for n in rng.choice(extra, int(rng.integers(1, 3)), replace=False)]
        return prior, current
    if case == "ap_vs_pa":
        return [], [str(n) for n in rng.choice(names, int(rng.integers(0, 3)), replace=False)]
    return [], []


@dataclass
class PairPlan:
    pair_id: str
    case: str
    patients: tuple[Patient, Patient]
    views: tuple[View, View]
    acqs: tuple[Acquisition, Acquisition]
    findings: list[Finding]
    devices: tuple[list[str], list[str]]
    device_objs: tuple[list[Device], list[Device]]


def plan_pair(seed: int, idx: int, case: str) -> PairPlan:
    """Draw everything about one pair from its own generator stream (deterministic per seed)."""
    rng = np.random.default_rng([seed, idx, 5])
    patient = make_patient(rng, int(rng.integers(1 << 31)))
    prior_patient = make_patient(rng, int(rng.integers(1 << 31))) if case == "other_person" else patient
    lateral = case == "lateral"
    v_prior = make_view(rng, ap=False, lateral=lateral)
    v_cur = make_view(rng, ap=case == "ap_vs_pa", lateral=lateral)
    vp = "LL" if lateral else "PA"
    a_prior = finalize_lut(make_acquisition(rng, vp), rng)
    a_cur = finalize_lut(make_acquisition(rng, "AP" if case == "ap_vs_pa" else vp), rng)
    if case == "mirrored":
        a_cur.mirrored = True
        a_prior.mirrored = bool(rng.random() < 0.4)
    if case == "rotated":
        a_cur.rotation_deg = float(rng.choice([-1, 1]) * rng.uniform(8, 12))
    findings = [] if case in ("lateral", "other_person", "normal") else plan_findings(rng, case)
    h = lung_extent(patient.landmarks(v_cur.insp_mm, v_cur.roll_deg, v_cur.ap))
    for f in findings:  # keep effusion heights clear of the "large" threshold
        if f.kind == "effusion" and f.size_current is not None:
            third = (h[f.side][1] - h[f.side][0]) / 3
            if abs(f.size_current / third - 1) < LARGE_EFFUSION_MARGIN:
                f.size_current = third * (1 + LARGE_EFFUSION_MARGIN * 1.5)
                if f.change == "stable" and f.size_prior is not None:
                    f.size_prior = f.size_current * 0.97
    dev = plan_devices(rng, case)
    dobj = (make_devices(rng, dev[0], 0.0), make_devices(rng, dev[1], 6.0))
    return PairPlan(f"g-{idx:04d}", case, (prior_patient, patient), (v_prior, v_cur), (a_prior, a_cur),
                    findings, dev, dobj)


def render_image(plan: PairPlan, role: int, layers: dict) -> Rendered:
    patient, view, acq = plan.patients[role], plan.views[role], plan.acqs[role]
    if view.lateral:
        return render_lateral(patient, view, acq.marker)
    items = []
    for i, f in enumerate(plan.findings):
        size = f.size_prior if role == 0 else f.size_current
        if size is not None:
            items.append((i, f, size))
    return render_frontal(patient, layers, view, items, plan.device_objs[role], acq.marker)


def finding_labels(plan: PairPlan, rend: tuple[Rendered, Rendered]) -> list[dict]:
    """Label rows from the renders: zone from the rendered centre and that image's lung."""
    rows = []
    for i, f in enumerate(plan.findings):
        role = 1 if f.size_current is not None else 0
        cy = rend[role].centres[i][1]
        zone = zone_of(cy, rend[role].lung_extent[f.side])
        height = rend[1].lung_extent[f.side][1] - rend[1].lung_extent[f.side][0]
        large = f.kind == "effusion" and f.size_current is not None and f.size_current >= height / 3
        urgent = (f.kind == "pneumothorax" and f.change in ("new", "worsened")) or (
            f.kind == "effusion" and f.change == "new" and large)
        rows.append({"finding": f.kind, "side": f.side, "zone": zone, "change": f.change,
                     "size_mm_prior": None if f.size_prior is None else round(f.size_prior, 1),
                     "size_mm_current": None if f.size_current is None else round(f.size_current, 1),
                     "urgent": bool(urgent)})
    prior_d, cur_d = plan.devices
    for name in sorted(set(prior_d) | set(cur_d), key=list(DEVICE_LIBRARY).index):
        side, *_ , path = DEVICE_LIBRARY[name]
        change = "stable" if (name in prior_d and name in cur_d) else ("new" if name in cur_d else "resolved")
        ext = lung_extent(LM_MEAN)["left" if side == "left" else "right"]
        tip_y = min(max(path[-1][1], ext[0]), ext[1])
        rows.append({"finding": "support_device", "side": side, "zone": zone_of(tip_y, ext), "change": change,
                     "size_mm_prior": None, "size_mm_current": None, "urgent": False})
    return rows


def pair_notes(plan: PairPlan) -> str:
    bits = [f"case {plan.case}"]
    for role, name in ((0, "prior"), (1, "current")):
        v, a = plan.views[role], plan.acqs[role]
        state = "lateral" if v.lateral else f"insp {v.insp_mm:+.0f}mm, roll {v.roll_deg:+.1f}deg"
        bits.append(f"{name}: {a.describe()}, {state}")
    if plan.case == "other_person":
        bits.append("prior is a different body (same PatientID)")
    if plan.case == "ap_vs_pa":
        bits.append("current AP portable vs PA prior: heart magnified, scapulae over lungs")
    if plan.devices[0] or plan.devices[1]:
        bits.append(f"devices prior {plan.devices[0] or 'none'} -> current {plan.devices[1] or 'none'}")
    return "; ".join(bits)


def image_meta(plan: PairPlan, role: int, seed: int, dates: tuple[dt.date, dt.date], pid: str) -> dict[str, str]:
    patient, acq = plan.patients[1], plan.acqs[role]
    tag = [GENERATOR, str(seed), plan.pair_id, str(role)]
    birth = dates[1].replace(year=dates[1].year - patient.age, day=min(dates[1].day, 28))
    if acq.view == "LL":
        orient = "P\\F"
    else:
        orient = "R\\F" if acq.mirrored else "L\\F"
    return {
        "sop": generate_uid(entropy_srcs=tag + ["sop"]),
        "study": generate_uid(entropy_srcs=tag + ["study"]),
        "series": generate_uid(entropy_srcs=tag + ["series"]),
        "date": dates[role].strftime("%Y%m%d"), "time": f"{9 + role * 3:02d}{(seed + role * 7) % 60:02d}00",
        "accession": f"A{seed % 1000:03d}{plan.pair_id[2:]}{role}",
        "name": f"SYNTH^SSM{pid[-6:]}", "patient_id": pid, "birth": birth.strftime("%Y%m%d"),
        "sex": patient.sex, "orientation": orient,
    }


def probe_point(plan: PairPlan, rend: tuple[Rendered, Rendered], i: int) -> tuple[float, float]:
    """Where to look for finding i in both images: the centre of its larger appearance."""
    f = plan.findings[i]
    big = 0 if (f.size_current is None or (f.size_prior or 0) > f.size_current) else 1
    return (rend[big].probes or rend[big].centres)[i]


def write_pair(out_dir: Path, seed: int, idx: int, case: str) -> tuple[dict, dict]:
    """Render, expose and write one pair; returns its label row and its geometry row."""
    plan = plan_pair(seed, idx, case)
    rng = np.random.default_rng([seed, idx, 9])
    layers = [patient_layers(p) if not plan.views[0].lateral else {} for p in
              ((plan.patients[0],) if plan.patients[0] is plan.patients[1] else plan.patients)]
    rend = tuple(render_image(plan, role, layers[min(role, len(layers) - 1)]) for role in (0, 1))
    cur = BASE_DATE + dt.timedelta(days=int(rng.integers(0, 600)))
    dates = (cur - dt.timedelta(days=int(rng.integers(*PRIOR_DAYS))), cur)
    pid = f"SSM{seed % 100000:05d}{idx:05d}{int(rng.integers(10**5)):05d}"
    geom = {"pair_id": plan.pair_id, "images": []}
    for role, name in ((0, "prior"), (1, "current")):
        acq = plan.acqs[role]
        pixels = process_image(rend[role].atten, acq, rng)
        meta = image_meta(plan, role, seed, dates, pid)
        write_dicom(out_dir / plan.pair_id / f"{name}.dcm", build_dataset(pixels, acq, meta))
        geom["images"].append({
            "role": name, "orientation": meta["orientation"], "photometric": acq.photometric,
            "mm_per_px": acq.spacing / acq.scale,
            "midline": patient_to_detector(acq, *rend[role].midline),
            "findings": {str(i): patient_to_detector(acq, *probe_point(plan, rend, i)) for i in range(len(plan.findings))},
        })
    label = {"pair_id": plan.pair_id, "generator": GENERATOR, "seed": seed, "case": case,
             "prior": f"{plan.pair_id}/prior.dcm", "current": f"{plan.pair_id}/current.dcm",
             "expect": "not_compared" if case in ("lateral", "other_person") else "compare",
             "findings": finding_labels(plan, rend), "notes": pair_notes(plan)}
    return label, geom


def case_list(seed: int, n_pairs: int, cases: dict[str, int] | None) -> list[str]:
    """Case of every pair: requested counts first, the rest in the default 60/20/20 mix."""
    asked = dict(cases or {})
    unknown = set(asked) - set(DEFAULT_MIX) - set(SAFETY_CASES)
    if unknown:
        raise ValueError(f"unknown case names: {sorted(unknown)}")
    rest = max(n_pairs - sum(asked.values()), 0)
    mix = {k: int(round(rest * v)) for k, v in DEFAULT_MIX.items()}
    mix["change"] += rest - sum(mix.values())
    out = [c for c, n in list(asked.items()) + list(mix.items()) for _ in range(max(n, 0))]
    order = np.random.default_rng([seed, 3]).permutation(len(out))
    return [out[i] for i in order]


def generate(out_dir: Path, *, seed: int, n_pairs: int, cases: dict[str, int] | None = None) -> Path:
    """Write n pairs (DICOM) plus labels.jsonl and geometry.jsonl under out_dir; return labels path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, geoms = [], []
    for idx, case in enumerate(case_list(seed, n_pairs, cases)):
        label, geom = write_pair(out_dir, seed, idx, case)
        labels.append(label)
        geoms.append(geom)
    path = out_dir / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in labels))
    (out_dir / "geometry.jsonl").write_text("".join(json.dumps(g) + "\n" for g in geoms))
    return path


# --------------------------------------------------------------------------------------------
# Self-check: labels against the rendered pixels (reads only the written files)
# --------------------------------------------------------------------------------------------
def display_image(path: Path) -> tuple[np.ndarray, bool]:
    """Stored pixels -> display brightness in [0, 1] (bright = attenuating); and whether mirrored."""
    ds = pydicom.dcmread(path)
    img = ds.pixel_array.astype(np.float32) / ((1 << int(ds.BitsStored)) - 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        img = 1 - img
    return img, list(ds.PatientOrientation)[0] == "R"


def write_png(path: Path, img: np.ndarray) -> None:
    """8-bit greyscale PNG with zlib only (for looking at renders)."""
    a = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(a.shape[0]))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
                     + chunk(b"IEND", b""))


def local_contrast(img: np.ndarray, rc: tuple[float, float], radius_px: float) -> float:
    """Mean percentile rank of the pixels in a disc, ranked within a box three radii around it:
    a monotone LUT, window, exposure or equalisation change between the images cancels out."""
    h = int(radius_px * 3)
    near = img[max(int(rc[0]) - h, 0) : int(rc[0]) + h, max(int(rc[1]) - h, 0) : int(rc[1]) + h]
    step = max(near.shape[1] // 300, 1)
    ranked = np.sort(near[::step, ::step].ravel())
    r0, c0 = max(int(rc[0] - radius_px), 0), max(int(rc[1] - radius_px), 0)
    sub = img[r0 : int(rc[0] + radius_px) + 1, c0 : int(rc[1] + radius_px) + 1]
    yy, xx = np.mgrid[r0 : r0 + sub.shape[0], c0 : c0 + sub.shape[1]]
    inside = sub[np.hypot(yy - rc[0], xx - rc[1]) <= radius_px]
    return float(np.searchsorted(ranked, inside).mean() / ranked.size) if inside.size else float("nan")


def markings(img: np.ndarray, rc: tuple[float, float], radius_px: float, mm_per_px: float) -> float:
    """Lung-marking energy (1-5 mm band-pass) in a disc relative to a box three radii around it:
    a pneumothorax rim has none, the lung has vessels and texture."""
    h = int(radius_px * 3)
    r0, c0 = max(int(rc[0]) - h, 0), max(int(rc[1]) - h, 0)
    box_ = img[r0 : int(rc[0]) + h, c0 : int(rc[1]) + h].astype(np.float32)
    band = ndi.gaussian_filter(box_, 1.0 / mm_per_px) - ndi.gaussian_filter(box_, 5.0 / mm_per_px)
    yy, xx = np.mgrid[r0 : r0 + box_.shape[0], c0 : c0 + box_.shape[1]]
    inside = np.hypot(yy - rc[0], xx - rc[1]) <= radius_px
    return float(band[inside].std() / (band.std() + 1e-9))


def verify(out_dir: Path, png_dir: Path | None = None) -> list[str]:
    """For each changed finding: side in standard display and the sign of the visible change."""
    out_dir = Path(out_dir)
    labels = [json.loads(x) for x in (out_dir / "labels.jsonl").read_text().splitlines()]
    geoms = {g["pair_id"]: g for g in map(json.loads, (out_dir / "geometry.jsonl").read_text().splitlines())}
    problems, checked = [], 0
    for lab in labels:
        g = geoms[lab["pair_id"]]
        imgs = [display_image(out_dir / lab[role]) for role in ("prior", "current")]
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)
            for role, (img, mirrored) in zip(("prior", "current"), imgs):
                step = max(img.shape[1] // 700, 1)
                view = img[::step, ::step]
                write_png(png_dir / f"{lab['pair_id']}_{role}.png", view[:, ::-1] if mirrored else view)
        for i, f in enumerate(lab["findings"]):
            if f["finding"] == "support_device":
                continue
            msg = check_finding(lab["pair_id"], i, f, g, imgs)
            checked += 1
            if msg:
                problems.append(msg)
    print(f"checked {checked} findings in {len(labels)} pairs: {len(problems)} problems")
    return problems


def check_finding(pair_id: str, i: int, f: dict, g: dict, imgs: list) -> str | None:
    """Side (standard display: patient's right on the image's left) and direction of change."""
    sizes = [f["size_mm_prior"], f["size_mm_current"]]
    contrasts = []
    for role in (0, 1):
        gi, (img, mirrored) = g["images"][role], imgs[role]
        rc = gi["findings"][str(i)]
        col, mid = rc[1], gi["midline"][1]
        if mirrored:  # to standard display
            col, mid = img.shape[1] - 1 - col, img.shape[1] - 1 - mid
        side = "right" if col < mid else "left"
        if sizes[role] is not None and side != f["side"]:
            return f"{pair_id} #{i} {f['finding']}: labelled {f['side']}, rendered {side} in {gi['role']}"
        size = max(s for s in sizes if s is not None)
        rad = max(min(size, 60.0) / 2 / gi["mm_per_px"], 6.0)
        if f["finding"] == "pneumothorax":  # probe sits in the deepest part of the larger rim
            rad = max(size * 0.3 / gi["mm_per_px"], 6.0)
        if f["finding"] == "pneumothorax":
            contrasts.append(markings(img, rc, rad, gi["mm_per_px"]))
        else:
            contrasts.append(local_contrast(img, rc, rad))
    sign = -1 if f["finding"] == "pneumothorax" else 1
    delta = sign * (contrasts[1] - contrasts[0])
    want = {"new": 1, "worsened": 1, "improved": -1, "resolved": -1, "stable": 0}[f["change"]]
    if want != 0 and delta * want <= 0:
        return (f"{pair_id} #{i} {f['finding']} {f['change']}: measure prior {contrasts[0]:.3f} "
                f"current {contrasts[1]:.3f} has the wrong direction")
    return None


def parse_cases(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, num = part.partition("=")
        if not num.strip().isdigit():
            raise SystemExit(f"--cases expects name=count pairs, got {part!r}")
        out[name.strip()] = int(num)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m modeldev.generators.{GENERATOR}", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cases", default=None, help="e.g. mirrored=5,lateral=5")
    ap.add_argument("--verify", type=Path, default=None, help="check labels of an output directory")
    ap.add_argument("--png", type=Path, default=None, help="with --verify: write PNG renders here")
    args = ap.parse_args(argv)
    if args.verify:
        problems = verify(args.verify, args.png)
        for p in problems:
            print(p)
        return 1 if problems else 0
    if args.out is None:
        ap.error("--out is required")
    print(generate(args.out, seed=args.seed, n_pairs=args.n, cases=parse_cases(args.cases)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
