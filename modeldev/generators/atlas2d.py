"""atlas2d: an independent generator of longitudinal chest-radiograph pairs, drawn in 2-D.

Statement of independence
-------------------------
Written from ``modeldev/generators/BRIEF.md`` (and the vocabulary section of
``shared/DESIGN.md``) by the atlas2d helper engineer, who read none of ``comparison/``,
``benchmarks/`` (``cxrpairs/``, ``change_engine.py``, ``reader_*.py``),
``comparison/synthetic.py``, ``workers/demo.py``, ``tests/`` nor any other generator under
``modeldev/generators/``.  Everything here comes from the brief and public knowledge of
chest radiology and of DICOM.

The brief (summary, with the cases and the output specification in full)
------------------------------------------------------------------------
Generate **pairs of chest radiographs** (a prior and a current of the same patient, or on
purpose not the same) with exact labels, to evaluate an interval-change engine.

* Frontal CXR appearance: projection, brightness rises with attenuation; dark lungs with
  branching vessels fading to the periphery; posterior ribs as curved bright bands,
  anterior ribs fainter sloping down-medially; clavicles; mediastinum/heart as a bright
  central column, heart bulging to the patient's left; hemidiaphragm domes (right 1-2 cm
  higher, gastric bubble under the left); sharp deep costophrenic angles; soft tissue.
  Patient's right is on the image's left in standard display: ``PatientOrientation``
  ``L\\F``; a mirrored image is ``R\\F``.  ``ViewPosition`` PA / AP / LL.  AP portable:
  heart magnified 10-20 %, scapulae over the lungs, clavicles higher, lower volumes,
  more noise, rotation, burned-in "PORTABLE"/"AP"; must be compared with a PA prior.
  A lateral must never be compared as a frontal.
* Vocabulary: finding ``nodule, mass, consolidation, effusion, pneumothorax, edema,
  atelectasis, cardiomegaly, support_device, other``; change ``new, worsened, stable,
  improved, resolved``; side = the **patient's** ``right/left/bilateral``; zone
  ``upper/middle/lower`` = thirds of that lung's height (apex to the lowest point of the
  costophrenic angle) on the frontal view, the third containing the lesion centre.
  Nodule <= 30 mm, mass > 30 mm; consolidation ill-defined, air bronchograms, may have a
  fissural straight edge; effusion basal with a meniscus rising laterally, blunted CP
  angle, size = fluid height, **large** = meniscus reaches >= 1/3 of the lung height;
  pneumothorax = visceral pleural line, no markings beyond, size = rim depth; support
  devices are devices, never disease.  **Urgent** = a new or worsened pneumothorax, or a
  new large pleural effusion; nothing else.
* Acquisition varies: CR vs DR, pixel spacing 0.10-0.20 mm, matrix 1700-3000, LUT/gamma,
  unsharp masking, equalisation, exposure/noise, grid lines, inspiration (+-12 mm,
  ribs spreading), roll <= 4 deg, in-plane rotation, magnification +-5 %, shift,
  collimation, burned-in text, MONOCHROME1/2, native little endian or RLE Lossless.  One
  pair's two images stay the same person except in the other-person case.
* Cases (field ``case``): ``change`` (one or two changed findings, maybe other stable
  ones; nodules 8-30 mm, masses 35-80 mm, consolidations 30-120 mm, effusions 15-150 mm
  height, pneumothorax rim 5-40 mm), ``stable`` (size within +-10 %), ``normal``; safety
  cases ``mirrored`` (current or both stored mirrored with ``R\\F``, real change),
  ``lateral`` (both lateral), ``other_person`` (prior from a different body, same
  PatientID), ``devices_only`` (devices added/moved, no disease change), ``ap_vs_pa`` (AP
  portable current, PA prior, real change, some urgent), ``rotated`` (current rotated
  8-12 deg in plane, real change).
* Output (exact): ``generate(out_dir, *, seed, n_pairs, cases=None) -> Path`` and the CLI
  ``python -m modeldev.generators.atlas2d --seed S --n N --out DIR [--cases mirrored=5,...]``.
  Default mix 60 % change, 20 % stable, 20 % normal; deterministic per seed.  Writes
  ``DIR/<pair_id>/prior.dcm``, ``DIR/<pair_id>/current.dcm`` and ``DIR/labels.jsonl``,
  one JSON object per pair::

    {"pair_id": "a2d-0003", "generator": "atlas2d", "seed": 1, "case": "change",
     "prior": "a2d-0003/prior.dcm", "current": "a2d-0003/current.dcm",
     "expect": "compare",            # or "not_compared" (lateral, other_person)
     "findings": [{"finding": "pneumothorax", "side": "left", "zone": "upper",
                   "change": "new", "size_mm_prior": null, "size_mm_current": 18.0,
                   "urgent": true}],
     "notes": "free text: acquisition differences"}

  DICOM: Part-10, DX For Presentation or CR Image Storage, 16-bit unsigned (BitsStored
  12-15), PatientID/Name/BirthDate/Sex, StudyInstanceUID (new per image),
  SeriesInstanceUID, SOPInstanceUID, StudyDate (prior 30-700 days before current),
  Modality CR/DX, BodyPartExamined CHEST, ViewPosition, PatientOrientation,
  ImagerPixelSpacing and PixelSpacing, Rows/Columns, PhotometricInterpretation,
  WindowCenter/Width.  Each pair a new PatientID.  < ~3 s per pair on one core.
  numpy/scipy/pydicom only.

How atlas2d works
-----------------
Everything is drawn directly in 2-D image space, in a canonical "patient plane" raster
(0.4 mm/pixel, x towards the patient's left, y towards the feet, lung apex at y=0):
a body outline with a per-patient width/depth profile; each lung as a region bounded by
parametric lateral/medial walls (rounded apex), a diaphragm dome and a sharp
costophrenic angle; an air-path profile that thins towards the walls; a tilted
ellipsoidal heart, mediastinum with aortic knob, trachea and main bronchi, spine with
end-plates and pedicles; posterior ribs (tube profile with bright cortex) and fainter
anterior ribs, clavicles, scapulae (over the lungs on AP), humeral heads, breasts,
gastric bubble; a recursively branching vessel tree per lung (splatted, tapered).
Lesions are stored in lung-normalised coordinates (fraction of lung height, fraction
of lung width), so they move with inspiration.  Per image: inspiration (diaphragm and
ribs), roll (midline structures shift), AP magnification; then an acquisition model:
in-plane rotation, magnification, shift, scatter, log, equalisation, unsharp masking,
CR blur, quantum noise, grid stripes, LUT (gamma + S-curve), collimation, burned-in text
and a lead side marker, MONOCHROME1/2, BitsStored, RLE (own vectorised PackBits encoder,
decoded by pydicom) or native.

Label rules used: sizes are reported in image millimetres (what a ruler on the stored
image using PixelSpacing measures: true size x magnification); nodule/mass size = the
longest diameter, consolidation = the longest extent of the drawn opacity, effusion =
meniscus height above the costophrenic angle, pneumothorax = maximal rim depth.  The
zone is computed from the drawn lesion's centre against that lung's height in that
image.  ``urgent`` is exactly the brief's rule.  Support devices are labelled
``support_device`` with ``urgent`` false, change ``new``/``resolved``, or ``stable`` for a
device present in both (the notes say "moved" when its tip moved); midline devices and
ECG leads get side ``bilateral``, the zone is that of the tip.  Lesions on one side are
kept apart (no overlapping blobs, none inside an effusion or pneumothorax rim) so the
measured sizes stay honest; stable findings differ by <= 10 % in measured size, worsened
/ improved ones by >= 25 %.  ``lateral`` and ``other_person`` pairs carry no findings.

``--cases`` counts are generated as given; if they add up to less than ``--n`` the rest
is filled with the default 60/20/20 change/stable/normal mix.

Measured cost on the shared 2-core machine: about 1.3 s of CPU per pair (both images,
rendering, processing and writing; RLE adds ~0.3 s per image).

Series mode (issue 29)
----------------------
Written from ``/work/briefs/series.md`` by the series helper, who read none of ``comparison/``,
``workers/``, ``benchmarks/`` nor ``modeldev/evaluate.py``.  It shares no code with thorax3d's
series mode: it reuses this module's own ``make_body``, lesion specs (``_shape_spec``,
``_apart``), ``render_frontal``/``acquire`` (through ``_image``), ``make_acq``, ``_state`` and
``write_dicom``.

``python -m modeldev.generators.atlas2d --series --seed S --n N --out DIR`` (or
``generate_series(out_dir, seed=S, n_series=N)``) writes ``DIR/<series_id>/<k>.dcm``, k = 0..m-1
oldest first, m = 3-5 studies of one patient (same PatientID, name, birth date, sex; a new
Study and SOP Instance UID per study), dates spread over 1-4 years with irregular gaps of
>= 30 days (a pneumothorax being followed: 1-12 days); the same body with a new acquisition
per study (manufacturer/detector, spacing, processing, grid, scale, shift, rotation,
inspiration, roll; 15 % of follow-ups AP portable, half of the quick pneumothorax ones); and
``DIR/series.jsonl``, one object per series::

  {"series_id": "a2s-0006", "generator": "atlas2d", "seed": 1, "scenario": "growing_nodule",
   "studies": [{"index": 0, "study_uid": "...", "date": "2020-10-25", "view": "PA"}, ...],
   "lesions": [{"lesion_id": "a2s-0006-L0", "finding": "nodule", "side": "left", "zone": "upper",
                "sizes_mm": [10.1, 14.4, 21.3], "kind": "growing", "vdt_days": 378.7}]}

``sizes_mm``: one entry per study, ``null`` exactly where the lesion is not drawn.  Sizes are
what was drawn, in image millimetres at the detector (patient-plane size x the acquisition
magnification, as PixelSpacing measures it; AP portable magnifies the heart, not the lesions
here): nodule/mass = longest diameter of the drawn outline (lobulation and aspect included,
spicules not); consolidation = longest extent of the drawn opacity (occupancy > 0.4);
effusion = height of the meniscus (its half-occupancy contour) at the lateral chest wall
above the costophrenic angle; pneumothorax = rim depth (chest wall to the visceral pleural
line), which is constant along the upper lateral wall and the apex and tapers below.

``kind``: ``stable`` (every study, one size), ``growing`` / ``shrinking`` (every study, each
interval a factor 1.3-1.7; a growing nodule follows d0 * 2 ** (t / (3 VDT)) with ``vdt_days``
60-400, each interval still >= 1.3), ``appearing`` (absent first, then present, constant or
growing; a pneumothorax grows across two or three consecutive studies), ``resolving``
(present and shrinking, then absent to the end), ``recurrent`` (present, absent, present
again).  Drawn labels are checked: one zone across studies, sizes within the brief's ranges,
every change of size >= a factor 1.15 in the labels and unchanged lesions within 15 %;
a draw that breaks a rule is redrawn.  Mix per run: >= 30 % ``stable_nodule`` series (span
>= 760 days), >= 15 % ``recurrent`` (nodule, consolidation, effusion or pneumothorax), then
growing nodules, resolving consolidations, growing effusions, pneumothoraces, no lesion,
shrinking masses, appearing nodules; half the series with a lesion get a second one; a pleural
collection owns its hemithorax.

``--series --check`` re-draws every study with each lesion left out, segments the lesion on
the difference of the stored pixels (``_diff_size_mm``), writes ``DIR/size_check.json`` and
prints the agreement with the labels.  Seed 11, 20 series, 68 lesion-studies (loaded 2-core
machine): 95.6 % within 20 % or 3 mm, 88.2 % within 10 %; nodules 43/43 within 10 % (median
-3.5 %), masses 3/3, consolidations 7/7, pneumothoraces 5/5 within 20 %; effusions 7/10
(median -13.8 %: the meniscus fades at the wall, so half of a wall column's peak sits below the
drawn top).  About 0.4 s CPU per study (seed 5, 20 series, 78 studies: 29 s).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

GENERATOR = "atlas2d"
PAIR_PREFIX = "a2d"
RES = 0.4          # mm per canonical pixel
NC = 1200          # canonical raster (NC x NC)
X0 = -240.0        # x (mm) of column 0
Y0 = -150.0        # y (mm) of row 0
XC = (X0 + RES * np.arange(NC)).astype(np.float32)
YC = (Y0 + RES * np.arange(NC)).astype(np.float32)
MU = 0.02          # soft tissue attenuation per mm (log units)
AIRF = 0.8         # fraction of lung path that is air

DX_SOP = "1.2.840.10008.5.1.4.1.1.1.1"
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"
UID_PREFIX = "1.2.826.0.1.3680043.8.498."


# ----------------------------------------------------------------------------- helpers
def _sg(z):
    """Logistic function (float32 friendly)."""
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def _smooth01(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _rows(ya, yb):
    r0 = int(max(0, math.floor((ya - Y0) / RES)))
    r1 = int(min(NC, math.ceil((yb - Y0) / RES) + 1))
    return r0, max(r0, r1)


def _cols(xa, xb):
    if xa > xb:
        xa, xb = xb, xa
    c0 = int(max(0, math.floor((xa - X0) / RES)))
    c1 = int(min(NC, math.ceil((xb - X0) / RES) + 1))
    return c0, max(c0, c1)


def _tube(d, r, cortex=0.03, marrow=0.012, k=0.7):
    """Projected path through a bone tube of radius r with a cortical shell."""
    d2 = d * d
    outer = 2 * np.sqrt(np.clip(r * r - d2, 0, None))
    ri = k * r
    inner = 2 * np.sqrt(np.clip(ri * ri - d2, 0, None))
    return cortex * (outer - inner) + marrow * inner


def _catmull(pts, step=0.5):
    """Smooth polyline through control points, resampled every ~step mm."""
    p = np.asarray(pts, float)
    if len(p) < 3:
        seg = [p]
    else:
        ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
        seg = []
        for i in range(1, len(ext) - 2):
            p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
            n = max(2, int(np.linalg.norm(p2 - p1) / 2) + 2)
            t = np.linspace(0, 1, n, endpoint=False)[:, None]
            seg.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                              + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
        seg.append(p[-1:])
    c = np.vstack(seg)
    d = np.r_[0, np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))]
    n = max(2, int(d[-1] / step) + 1)
    s = np.linspace(0, d[-1], n)
    return np.column_stack([np.interp(s, d, c[:, 0]), np.interp(s, d, c[:, 1])])


def _splat(dst, pts, w, sigma_mm):
    """Accumulate weights w at points (x, y mm) into dst (canonical) blurred by sigma."""
    if len(pts) == 0:
        return
    pts = np.asarray(pts, float)
    sig = max(0.45, sigma_mm / RES)
    pad = int(3 * sig) + 2
    cx = (pts[:, 0] - X0) / RES
    cy = (pts[:, 1] - Y0) / RES
    c0 = max(0, int(cx.min()) - pad); c1 = min(NC, int(cx.max()) + pad + 1)
    r0 = max(0, int(cy.min()) - pad); r1 = min(NC, int(cy.max()) + pad + 1)
    if c1 <= c0 or r1 <= r0:
        return
    ix = np.rint(cx).astype(int); iy = np.rint(cy).astype(int)
    ok = (ix >= c0) & (ix < c1) & (iy >= r0) & (iy < r1)
    h, wd = r1 - r0, c1 - c0
    acc = np.bincount((iy[ok] - r0) * wd + (ix[ok] - c0), weights=np.broadcast_to(w, ix.shape)[ok],
                      minlength=h * wd).reshape(h, wd).astype(np.float32)
    dst[r0:r1, c0:c1] += ndimage.gaussian_filter(acc, sig, mode="constant", truncate=3.0)


def _seg_dist(px, py, segs):
    """Min distance from points to a list of segments ((x0,y0,x1,y1), ...)."""
    best = np.full(np.broadcast(px, py).shape, np.inf, np.float32)
    for (x0, y0, x1, y1) in segs:
        dx, dy = x1 - x0, y1 - y0
        L2 = dx * dx + dy * dy + 1e-9
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / L2, 0, 1)
        d = np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))
        best = np.minimum(best, d)
    return best


# 5x7 bitmap font for burned-in annotation
_FONT = {
    "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111", "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111", "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110", "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111", "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 11001 10101 10011 10001 10001 10001", "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000", "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010", "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100", "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110", "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110", "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110", "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000", "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100", "-": "00000 00000 00000 11111 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000", "/": "00001 00001 00010 00100 01000 10000 10000",
    ".": "00000 00000 00000 00000 00000 01100 01100", " ": "00000 00000 00000 00000 00000 00000 00000",
}


def _text_mask(text, px):
    """Boolean bitmap of text, each font dot px x px pixels."""
    cols = []
    for ch in text.upper():
        g = _FONT.get(ch, _FONT[" "])
        bm = np.array([[c == "1" for c in row] for row in g.split()], bool)
        cols.append(bm)
        cols.append(np.zeros((7, 1), bool))
    bm = np.hstack(cols[:-1]) if cols else np.zeros((7, 1), bool)
    return np.kron(bm, np.ones((px, px), bool))


# ----------------------------------------------------------------------------- body model
class Body:
    """Per-patient anatomy (fixed for a person)."""


def make_body(rng, sex=None):
    b = Body()
    b.sex = sex or ("F" if rng.random() < 0.5 else "M")
    sc = rng.uniform(0.92, 1.08) * (0.95 if b.sex == "F" else 1.0)
    b.scale = sc
    b.Wb = rng.uniform(160, 185) * sc                      # chest half width at lung level
    b.depth = rng.uniform(195, 245) * sc * (0.93 if b.sex == "F" else 1.0)
    b.H0 = {"right": rng.uniform(232, 272) * sc}
    b.H0["left"] = b.H0["right"] + rng.uniform(3, 9)
    b.apex = {"right": 0.0, "left": rng.uniform(-4, 4)}
    b.Lw = {"right": b.Wb - rng.uniform(12, 18)}
    b.Lw["left"] = b.Lw["right"] + rng.uniform(-6, 5)
    b.xa = {"right": rng.uniform(44, 56) * sc, "left": rng.uniform(46, 58) * sc}
    b.Mw = {"right": rng.uniform(28, 36), "left": rng.uniform(30, 38)}
    b.knob_y = rng.uniform(52, 68)
    b.knob_amp = rng.uniform(9, 15)
    b.Dh = {"right": rng.uniform(30, 44)}
    peak_diff = rng.uniform(10, 20)
    b.Dh["left"] = max(18.0, b.Dh["right"] + (b.H0["left"] - b.H0["right"]) - peak_diff)
    # heart (ellipse in the patient plane)
    ctr = rng.uniform(0.40, 0.48)
    hw = ctr * (b.Lw["right"] + b.Lw["left"] + 16)
    x_rb = -(b.Mw["right"] + rng.uniform(12, 22))
    b.heart_tilt = math.radians(rng.uniform(22, 38))
    ratio = rng.uniform(0.70, 0.82)
    ex = math.sqrt(math.cos(b.heart_tilt) ** 2 + (ratio * math.sin(b.heart_tilt)) ** 2)
    b.heart_a = hw / 2 / ex
    b.heart_b = b.heart_a * ratio
    b.heart_x = x_rb + hw / 2
    b.heart_sink = rng.uniform(14, 24)                   # heart base below the dome top (mm)
    b.carina = rng.uniform(58, 72)
    b.trachea_w = rng.uniform(15, 20)
    # ribs: posterior-rib origin spacing along the spine, shapes
    b.rib_pitch = rng.uniform(0.092, 0.104) * b.H0["right"]
    b.rib_y1 = -rng.uniform(6, 14)
    b.rib_r = rng.uniform(4.3, 5.6, 11)
    b.rib_drop = rng.uniform(38, 54) + rng.uniform(-3, 3, 11)
    b.rib_rise = rng.uniform(0.25, 0.45)
    b.rib_ant_drop = rng.uniform(55, 80) + rng.uniform(-5, 5, 11)
    b.rib_cc = rng.uniform(40, 62)
    b.rib_jit = {"right": rng.uniform(-2, 2, 11), "left": rng.uniform(-2, 2, 11)}
    # clavicles, scapulae, humeri
    b.clav_y = rng.uniform(10, 22)
    b.clav_rise = rng.uniform(6, 22)
    b.clav_len = b.Wb * rng.uniform(0.82, 0.92)
    b.clav_r = rng.uniform(6.0, 7.5)
    b.scap_top = rng.uniform(-15, 0)
    b.scap_inf = rng.uniform(135, 170)
    b.hum_r = rng.uniform(21, 26) * sc
    # spine
    b.vert_h = rng.uniform(22, 27) * sc
    b.vert_w = rng.uniform(20, 25) * sc
    # soft tissue profile (half width vs y)
    b.bw_y = np.array([-200, -110, -80, -60, -40, -20, 10, 60, 160, 260, 330, 420], float)
    neck = rng.uniform(52, 64) * sc
    sh = b.Wb + rng.uniform(14, 26)
    b.bw_w = np.array([neck, neck + 4, neck + 0.25 * (sh - neck), neck + 0.55 * (sh - neck), neck + 0.85 * (sh - neck),
                       sh, b.Wb + rng.uniform(12, 18),
                       b.Wb + rng.uniform(6, 12), b.Wb + rng.uniform(4, 10), b.Wb + rng.uniform(-2, 6),
                       b.Wb - rng.uniform(0, 10), b.Wb - rng.uniform(5, 20)])
    b.dep_y = b.bw_y
    b.dep = b.depth * np.array([0.55, 0.57, 0.62, 0.7, 0.8, 0.88, 0.94, 1.0, 1.02, 1.03, 1.0, 0.98])
    b.breast = None
    if b.sex == "F":
        b.breast = dict(r=rng.uniform(55, 80), u=rng.uniform(0.58, 0.75), dy=rng.uniform(0.70, 0.82),
                        th=rng.uniform(4, 9))
    b.gastric = dict(dx=rng.uniform(45, 85), dy=rng.uniform(12, 30), rx=rng.uniform(18, 35),
                     ry=rng.uniform(10, 20), on=rng.random() < 0.85)
    b.tex_seed = int(rng.integers(1 << 30))
    b.vessel_seed = int(rng.integers(1 << 30))
    b.vessels = None
    return b


class LungGeom:
    """Parametric outline of one lung for one image (patient plane, mm)."""

    def __init__(self, body, side, st):
        self.side = side
        self.s = -1.0 if side == "right" else 1.0
        self.apex = body.apex[side]
        self.H = body.H0[side] + st["insp"]
        roll = st["roll"] * (1 if side == "right" else -1)
        self.Lw = body.Lw[side] * (1 + 0.01 * roll)
        self.xa = body.xa[side]
        mw = body.Mw[side] * (st.get("ap_mag", 1.0) ** 1.5)
        self.Mw = mw + self.s * st["mid_shift"]
        self.knob = side == "left"
        self.knob_y = body.knob_y
        self.knob_amp = body.knob_amp * st.get("ap_mag", 1.0)
        self.Dh = body.Dh[side] * (1 + st["insp"] / 200.0)
        self.xm_b = float(self.xmed(np.array([1.0]))[0])
        self.xl_b = float(self.xlat(np.array([1.0]))[0])

    def xlat(self, t):
        tt = np.clip(t / 0.6, 0, 1)
        return self.xa + (self.Lw - self.xa) * np.sqrt(1 - (1 - tt) ** 2) + 6 * np.clip((t - 0.6) / 0.4, 0, 1)

    def xmed(self, t):
        tt = np.clip(t / 0.22, 0, 1)
        x = self.xa - (self.xa - self.Mw) * np.sqrt(1 - (1 - tt) ** 2)
        if self.knob:
            y = self.apex + t * self.H
            x = x + self.knob_amp * np.exp(-((y - self.knob_y) / 15.0) ** 2) * (t > 0.12)
        return x

    def ydome(self, xp):
        w = np.clip((xp - self.xm_b) / (self.xl_b - self.xm_b), 0, 1)
        sh = np.clip(np.sin(np.pi * (0.2 + 0.8 * w ** 1.2)), 0, None) ** 0.8
        return self.apex + self.H - self.Dh * sh

    def point(self, t, w):
        """Patient-plane (X, Y) of lung-normalised (t, w)."""
        t = float(t)
        xm = float(self.xmed(np.array([t]))[0]); xl = float(self.xlat(np.array([t]))[0])
        xp = xm + w * (xl - xm)
        return self.s * xp, self.apex + t * self.H

    def t_of(self, y):
        return (y - self.apex) / self.H

    def inside(self, xp, y, margin=0.0):
        """Scalar (fast) point-in-lung test."""
        t = (y - self.apex) / self.H
        if t <= 0.01:
            return False
        tt = min(max(t / 0.6, 0.0), 1.0)
        xl = self.xa + (self.Lw - self.xa) * math.sqrt(1 - (1 - tt) ** 2) + 6 * min(max((t - 0.6) / 0.4, 0.0), 1.0)
        tm = min(max(t / 0.22, 0.0), 1.0)
        xm = self.xa - (self.xa - self.Mw) * math.sqrt(1 - (1 - tm) ** 2)
        if self.knob and t > 0.12:
            xm += self.knob_amp * math.exp(-((y - self.knob_y) / 15.0) ** 2)
        if not (xm + margin < xp < xl - margin):
            return False
        w = min(max((xp - self.xm_b) / (self.xl_b - self.xm_b), 0.0), 1.0)
        sh = max(math.sin(math.pi * (0.2 + 0.8 * w ** 1.2)), 0.0) ** 0.8
        return y < self.apex + self.H - self.Dh * sh - margin

    def bbox(self):
        xs = (self.s * (self.Mw - 8), self.s * (self.Lw + 14))
        return _rows(self.apex - 4, self.apex + self.H + 40), _cols(*xs)


def zone_of(t):
    return "upper" if t < 1 / 3 else ("middle" if t < 2 / 3 else "lower")


def _build_vessels(body):
    """Branching vessel tree per lung, grown level by level (vectorised), stored as
    samples (t, xp, diameter) in lung-normalised height, so it follows inspiration."""
    rng = np.random.default_rng(body.vessel_seed)
    st0 = dict(insp=0.0, roll=0.0, mid_shift=0.0)
    out = {}
    body.hilum = {}
    for side in ("right", "left"):
        g = LungGeom(body, side, st0)
        hx = g.Mw + rng.uniform(14, 22)
        hy = g.apex + g.H * (rng.uniform(0.38, 0.44) if side == "right" else rng.uniform(0.33, 0.39))
        body.hilum[side] = ((hy - g.apex) / g.H, hx)

        def inside(xp, y, m=1.0):
            t = (y - g.apex) / g.H
            return (t > 0.01) & (g.xmed(t) + m < xp) & (xp < g.xlat(t) - m) & (y < g.ydome(xp) - m)

        angs = np.radians(np.array([-100, -70, -40, -10, 20, 45, 70, 95, 120], float) + rng.uniform(-8, 8, 9))
        d = np.array([5.5, 6.5, 5.0, 5.0, 5.5, 6.5, 6.0, 5.0, 4.0]) * rng.uniform(0.9, 1.1, 9)
        P = np.column_stack([hx + rng.uniform(-4, 4, 9), hy + rng.uniform(-8, 8, 9)])
        segs = []
        for level in range(17):
            if len(P) == 0:
                break
            L = (4.0 + 2.4 * d) * rng.uniform(0.7, 1.3, len(d))
            dirv = np.column_stack([np.cos(angs), np.sin(angs)])
            Q = P + L[:, None] * dirv
            ok = inside(Q[:, 0], Q[:, 1])
            Q2 = P + 0.5 * L[:, None] * dirv
            ok2 = ~ok & inside(Q2[:, 0], Q2[:, 1])
            Q = np.where(ok2[:, None], Q2, Q)
            ok = ok | ok2
            P, Q, d, angs = P[ok], Q[ok], d[ok], angs[ok]
            segs.append((P, Q, d))
            go = d >= 0.6
            P, d, angs = Q[go], d[go], angs[go]
            n = len(P)
            sp = np.radians(rng.uniform(18, 36, n))
            r = rng.uniform(0.3, 0.7, n)
            sgn = np.where(rng.random(n) < 0.5, 1.0, -1.0)
            a1 = angs + sgn * sp * r + rng.normal(0, 0.2, n)
            a2 = angs - sgn * sp * (1 - r) + rng.normal(0, 0.2, n)
            d1 = d * rng.uniform(0.78, 0.90, n)
            d2 = d * rng.uniform(0.60, 0.74, n)
            P = np.vstack([P, P]); angs = np.concatenate([a1, a2]); d = np.concatenate([d1, d2])
        pts = []
        for (A0, B0, dd) in segs:
            ln = np.hypot(*(B0 - A0).T)
            k = np.maximum(2, (ln / 0.5).astype(int))
            idx = np.repeat(np.arange(len(k)), k)
            fr = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)) / np.repeat(k - 1, k)
            xs = A0[idx, 0] + (B0[idx, 0] - A0[idx, 0]) * fr
            ys = A0[idx, 1] + (B0[idx, 1] - A0[idx, 1]) * fr
            pts.append(np.column_stack([(ys - g.apex) / g.H, xs, dd[idx]]))
        out[side] = np.vstack(pts) if pts else np.zeros((0, 3))
    body.vessels = out


# ----------------------------------------------------------------------------- frontal drawing
def _band_y(dst, s, u0, u1, f, df, r, dens, fade_lo=8.0, fade_hi=8.0, cortex=0.03, marrow=0.012):
    """Bone band along y = f(u) (u = s*X, lateral mm) for u in [u0, u1]."""
    c0, c1 = _cols(s * u0, s * u1)
    if c1 <= c0:
        return
    u = s * XC[c0:c1]
    fu = f(u); dfu = df(u)
    ru = r(u) if callable(r) else np.full_like(u, r)
    win = _smooth01((u - u0) / fade_lo) * _smooth01((u1 - u) / fade_hi)
    ok = win > 0
    if not ok.any():
        return
    stretch = np.sqrt(1 + dfu * dfu)
    ya = float((fu - ru * stretch)[ok].min()) - 1; yb = float((fu + ru * stretch)[ok].max()) + 1
    r0, r1 = _rows(ya, yb)
    if r1 <= r0:
        return
    d = (YC[r0:r1, None] - fu[None, :]) / stretch[None, :]
    dst[r0:r1, c0:c1] += dens * win[None, :] * _tube(d, ru[None, :], cortex, marrow)


def _band_x(dst, y0, y1, g, r, dens, fade=6.0, cortex=0.03, marrow=0.012, dg=None, k=0.7):
    """Band along x = g(y) for y in [y0, y1] (vertical-ish structures)."""
    r0, r1 = _rows(y0, y1)
    if r1 <= r0:
        return
    y = YC[r0:r1]
    gx = g(y)
    slope = dg(y) if dg is not None else np.gradient(gx, RES) if len(gx) > 1 else np.zeros_like(gx)
    st = np.sqrt(1 + slope * slope)
    win = _smooth01((y - y0) / fade) * _smooth01((y1 - y) / fade)
    c0, c1 = _cols(float((gx - r * st).min()) - 1, float((gx + r * st).max()) + 1)
    if c1 <= c0:
        return
    d = (XC[None, c0:c1] - gx[:, None]) / st[:, None]
    dst[r0:r1, c0:c1] += dens * win[:, None] * _tube(d, r, cortex, marrow, k)


def _draw_ribs(bone, body, g, st):
    s = g.s
    side = g.side
    k = (g.H / body.H0[side]) ** 0.85
    ap = st["view"] == "AP"
    for i in range(10):
        y0 = g.apex + (body.rib_y1 + i * body.rib_pitch - g.apex) * k + body.rib_jit[side][i]
        y0 += st["mid_shift"] * 0  # spine-level origin does not move with roll vertically
        u0 = 14.0 + s * st["mid_shift"] * 0.0
        tl = np.clip(g.t_of(y0 + 20), 0.02, 1.0)
        u_end = float(g.xlat(np.array([tl]))[0]) + 9.0 + 2.0 * min(i, 3)
        if i == 0:
            u_end = min(u_end, g.xa + 30)
        drop = body.rib_drop[i] * (0.6 if i == 0 else 1.0) * (1.08 if ap else 1.0)
        a = body.rib_rise * (1.6 if i < 2 else 1.0)
        L = u_end - u0
        uk = u0 + 0.68 * L
        bq = (0.8 * drop + a * L) / (L * L)
        cq = 0.2 * drop / max((u_end - uk) ** 3, 1.0)
        ms = st["mid_shift"] * s

        def f(u, y0=y0, a=a, bq=bq, cq=cq, uk=uk, ms=ms):
            v = u - u0 - ms
            return y0 - a * v + bq * v * v + cq * np.clip(u - uk, 0, None) ** 3

        def df(u, a=a, bq=bq, cq=cq, uk=uk, ms=ms):
            v = u - u0 - ms
            return -a + 2 * bq * v + 3 * cq * np.clip(u - uk, 0, None) ** 2

        r = body.rib_r[i] * (0.85 if i == 0 else 1.0)
        rfun = (lambda u, r=r, L=L, ms=ms: r * (0.8 + 0.35 * np.clip((u - u0 - ms) / L, 0, 1)))
        _band_y(bone, s, u0 + ms, u_end, f, df, rfun, 1.0, fade_lo=10.0, fade_hi=3.0, cortex=0.042, marrow=0.016)
        # anterior rib: from the lateral end down-medially, fainter
        y_end = float(f(np.array([u_end]))[0])
        if i < 9:
            adrop = body.rib_ant_drop[i] * (0.5 if i == 0 else 1.0) * (body.H0[side] / g.H) ** 1.2
            ucc = body.rib_cc + (15 if i == 0 else 0) + (8 if i >= 6 else 0)
            span = max(u_end - ucc, 20.0)

            def fa(u, y_end=y_end, adrop=adrop, span=span, u_end=u_end):
                z = np.clip((u_end - u) / span, 0, 1.0)
                return y_end + adrop * z ** 1.15

            def dfa(u, adrop=adrop, span=span, u_end=u_end):
                z = np.clip((u_end - u) / span, 1e-3, 1.2)
                return -adrop * 1.15 * z ** 0.15 / span

            ucc = max(ucc, u_end - (110 if i < 6 else 75))
            _band_y(bone, s, ucc, u_end - 2, fa, dfa, r * 1.25, 0.7, fade_lo=18.0, fade_hi=4.0,
                    cortex=0.03, marrow=0.012)


def _draw_heart_occ(air, body, st):
    """Multiply lung air by (1 - heart occupancy)."""
    m = st.get("ap_mag", 1.0)
    a, bb = body.heart_a * m, body.heart_b * m
    gl = st["_geom"]["left"]
    hx = body.heart_x * (1 + 0.5 * (m - 1)) + st["mid_shift"] * 0.6
    ct, sn = math.cos(body.heart_tilt), math.sin(body.heart_tilt)
    ey = math.sqrt((a * sn) ** 2 + (bb * ct) ** 2)
    hy = gl.apex + gl.H - 0.9 * gl.Dh + body.heart_sink - ey
    ext = max(a, bb) + 4
    r0, r1 = _rows(hy - ext, hy + ext); c0, c1 = _cols(hx - ext, hx + ext)
    X = XC[None, c0:c1] - hx; Y = YC[r0:r1, None] - hy
    u = (X * ct + Y * sn) / a; v = (-X * sn + Y * ct) / bb
    q = u * u + v * v
    occ = np.clip(np.sqrt(np.clip(1 - q, 0, None)) * 2.2, 0, 1) * 0.93
    air[r0:r1, c0:c1] *= (1 - occ)
    st["_heart"] = (hx, hy, a, bb)
    return (r0, r1, c0, c1, occ)


def _lesion_nodule(add, spec, g, mag):
    rng = np.random.default_rng(spec["seed"])
    D = spec["size"]
    R = D / 2
    X, Y = g.point(spec["t"], spec["w"])
    lob = spec.get("lob", 0.0)
    ks = np.arange(2, 6)
    amp = rng.uniform(0.3, 1.0, ks.size) * lob / np.sqrt(ks.size)
    ph = rng.uniform(0, 2 * np.pi, ks.size)
    asp = spec.get("aspect", 1.0); rot = rng.uniform(0, np.pi)
    ext = R * (1 + 2 * lob) * max(asp, 1 / asp) + 14
    r0, r1 = _rows(Y - ext, Y + ext); c0, c1 = _cols(X - ext, X + ext)
    dx = XC[None, c0:c1] - X; dy = YC[r0:r1, None] - Y
    cr, sr = math.cos(rot), math.sin(rot)
    u = (dx * cr + dy * sr) / math.sqrt(asp); v = (-dx * sr + dy * cr) * math.sqrt(asp)
    rho = np.hypot(u, v); th = np.arctan2(v, u)
    rr = R * (1 + sum(amp[i] * np.cos(ks[i] * th + ph[i]) for i in range(ks.size)))
    chord = 2 * np.sqrt(np.clip(rr * rr - rho * rho, 0, None))
    edge = _sg((rr - rho) / 0.35)
    dens = spec.get("dens", 1.0)
    add[r0:r1, c0:c1] += (MU * AIRF * 2.0 * dens) * np.maximum(chord, 0.6 * edge) * (0.7 + 0.3 * edge)
    if spec.get("spic", 0) > 0:
        pts = []
        for _ in range(int(spec["spic"])):
            a = rng.uniform(0, 2 * np.pi)
            r_s = R * (1 + lob)
            ln = rng.uniform(5, 14)
            tt = np.linspace(0.9 * r_s, r_s + ln, 30)
            pts.append(np.column_stack([X + tt * math.cos(a), Y + tt * math.sin(a)]))
        pts = np.vstack(pts)
        _splat(add, pts, 0.012, 0.45)
    # longest diameter (true mm, includes lobulation and aspect)
    thg = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    rg = R * (1 + sum(amp[i] * np.cos(ks[i] * thg + ph[i]) for i in range(ks.size)))
    px = rg * np.cos(thg) * math.sqrt(asp); py = rg * np.sin(thg) / math.sqrt(asp)
    diam = max(np.ptp(px * math.cos(a2) + py * math.sin(a2)) for a2 in np.linspace(0, np.pi, 36, endpoint=False))
    return dict(size=float(diam), t=float(g.t_of(Y)), zone=zone_of(g.t_of(Y)))


def _consolidation_field(spec):
    rng = np.random.default_rng(spec["seed"])
    nf = ndimage.gaussian_filter(rng.standard_normal((72, 72)), 4.0, mode="wrap")
    nf /= nf.std() + 1e-9
    fine = ndimage.gaussian_filter(rng.standard_normal((72, 72)), 2.0, mode="wrap")
    nf = nf + 0.35 * fine / (fine.std() + 1e-9)
    tubes = []
    for _ in range(int(rng.integers(1, 4))):
        # air bronchograms run from the medial (hilar) side outwards, gently curving
        p = np.array([rng.uniform(-0.6, -0.3), rng.uniform(-0.35, 0.35)])
        a = rng.uniform(-0.45, 0.45)
        for _k in range(4):
            q = p + rng.uniform(0.14, 0.22) * np.array([math.cos(a), math.sin(a)])
            tubes.append((p[0], p[1], q[0], q[1]))
            if _k == 1 and rng.random() < 0.6:
                a2 = a + rng.choice([-1, 1]) * rng.uniform(0.35, 0.6)
                q2 = q + rng.uniform(0.15, 0.25) * np.array([math.cos(a2), math.sin(a2)])
                tubes.append((q[0], q[1], q2[0], q2[1]))
            p, a = q, a + rng.normal(0, 0.12)
    return nf, tubes, rng.uniform(0.55, 0.95), rng.uniform(-0.5, 0.5)


def _lesion_consolidation(air, opac, spec, g, lungm):
    nf, tubes, asp, rot = _consolidation_field(spec)
    S = spec["size"]
    a = S / 2 * 1.08; b = a * asp
    X, Y = g.point(spec["t"], spec["w"])
    ext = a + 6
    r0, r1 = _rows(Y - ext, Y + ext); c0, c1 = _cols(X - ext, X + ext)
    dx = XC[None, c0:c1] - X; dy = YC[r0:r1, None] - Y
    cr, sr = math.cos(rot), math.sin(rot)
    u = (dx * cr + dy * sr) / a; v = (-dx * sr + dy * cr) / b
    uu = g.s * u  # orientation relative to the lateral direction
    env = 1 - (u * u + v * v)
    iu = np.clip((u + 1.3) / 2.6 * 71, 0, 71); iv = np.clip((v + 1.3) / 2.6 * 71, 0, 71)
    noise = ndimage.map_coordinates(nf, [np.broadcast_to(iv, env.shape).ravel(),
                                         np.broadcast_to(iu, env.shape).ravel()], order=1).reshape(env.shape)
    val = env + 0.28 * noise
    f = _sg((val - 0.08) / 0.12) * (0.74 + 0.10 * np.clip(noise, -1, 1)) * (0.85 + 0.15 * _smooth01(val / 0.5))
    if spec.get("fissure") is not None:
        yf = g.apex + spec["fissure"] * g.H
        f *= _sg((yf - YC[r0:r1, None]) / 0.5)
    # air bronchograms (dark tubes inside the dense part)
    dt = _seg_dist(uu, v, tubes) * a
    tube = np.exp(-(dt / spec.get("bw", 1.4)) ** 2) * _sg((val - 0.3) / 0.08)
    f = f * (1 - 0.45 * tube)
    lm = lungm[r0:r1, c0:c1]
    f = f * lm
    air[r0:r1, c0:c1] *= (1 - f)
    opac[r0:r1, c0:c1] = np.maximum(opac[r0:r1, c0:c1], f)
    m = f > 0.4
    if m.sum() < 10:
        return dict(size=0.0, t=float(spec["t"]), zone=zone_of(spec["t"]))
    yy, xx = np.nonzero(m)
    yy = YC[r0 + yy]; xx = XC[c0 + xx]
    ext_mm = max(np.ptp(xx * math.cos(q) + yy * math.sin(q)) for q in np.linspace(0, np.pi, 12, endpoint=False))
    tc = g.t_of(float(yy.mean()))
    return dict(size=float(ext_mm), t=float(tc), zone=zone_of(tc))


def _lesion_effusion(air, opac, spec, g, lungm):
    h = spec["size"]
    cp = g.apex + g.H
    r0, r1 = _rows(cp - h - 30, cp + 40)
    c0, c1 = _cols(g.s * (g.Mw - 10), g.s * (g.Lw + 16))
    xp = g.s * XC[c0:c1]
    w = np.clip((xp - g.xm_b) / (g.Lw - g.xm_b), 0, 1.1)
    ramp = 8.0 + 0.08 * h
    # concave meniscus: lowest medially, rising along the lateral chest wall; the f=0.5
    # contour reaches exactly h above the costophrenic angle at the lateral wall
    ysurf = cp - h * (0.45 + 0.55 * w ** 3.0) - 0.42 * ramp
    Y = YC[r0:r1, None]
    f = np.clip((Y - ysurf[None, :]) / ramp, 0, 1) ** 0.8
    # fluid also tracks a little up the lateral wall (meniscus thinning out)
    f = np.maximum(f, 0.5 * np.exp(-(np.maximum(ysurf[None, :] - Y, 0) / 8.0)) * _smooth01((w - 0.85) / 0.15)[None, :])
    f = f * 0.97
    air[r0:r1, c0:c1] *= (1 - f)
    opac[r0:r1, c0:c1] = np.maximum(opac[r0:r1, c0:c1], f)
    lm = lungm[r0:r1, c0:c1]
    wgt = f * lm * (Y < g.ydome(xp)[None, :])
    if wgt.sum() > 0:
        tc = g.t_of(float((wgt * Y).sum() / wgt.sum()))
    else:
        tc = 0.95
    return dict(size=float(h), t=float(tc), zone=zone_of(tc), large=bool(h >= g.H / 3.0))


def _lesion_ptx(A_add, air, vmask, spec, g, lungm):
    d0 = spec["size"]
    (r0, r1), (c0, c1) = g.bbox()
    lm = lungm[r0:r1, c0:c1] > 0.5
    Yb = YC[r0:r1]; xp = g.s * XC[c0:c1]
    t = g.t_of(Yb)
    xm = g.xmed(t)
    med = (xp[None, :] < xm[:, None] + 1.5) & (t[:, None] > 0.07)
    below = (Yb[:, None] >= g.ydome(xp)[None, :] - 1.0) & (xp[None, :] < g.xl_b - 2)
    ext = lm | med | below
    dist = ndimage.distance_transform_edt(ext) * RES
    taper = np.where(t < 0.35, 1.0, np.clip(1 - (t - 0.35) / 0.5, 0, 1) ** 1.3)
    wl = np.clip((xp[None, :] - xm[:, None]) / np.maximum(g.xlat(t) - xm, 1.0)[:, None], 0, 1)
    deff = d0 * taper[:, None] * (0.45 + 0.55 * _smooth01(wl / 0.55))
    P = lm * _sg((deff - dist) / 0.4) * (deff > 0.6)
    line = np.exp(-((dist - deff) / 0.45) ** 2) * lm * (deff > 1.0)
    vmask[r0:r1, c0:c1] *= (1 - P)
    air_b = air[r0:r1, c0:c1]
    A_add[r0:r1, c0:c1] += -MU * (1 - AIRF) * 1.1 * air_b * P + 0.075 * line
    # slightly denser, partially collapsed lung medial to the line for big ones
    A_add[r0:r1, c0:c1] += MU * 0.08 * (d0 / 40.0) * air_b * lm * (1 - P)
    wy = (P * (Yb[:, None])).sum(); ws = P.sum()
    tc = g.t_of(float(wy / ws)) if ws > 0 else 0.1
    return dict(size=float(d0), t=float(tc), zone=zone_of(tc))


def _device_paths(dev, body, st):
    """Polylines (mm) and discs for one device in this image."""
    geo = st["_geom"]; gr, gl = geo["right"], geo["left"]
    ms = st["mid_shift"]
    cy = body.carina + (gr.H - body.H0["right"]) * 0.1
    dome_l = gl.apex + gl.H - gl.Dh
    k = dev["kind"]
    j = dev.get("jit", [0.0] * 6)
    lines, discs, tip = [], [], None
    if k == "ett":
        tipy = cy - dev["tip"]
        p = [(-2 + ms, -170), (-3 + ms + j[0], -90), (-3 + ms, -20), (-2 + ms, tipy)]
        lines.append((p, 0.35, 0.5, 2.2)); lines.append((p, 0.05, 4.0, 2.2))
        tip = (-2 + ms, tipy)
    elif k == "ng":
        tipx, tipy = 55 + dev["tip"] * 0.4 + j[0], dome_l + 35 + dev["tip"] * 0.3
        p = [(-8 + ms, -170), (-4 + ms, -40), (6 + ms, cy + 40), (14, dome_l - 5), (30, dome_l + 25), (tipx, tipy)]
        lines.append((p, 0.22, 0.55, 1.0))
        tip = (tipx, tipy)
    elif k == "cvc":
        tipy = cy + dev["tip"]
        if dev.get("route", "ij") == "ij":
            p = [(-62 + j[0], -150), (-50, -70), (-32, -5), (-20 + ms, cy - 25), (-16 + ms, tipy)]
        else:
            p = [(-170, 15 + j[0]), (-110, 10), (-55, 22), (-24 + ms, cy - 10), (-16 + ms, tipy)]
        lines.append((p, 0.2, 0.5, 1.0))
        tip = (-16 + ms, tipy)
    elif k == "drain":
        s = -1.0 if dev["side"] == "right" else 1.0
        g = geo[dev["side"]]
        tipt = 0.08 + dev["tip"] / 400.0
        p = [(s * (g.Lw + 40), g.apex + 0.78 * g.H + j[0]), (s * (g.Lw + 5), g.apex + 0.70 * g.H),
             (s * (g.Lw - 12), g.apex + 0.52 * g.H), (s * (g.Lw - 28), g.apex + 0.28 * g.H),
             (s * (g.xa + 6), g.apex + tipt * g.H)]
        lines.append((p, 0.30, 0.6, 2.5)); lines.append((p, 0.06, 5.0, 2.5))
        tip = p[-1]
    elif k == "ecg":
        for (dx, dy) in dev["pos"]:
            x = dx * gl.Lw; y = gl.apex + dy * gl.H
            discs.append((x, y, 5.5))
            lines.append(([(x, y), (x + 0.3 * (x - 0), y - 40), (x * 1.8, y - 120)], 0.12, 0.45, 1.0))
        tip = (0.0, gl.apex + np.mean([d[1] for d in dev["pos"]]) * gl.H)
    return lines, discs, tip


def _draw_devices(A, devices, body, st):
    info = []
    for dev in devices:
        lines, discs, tip = _device_paths(dev, body, st)
        for (p, wgt, sig, step) in lines:
            pts = _catmull(p, 0.3)
            _splat(A, pts, wgt * 2.5066 * sig * 0.3 / RES ** 2, sig)
        for (x, y, r) in discs:
            r0, r1 = _rows(y - r - 2, y + r + 2); c0, c1 = _cols(x - r - 2, x + r + 2)
            rho = np.hypot(XC[None, c0:c1] - x, YC[r0:r1, None] - y)
            ring = np.exp(-((rho - r) / 0.6) ** 2) * 0.5 + _sg((r - rho) / 0.4) * 0.12 + _sg((1.8 - rho) / 0.3) * 0.7
            A[r0:r1, c0:c1] += ring
        info.append(tip)
    return info


def render_frontal(body, st, lesions, devices):
    """Attenuation (log units) in the canonical patient plane, plus per-lesion measurements."""
    if body.vessels is None:
        _build_vessels(body)
    A = np.zeros((NC, NC), np.float32)
    bw = np.interp(YC, body.bw_y, body.bw_w).astype(np.float32)
    dep = np.interp(YC, body.dep_y, body.dep).astype(np.float32)
    q = np.clip(1 - ((XC[None, :] - st["mid_shift"] * 0.3) / bw[:, None]) ** 2, 0, None)
    A += (MU * dep)[:, None] * np.sqrt(q)
    geo = {s: LungGeom(body, s, st) for s in ("right", "left")}
    st["_geom"] = geo
    air, lungm = _frontal_air(body, geo)
    hr0, hr1, hc0, hc1, occ = _draw_heart_occ(air, body, st)
    opac, vmask, add, meas = _frontal_lesions(air, lesions, geo, lungm)
    A -= MU * AIRF * air
    A += add
    # parenchymal texture
    rng = np.random.default_rng(body.tex_seed)
    tex = ndimage.zoom(ndimage.gaussian_filter(rng.standard_normal((NC // 4, NC // 4)).astype(np.float32), 0.9), 4, order=1)
    A += 0.018 * tex * lungm * (1 - opac)
    _frontal_vessels(A, body, geo, lungm, opac, vmask, hr0, hr1, hc0, hc1, occ)
    # bones
    bone = np.zeros((NC, NC), np.float32)
    for g in geo.values():
        _draw_ribs(bone, body, g, st)
    ap = st["view"] == "AP"
    ms = st["mid_shift"]
    _frontal_shoulders(bone, body, geo, ap, ms)
    # ribs seen through the upper abdomen are much fainter (thick soft tissue, scatter)
    for side, g in geo.items():
        c0, c1 = (0, NC // 2) if side == "right" else (NC // 2, NC)
        yd = g.ydome(g.s * XC[c0:c1])
        bone[:, c0:c1] *= 1 - 0.55 * _smooth01((YC[:, None] - yd[None, :]) / 25.0)
    _frontal_spine(bone, body, ms)
    A += bone
    _frontal_airways(A, body, geo, ms)
    _frontal_bubble_breasts(A, body, geo, ap)
    tips = _draw_devices(A, devices, body, st)
    return A, meas, tips


def _frontal_bubble_breasts(A, body, geo, ap):
    """The gastric bubble (air) and breast soft tissue into A."""
    # gastric bubble, breasts
    gl = geo["left"]
    if body.gastric["on"]:
        rx, ry = body.gastric["rx"], body.gastric["ry"]
        gx = body.gastric["dx"]; gy = gl.apex + gl.H - gl.Dh + ry + 0.5 * body.gastric["dy"] + 5
        r0, r1 = _rows(gy - ry - 2, gy + ry + 2); c0, c1 = _cols(gx - rx - 2, gx + rx + 2)
        qq = ((XC[None, c0:c1] - gx) / rx) ** 2 + ((YC[r0:r1, None] - gy) / ry) ** 2
        bub = np.sqrt(np.clip(1 - qq, 0, None)) * _sg((gy + ry * 0.3 - YC[r0:r1, None]) / 0.6)
        A[r0:r1, c0:c1] -= MU * 0.9 * 2 * ry * 0.9 * bub
    if body.breast is not None:
        br = body.breast
        for side, g in geo.items():
            bx = g.s * g.Lw * br["u"]; by = g.apex + g.H * br["dy"] - (12 if ap else 0)
            R = br["r"]
            r0, r1 = _rows(by - R, by + R + 4); c0, c1 = _cols(bx - R - 4, bx + R + 4)
            qq = ((XC[None, c0:c1] - bx) / (R * 1.2)) ** 2 + ((YC[r0:r1, None] - by) / R) ** 2
            grad = _smooth01((YC[r0:r1, None] - (by - R)) / (1.6 * R))
            A[r0:r1, c0:c1] += MU * br["th"] * np.clip(1 - qq, 0, None) ** 0.6 * grad


def _frontal_airways(A, body, geo, ms):
    """Trachea and main bronchi (air) out of A."""
    # trachea and main bronchi (air)
    tw = body.trachea_w
    tx = -2.0 + ms * 0.7
    cy = body.carina + (geo["right"].H - body.H0["right"]) * 0.1
    air2 = np.zeros((NC, NC), np.float32)
    _band_x(air2, -170, cy + 2, lambda y: tx - 3 * _smooth01((y - body.knob_y + 30) / 40) + 0 * y, tw / 2, 1.0,
            cortex=0.0, marrow=MU * 0.9, fade=3, k=1.0)
    for s, ang in ((-1, 28), (1, 42)):
        ta = math.tan(math.radians(ang))
        _band_x(air2, cy - 2, cy + 45, lambda y, s=s, ta=ta: tx + s * (y - cy) * ta + 0 * y, tw * 0.36, 1.0,
                cortex=0.0, marrow=MU * 0.9, fade=8, dg=lambda y, s=s, ta=ta: s * ta + 0 * y, k=1.0)
    A -= air2


def _frontal_spine(bone, body, ms):
    """Vertebral bodies (discs, end plates), pedicles and spinous processes into bone."""
    # spine
    sx = ms
    r0, r1 = _rows(-150, 420); c0, c1 = _cols(sx - 40, sx + 40)
    Ys = YC[r0:r1]
    ph = ((Ys - body.rib_y1 + 6) / body.vert_h) % 1.0
    disc = np.exp(-((ph - 0.0) / 0.09) ** 2) + np.exp(-((ph - 1.0) / 0.09) ** 2)
    plate = np.exp(-((ph - 0.11) / 0.04) ** 2) + np.exp(-((ph - 0.89) / 0.04) ** 2)
    dX = XC[None, c0:c1] - sx
    wv = body.vert_w
    bodyv = np.sqrt(np.clip(1 - (dX / wv) ** 2, 0, None))
    spine = bodyv * (0.15 * (1 - 0.35 * disc) + 0.03 * plate)[:, None]
    ped = np.zeros_like(spine)
    for sgn in (-1, 1):
        pdx = (dX - sgn * (wv - 6)) / 4.0
        pdy = ((ph[:, None] - 0.35) * body.vert_h) / 6.0
        rr = np.sqrt(pdx ** 2 + pdy ** 2)
        ped += 0.035 * np.exp(-((rr - 1) / 0.35) ** 2)
    spd = np.exp(-(dX / 3.0) ** 2) * np.exp(-(((ph - 0.55) * body.vert_h) / 7.0) ** 2)[:, None] * 0.05
    bone[r0:r1, c0:c1] += spine + ped + spd


def _frontal_shoulders(bone, body, geo, ap, ms):
    """Clavicles, scapulae and humeral heads into bone (AP: clavicles higher, scapulae over the lungs)."""
    for side, g in geo.items():
        s = g.s
        cy0 = g.apex + body.clav_y - (22 if ap else 0)
        rise = body.clav_rise * (0.4 if ap else 1.0)
        Lc = body.clav_len
        u0 = 14 + s * ms * 1.0

        def fc(u, cy0=cy0, rise=rise, Lc=Lc, u0=u0):
            z = (u - u0) / Lc
            return cy0 - rise * z + 5.0 * np.sin(2 * np.pi * z)

        def dfc(u, rise=rise, Lc=Lc, u0=u0):
            z = (u - u0) / Lc
            return (-rise + 5.0 * 2 * np.pi * np.cos(2 * np.pi * z)) / Lc

        cr = body.clav_r
        _band_y(bone, s, u0, u0 + Lc, fc, dfc, lambda u, cr=cr, u0=u0, Lc=Lc: cr * (1.15 - 0.45 * np.clip((u - u0) / Lc, 0, 1)),
                1.0, fade_lo=4, fade_hi=4, cortex=0.06, marrow=0.025)
        # scapula: triangular plate, medial border over the lung on AP
        lat = 0 if ap else 38
        p1 = (s * (g.Lw * 0.62 + lat), g.apex + body.scap_top)
        p2 = (s * (g.Lw * 0.78 + lat), g.apex + body.scap_inf)
        p3 = (s * (g.Lw + 25), g.apex + 28)
        r0, r1 = _rows(min(p1[1], p3[1]) - 5, p2[1] + 5); c0, c1 = _cols(p1[0] - s * 10, p3[0] + s * 12)
        Xs = XC[None, c0:c1]; Ys = YC[r0:r1, None]
        tri = np.ones((r1 - r0, c1 - c0), np.float32)
        cxm = (p1[0] + p2[0] + p3[0]) / 3; cym = (p1[1] + p2[1] + p3[1]) / 3
        edge1 = None
        for (pa, pb) in ((p1, p2), (p2, p3), (p3, p1)):
            nx, ny = pb[1] - pa[1], -(pb[0] - pa[0])
            nn = math.hypot(nx, ny)
            dd = ((Xs - pa[0]) * nx + (Ys - pa[1]) * ny) / nn
            sgn = 1 if ((cxm - pa[0]) * nx + (cym - pa[1]) * ny) > 0 else -1
            dd = dd * sgn
            tri = tri * _sg(dd / 0.6)
            if edge1 is None:
                edge1 = dd
        bone[r0:r1, c0:c1] += tri * 0.13 + 0.22 * np.exp(-(edge1 / 1.8) ** 2) * tri ** 0.2 * _sg(edge1 / 0.3 + 3)
        # humeral head
        hx, hy, hr = s * (g.Lw + body.hum_r + 8), g.apex + (2 if ap else 8), body.hum_r
        r0, r1 = _rows(hy - hr - 2, hy + hr + 2); c0, c1 = _cols(hx - hr - 2, hx + hr + 2)
        dd = np.hypot(XC[None, c0:c1] - hx, YC[r0:r1, None] - hy)
        bone[r0:r1, c0:c1] += _tube(dd, hr, 0.03, 0.012, 0.85)
        _band_x(bone, hy + hr * 0.3, hy + hr + 90, lambda y, hx=hx, hy=hy, s=s: hx + s * (4 + 0.12 * (y - hy)),
                hr * 0.55, 1.0, cortex=0.05, marrow=0.012, fade=10, dg=lambda y, s=s: s * 0.12 + 0 * y)


def _frontal_vessels(A, body, geo, lungm, opac, vmask, hr0, hr1, hc0, hc1, occ):
    """Vessel tree splats and hilar shadows into A, hidden by opacity, pneumothorax and (half) the heart."""
    # vessels
    V = np.zeros((NC, NC), np.float32)
    for side, g in geo.items():
        vp = body.vessels[side]
        if len(vp) == 0:
            continue
        x = g.s * vp[:, 1]; y = g.apex + vp[:, 0] * g.H
        d = vp[:, 2]
        for lo, hi, sg in ((0, 1.3, 0.45), (1.3, 2.6, 0.8), (2.6, 4.5, 1.4), (4.5, 99, 2.3)):
            sel = (d >= lo) & (d < hi)
            if sel.any():
                wgt = MU * AIRF * 4.0 * (np.pi * d[sel] ** 2 / 4) * 0.5 / (RES * RES)
                _splat(V, np.column_stack([x[sel], y[sel]]), wgt, sg)
    for side, g in geo.items():
        th, hxp = body.hilum[side]
        hx, hy = g.s * (hxp - 4), g.apex + th * g.H
        r0, r1 = _rows(hy - 45, hy + 45); c0, c1 = _cols(hx - 30, hx + 30)
        V[r0:r1, c0:c1] += 0.10 * np.exp(-((XC[None, c0:c1] - hx) / 11.0) ** 2 - ((YC[r0:r1, None] - hy) / 20.0) ** 2)
    V *= (0.3 + 0.7 * lungm) * (1 - opac) * vmask
    V[hr0:hr1, hc0:hc1] *= (1 - 0.5 * occ)
    A += V


def _frontal_lesions(air, lesions, geo, lungm):
    """The lesions (effusions, then consolidations, then round ones; pneumothoraces last) into air/opacity/added maps; their measurements in order."""
    opac = np.zeros((NC, NC), np.float32)
    vmask = np.ones((NC, NC), np.float32)
    add = np.zeros((NC, NC), np.float32)
    meas = []
    order = sorted(range(len(lesions)), key=lambda i: {"effusion": 0, "consolidation": 1}.get(lesions[i]["kind"], 2))
    res = {}
    for i in order:
        sp = lesions[i]; g = geo[sp["side"]]
        kd = sp["kind"]
        if kd in ("nodule", "mass"):
            res[i] = _lesion_nodule(add, sp, g, 1.0)
        elif kd == "consolidation":
            res[i] = _lesion_consolidation(air, opac, sp, g, lungm)
        elif kd == "effusion":
            res[i] = _lesion_effusion(air, opac, sp, g, lungm)
    for i in order:
        sp = lesions[i]
        if sp["kind"] == "pneumothorax":
            res[i] = _lesion_ptx(add, air, vmask, sp, geo[sp["side"]], lungm)
    meas = [res[i] for i in range(len(lesions))]
    return opac, vmask, add, meas


def _frontal_air(body, geo):
    """Each lung's air depth (with the posterior costophrenic recess) and the soft lung mask."""
    air = np.zeros((NC, NC), np.float32)
    lungm = np.zeros((NC, NC), np.float32)
    Dmax = body.depth * 0.62
    for side, g in geo.items():
        (r0, r1), (c0, c1) = g.bbox()
        Yb = YC[r0:r1]; xp = g.s * XC[c0:c1]
        t = g.t_of(Yb)
        xl = g.xlat(t); xm = g.xmed(t); yd = g.ydome(xp)
        e = 0.5
        m = (_sg((xl[:, None] - xp[None, :]) / e) * _sg((xp[None, :] - xm[:, None]) / e)
             * _sg((yd[None, :] - Yb[:, None]) / e) * _sg((t * g.H)[:, None] / e))
        below = Yb[:, None] - yd[None, :]
        prof = ((0.45 + 0.55 * _smooth01((xl[:, None] - xp[None, :]) / 35.0) ** 0.6)
                * (0.45 + 0.55 * _smooth01(t / 0.25))[:, None]
                * (0.75 + 0.25 * _smooth01((xp[None, :] - xm[:, None]) / 25.0))
                * (0.72 + 0.28 * _smooth01(-below / 35.0)))
        # posterior costophrenic recess below the dome
        rec = (0.16 * _sg(below / 0.5) * np.exp(-np.clip(below, 0, None) / 16.0)
               * _sg((xl[:, None] - xp[None, :]) / e) * _sg((xp[None, :] - xm[:, None]) / e))
        air[r0:r1, c0:c1] += Dmax * (m * prof + rec)
        lungm[r0:r1, c0:c1] = np.maximum(lungm[r0:r1, c0:c1], m)
    return air, lungm


def render_lateral(body, st):
    """Left lateral view; x runs anterior (-) to posterior (+)."""
    A = np.zeros((NC, NC), np.float32)
    D = body.depth * 1.18
    H = body.H0["right"] + st["insp"]
    x_ant, x_post = -D / 2, D / 2
    # body thickness across (left-right width)
    bw = np.interp(YC, body.bw_y, body.bw_w).astype(np.float32)
    half = np.interp(YC, body.dep_y, body.dep * 1.18 / 2 + 6).astype(np.float32)
    q = np.clip(1 - (np.abs(XC[None, :]) / half[:, None]) ** 2.6, 0, None)
    A += MU * (2 * bw)[:, None] * q ** 0.45 * 0.85
    # lungs (both superimposed)
    r0, r1 = _rows(-10, H + 40)
    Yb = YC[r0:r1]
    t = np.clip((Yb + 5) / H, 0, 1.2)
    xa = x_ant + 18 + 30 * np.clip(1 - t / 0.25, 0, 1) ** 2
    xpost = x_post - 28 - 25 * np.clip(1 - t / 0.3, 0, 1) ** 2
    w = np.clip((XC[None, :] - xa[:, None]) / (xpost - xa)[:, None], 0, 1)
    dome = H + 5 - 60 * np.clip(np.sin(np.pi * (0.15 + 0.85 * (1 - w))), 0, None) ** 0.5 * (1 - w) ** 0.3
    dome2 = dome - 12
    xc = 0.5 * (x_ant + x_post) + 10
    ytop = -12 + 70 * ((XC[None, :] - xc) / (0.5 * D)) ** 2
    m = (_sg((XC[None, :] - xa[:, None]) / 0.7) * _sg((xpost[:, None] - XC[None, :]) / 0.7)
         * _sg((dome - Yb[:, None]) / 0.7) * _sg((Yb[:, None] - ytop) / 1.5))
    m2 = _sg((dome2 - Yb[:, None]) / 0.7)
    air = ((body.Lw["right"] + body.Lw["left"]) * 0.75 * m * (0.55 + 0.45 * m2)
           * (0.55 + 0.45 * _smooth01((Yb[:, None] - ytop) / 60.0)))
    # heart anteriorly
    hx, hy = x_ant + 0.32 * D, H * 0.70
    ha, hb = 0.30 * D, H * 0.24
    qq = ((XC[None, :] - hx) / ha) ** 2 + ((Yb[:, None] - hy) / hb) ** 2
    air *= 1 - 0.6 * np.clip(np.sqrt(np.clip(1 - qq, 0, None)) * 2, 0, 1)
    A[r0:r1] -= MU * AIRF * air
    # hila vessels
    rng = np.random.default_rng(body.vessel_seed + 1)
    pts = np.column_stack([rng.normal(5, 14, 3000), rng.normal(H * 0.4, 18, 3000)])
    _splat(A, pts, 0.04, 2.0)
    # spine (vertebral bodies) posteriorly
    sx0, sx1 = x_post - 80, x_post - 42
    r0s, r1s = _rows(-150, 420)
    Ys = YC[r0s:r1s]
    ph = ((Ys + 10) / body.vert_h) % 1.0
    disc = np.exp(-((ph - 0.0) / 0.09) ** 2) + np.exp(-((ph - 1.0) / 0.09) ** 2)
    c0, c1 = _cols(sx0 - 5, x_post)
    Xs = XC[None, c0:c1]
    vb = _sg((Xs - sx0) / 0.8) * _sg((sx1 - Xs) / 0.8)
    post_el = _sg((Xs - sx1 - 8) / 2) * _sg((x_post - 8 - Xs) / 2) * 0.5
    A[r0s:r1s, c0:c1] += (0.45 * (1 - 0.6 * disc))[:, None] * vb + 0.18 * post_el
    # sternum
    _band_x(A, -5, 150, lambda y: x_ant + 8 + 0.05 * y, 4.0, 1.0, cortex=0.05, marrow=0.02)
    # trachea
    cy = body.carina
    _band_x(A, -170, cy, lambda y: -25 + 0.077 * (y + 170), body.trachea_w / 2, -1.0,
            cortex=0.0, marrow=MU * 0.9, k=1.0, dg=lambda y: 0.077 + 0 * y)
    # posterior ribs (superimposed)
    for i in range(10):
        y0 = body.rib_y1 + i * body.rib_pitch * (H / body.H0["right"]) ** 0.85
        for off in (0.0, 7.0):
            _band_x(A, y0 - 5 + off, y0 + 70 + off,
                    lambda y, y0=y0, off=off: x_post - 35 - 1.3 * (y - y0 - off) - 0.004 * (y - y0 - off) ** 2,
                    4.5, 0.7, dg=lambda y, y0=y0, off=off: -1.3 - 0.008 * (y - y0 - off))
    # raised arms (soft tissue over the upper chest)
    r0a, r1a = _rows(-150, 110)
    ya = YC[r0a:r1a]
    armx = -10 - 0.25 * (ya + 150)
    A[r0a:r1a] += MU * 60 * np.exp(-((XC[None, :] - armx[:, None]) / 45.0) ** 2) * _sg((40 - ya) / 10)[:, None]
    # diaphragm/abdomen already dense; gastric bubble
    gy = H - 30
    r0g, r1g = _rows(gy - 14, gy + 14); c0g, c1g = _cols(-60, 0)
    qq = ((XC[None, c0g:c1g] + 30) / 28) ** 2 + ((YC[r0g:r1g, None] - gy) / 12) ** 2
    A[r0g:r1g, c0g:c1g] -= 0.35 * np.sqrt(np.clip(1 - qq, 0, None))
    return A


# ----------------------------------------------------------------------------- acquisition
_MANUF = [("Agfa", "CR 85-X", "CR"), ("Fujifilm", "FCR Capsula XLII", "CR"), ("Carestream", "DRX-Evolution", "DX"),
          ("Siemens", "Ysio Max", "DX"), ("Philips", "DigitalDiagnost", "DX"), ("GE Healthcare", "Definium 6000", "DX"),
          ("Konica Minolta", "Aero DR", "DX"), ("Carestream", "DRX-Revolution", "DX"), ("Philips", "MobileDiagnost wDR", "DX"),
          ("Konica Minolta", "REGIUS 190", "CR")]


def make_acq(rng, view="PA", portable=False, mag_range=(0.95, 1.05), rot=None):
    a = {}
    if portable:
        pool = [m for m in _MANUF if "Mobile" in m[1] or "Revolution" in m[1] or m[2] == "CR"]
    else:
        pool = _MANUF
    man = pool[int(rng.integers(len(pool)))]
    a["manufacturer"], a["model"], a["modality"] = man
    p = float(np.round(rng.uniform(0.12, 0.2), 3))
    a["spacing"] = p
    fy = rng.uniform(360, 440); fx = rng.uniform(345, 430) if rng.random() < 0.6 else fy
    a["rows"] = int(np.clip(round(fy / p / 2) * 2, 1700, 3000))
    a["cols"] = int(np.clip(round(fx / p / 2) * 2, 1700, 3000))
    a["rot"] = float(rot if rot is not None else np.clip(rng.normal(0, 2.0 if portable else 1.3), -4, 4))
    a["mag"] = float(rng.uniform(*mag_range))
    a["shift_x"] = float(rng.normal(0, 7))
    a["top_margin"] = float(rng.uniform(35, 70))
    a["mono1"] = bool(rng.random() < (0.5 if a["modality"] == "CR" else 0.25))
    a["rle"] = bool(rng.random() < 0.3)
    a["bits"] = int(rng.integers(12, 16))
    a["gamma"] = float(rng.uniform(0.8, 1.3))
    a["contrast"] = float(rng.uniform(2.5, 5.5))
    a["eq"] = float(rng.uniform(0.15, 0.65))
    a["us"] = float(rng.uniform(0.2, 1.4))
    a["us_sigma"] = float(rng.uniform(0.8, 3.0))
    a["scatter"] = float(rng.uniform(0.08, 0.25) if not portable else rng.uniform(0.25, 0.5))
    base = rng.uniform(0.010, 0.022) if a["modality"] == "DX" else rng.uniform(0.015, 0.03)
    a["noise"] = float(base * (1.7 if portable else 1.0))
    a["grid"] = bool(rng.random() < 0.45)
    a["grid_period"] = float(rng.uniform(2.2, 5.0))
    a["grid_amp"] = float(rng.uniform(0.004, 0.012))
    a["grid_vertical"] = bool(rng.random() < 0.7)
    a["collim"] = [float(rng.uniform(0, 28)) if rng.random() < 0.65 else 0.0 for _ in range(4)]
    a["marker"] = "L" if view == "LL" else ("R" if rng.random() < 0.7 else "L")
    a["kvp"] = float(rng.uniform(110, 125) if not portable else rng.uniform(80, 95))
    a["view"] = view
    a["portable"] = portable
    a["lo_pct"] = float(rng.uniform(0.2, 1.5))
    if portable:
        a["text"] = [rng.choice(["PORTABLE", "PORTABLE AP", "AP PORTABLE"]),
                     rng.choice(["SEMI ERECT", "SITTING", "UPRIGHT", "AP"])]
    elif view == "LL":
        a["text"] = [rng.choice(["LAT", "LATERAL", "LEFT LAT"])] if rng.random() < 0.7 else []
    else:
        a["text"] = [rng.choice(["PA", "PA ERECT", "CHEST PA"])] if rng.random() < 0.5 else []
    return a


def _lowpass(a, sig_px):
    """Large-kernel Gaussian low-pass of an array whose sides are multiples of 8."""
    h, w = a.shape
    small = a.reshape(h // 8, 8, w // 8, 8).mean((1, 3))
    small = ndimage.gaussian_filter(small, max(0.5, sig_px / 8), mode="nearest")
    return _up2(_up2(_up2(small)))


_GTAB = None


def _gauss_noise(rng, shape):
    """Fast standard-normal noise: 256-level inverse-CDF table indexed by random bytes."""
    global _GTAB
    if _GTAB is None:
        from scipy.special import ndtri
        _GTAB = ndtri((np.arange(256) + 0.5) / 256).astype(np.float32)
        _GTAB /= _GTAB.std()
    return _GTAB[rng.integers(0, 256, shape, dtype=np.uint8)]


def _up2(a):
    h, w = a.shape
    e = np.empty((2 * h, w), np.float32)
    e[0::2] = 0.75 * a
    e[0::2][1:] += 0.25 * a[:-1]
    e[0] += 0.25 * a[0]
    e[1::2] = 0.75 * a
    e[1::2][:-1] += 0.25 * a[1:]
    e[-1] += 0.25 * a[-1]
    o = np.empty((2 * h, 2 * w), np.float32)
    o[:, 0::2] = 0.75 * e
    o[:, 0::2][:, 1:] += 0.25 * e[:, :-1]
    o[:, 0] += 0.25 * e[:, 0]
    o[:, 1::2] = 0.75 * e
    o[:, 1::2][:, :-1] += 0.25 * e[:, 1:]
    o[:, -1] += 0.25 * e[:, -1]
    return o


def _burn(img, mask, r, c, val):
    h, w = mask.shape
    r = int(np.clip(r, 0, img.shape[0] - h)); c = int(np.clip(c, 0, img.shape[1] - w))
    sub = img[r:r + h, c:c + w]
    sub[mask] = val


def acquire(Acan, acq, rng, ycen_patient, mirrored=False):
    """Project the canonical attenuation onto the detector and process it: uint16 pixels."""
    R, C, p = acq["rows"], acq["cols"], acq["spacing"]
    Hw, Ww = R // 2, C // 2
    Hp, Wp = -(-Hw // 8) * 8, -(-Ww // 8) * 8
    phi = -math.radians(acq["rot"])
    mag = acq["mag"]
    cf, sf = math.cos(phi), math.sin(phi)
    k = 2 * p / (mag * RES)
    cx0 = p * (0.5 - (C - 1) / 2); cy0 = p * (0.5 - (R - 1) / 2)
    M = np.array([[cf * k, sf * k], [-sf * k, cf * k]])
    off = np.array([((sf * cx0 + cf * cy0) / mag + ycen_patient - Y0) / RES,
                    ((cf * cx0 - sf * cy0) / mag + acq["shift_x"] - X0) / RES])
    Aw = ndimage.affine_transform(Acan, M, offset=off, output_shape=(Hp, Wp), order=1, mode="nearest")
    if not np.isfinite(Aw).all():
        raise FloatingPointError("non-finite attenuation")
    spw = 2 * p
    I = np.exp(-Aw)
    I += acq["scatter"] * _lowpass(I, 40 / spw)
    pl = -np.log(I)
    plow = _lowpass(pl, 25 / spw)
    ref = float(np.median(pl[::8, ::8]))
    pl -= acq["eq"] * (plow - ref)
    if acq["us"] > 0:
        sm = ndimage.gaussian_filter(pl, max(0.7, acq["us_sigma"] / spw), truncate=2.5)
        pl += acq["us"] * (pl - sm)
    if acq["modality"] == "CR":
        pl = ndimage.gaussian_filter(pl, 0.5, truncate=2.5)
    sub = pl[::4, ::4]
    lo, hi = np.percentile(sub, [acq["lo_pct"], 99.8])
    hi = hi + 0.05 * (hi - lo)
    std_small = (acq["noise"] * np.exp(0.5 * np.clip(Aw[::8, ::8] - 2.0, -3, 3))).astype(np.float32)
    P = _up2(pl[:Hw, :Ww])
    std = np.repeat(np.repeat(std_small, 16, 0), 16, 1)[:R, :C]
    noise = _gauss_noise(rng, (R, C))
    noise *= std
    P += noise
    del noise, std
    if acq["grid"]:
        n = C if acq["grid_vertical"] else R
        gline = (acq["grid_amp"] * np.cos(2 * np.pi * np.arange(n) / acq["grid_period"] + rng.uniform(0, 6.3))).astype(np.float32)
        P += gline[None, :] if acq["grid_vertical"] else gline[:, None]
    maxv, lut = _display_lut(acq)
    P -= lo
    P *= 4095.0 / (hi - lo)
    np.clip(P, 0, 4095, out=P)
    img = lut[P.astype(np.uint16)]
    del P

    img = _mark_and_collimate(img, acq, R, C, p, maxv, mirrored)
    return np.ascontiguousarray(img)


def _mark_and_collimate(img, acq, R, C, p, maxv, mirrored):
    """The lead side marker (mirrored with the image), bright collimation borders and the burned-in text (always readable)."""
    def dval(v):
        x = int(round(v * maxv))
        return maxv - x if acq["mono1"] else x

    # lead side marker (physical, so it is mirrored with the image)
    mk = _text_mask(acq["marker"], max(2, int(round(12.0 / 7 / p))))
    mr = int(R * 0.07 + acq["collim"][0] / p)
    if acq["marker"] == "R":
        mc = int(C * 0.07 + acq["collim"][2] / p)
    else:
        mc = int(C * 0.93 - acq["collim"][3] / p - mk.shape[1])
    if acq["view"] == "LL":
        mc = int(C * 0.07 + acq["collim"][2] / p)
    _burn(img, mk, mr, mc, dval(0.99))
    if mirrored:
        img = img[:, ::-1]
    # collimation (unexposed borders display bright)
    t, b, l, r = [int(m / p) for m in acq["collim"]]
    cv = dval(0.95)
    if t:
        img[:t] = cv
    if b:
        img[R - b:] = cv
    if l:
        img[:, :l] = cv
    if r:
        img[:, C - r:] = cv
    # burned-in text (made by the modality after orientation, so always readable)
    tp = max(2, int(round(7.0 / 7 / p)))
    row = int(R * 0.03) + t
    marker_left = (mc < C / 2) != mirrored
    for line in acq["text"]:
        tm = _text_mask(line, tp)
        col = (int(C * 0.04) + l) if not marker_left else (C - tm.shape[1] - int(C * 0.04) - r)
        _burn(img, tm, row, col, dval(1.0))
        row += tm.shape[0] + 3 * tp
    return img


def _display_lut(acq):
    """The display look-up table (gamma, then a tanh contrast curve; inverted for MONOCHROME1) over 4096 steps."""
    maxv = (1 << acq["bits"]) - 1
    xs = np.linspace(0, 1, 4096)
    y = xs ** acq["gamma"]
    c = acq["contrast"]
    y = (np.tanh(c * (y - 0.5)) - math.tanh(-0.5 * c)) / (2 * math.tanh(0.5 * c))
    disp = 0.02 + 0.96 * y
    lut = np.round(disp * maxv).astype(np.uint16)
    if acq["mono1"]:
        lut = (maxv - lut).astype(np.uint16)
    return maxv, lut


# ----------------------------------------------------------------------------- DICOM
def _packbits_rows(P):
    """DICOM RLE (PackBits) encoding of one byte plane, each row separately."""
    Rr, C = P.shape
    flat = P.ravel()
    n = flat.size
    brk = np.empty(n, bool)
    brk[0] = True
    brk[1:] = flat[1:] != flat[:-1]
    brk[::C] = True
    starts = np.flatnonzero(brk)
    lens = np.diff(np.append(starts, n))
    rep = lens >= 3
    prev_rep = np.empty_like(rep)
    prev_rep[0] = True
    prev_rep[1:] = rep[:-1]
    newg = rep | prev_rep | ((starts % C) == 0)
    gidx = np.flatnonzero(newg)
    gstart = starts[gidx]
    glen = np.add.reduceat(lens, gidx)
    grep = rep[gidx]
    nch = (glen + 127) // 128
    tot = int(nch.sum())
    cg = np.repeat(np.arange(gidx.size), nch)
    ci = np.arange(tot) - np.repeat(np.cumsum(nch) - nch, nch)
    cstart = gstart[cg] + 128 * ci
    clen = np.minimum(128, glen[cg] - 128 * ci)
    crep = grep[cg]
    cout = np.where(crep, 2, 1 + clen)
    coff = np.cumsum(cout) - cout
    total = int(cout.sum())
    out = np.zeros(total + (total & 1), np.uint8)
    out[coff] = np.where(crep, np.where(clen >= 2, 257 - clen, 0), clen - 1).astype(np.uint8)
    ri = np.flatnonzero(crep)
    out[coff[ri] + 1] = flat[cstart[ri]]
    li = np.flatnonzero(~crep)
    L = clen[li]
    base = np.arange(int(L.sum())) - np.repeat(np.cumsum(L) - L, L)
    out[np.repeat(coff[li] + 1, L) + base] = flat[np.repeat(cstart[li], L) + base]
    return out.tobytes()


def rle_encode_frame(img):
    b = img.astype(">u2").view(np.uint8).reshape(img.shape[0], img.shape[1], 2)
    segs = [_packbits_rows(np.ascontiguousarray(b[:, :, 0])), _packbits_rows(np.ascontiguousarray(b[:, :, 1]))]
    hdr = np.zeros(16, "<u4")
    hdr[0] = 2
    hdr[1] = 64
    hdr[2] = 64 + len(segs[0])
    return hdr.tobytes() + segs[0] + segs[1]


def _uid(*parts):
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[GENERATOR] + [str(p) for p in parts])


def write_dicom(path, img, acq, pat, when, uids, orientation, desc):
    fm = FileMetaDataset()
    sop = DX_SOP if acq["modality"] == "DX" else CR_SOP
    fm.MediaStorageSOPClassUID = sop
    fm.MediaStorageSOPInstanceUID = uids["sop"]
    fm.TransferSyntaxUID = RLELossless if acq["rle"] else ExplicitVRLittleEndian
    fm.ImplementationClassUID = UID_PREFIX + "4.2"
    fm.ImplementationVersionName = "ATLAS2D_1"
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = uids["sop"]
    d = when.strftime("%Y%m%d"); tm = when.strftime("%H%M%S")
    ds.StudyDate = d; ds.SeriesDate = d; ds.AcquisitionDate = d; ds.ContentDate = d
    ds.StudyTime = tm; ds.SeriesTime = tm; ds.AcquisitionTime = tm; ds.ContentTime = tm
    ds.AccessionNumber = uids["acc"]
    ds.Modality = acq["modality"]
    if acq["modality"] == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = acq["manufacturer"]
    ds.InstitutionName = pat["site"]
    ds.ReferringPhysicianName = ""
    ds.StationName = "XR" + uids["acc"][-3:]
    ds.StudyDescription = "XR CHEST" + (" PORTABLE" if acq["portable"] else "")
    ds.SeriesDescription = desc
    ds.ManufacturerModelName = acq["model"]
    ds.PatientName = pat["name"]
    ds.PatientID = pat["id"]
    ds.PatientBirthDate = pat["birth"]
    ds.PatientSex = pat["sex"]
    age = (when.date() - _dt.date(int(pat["birth"][:4]), int(pat["birth"][4:6]), int(pat["birth"][6:]))).days // 365
    ds.PatientAge = "%03dY" % max(age, 1)
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "%.0f" % acq["kvp"]
    ds.DistanceSourceToDetector = "1800" if not acq["portable"] else "1000"
    ds.ImagerPixelSpacing = [acq["spacing"], acq["spacing"]]
    if acq["modality"] == "DX":
        ds.DetectorType = "SCINTILLATOR"
    ds.ViewPosition = acq["view"]
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = uids["acc"][-6:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = orientation
    if acq["modality"] == "DX":
        ds.ImageLaterality = "U"
        ds.PositionerType = "NONE" if acq["portable"] else "COLUMN"
        code = Dataset()
        code.CodeValue = "43799004"; code.CodingSchemeDesignator = "SCT"; code.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = Sequence([code])
        ds.AcquisitionContextSequence = Sequence([])
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if acq["mono1"] else -1
        ds.RescaleIntercept = "0"; ds.RescaleSlope = "1"; ds.RescaleType = "US"
        ds.PresentationLUTShape = "INVERSE" if acq["mono1"] else "IDENTITY"
        ds.BurnedInAnnotation = "YES" if acq["text"] else "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if acq["mono1"] else "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.PixelSpacing = [acq["spacing"], acq["spacing"]]
    ds.BitsAllocated = 16
    ds.BitsStored = acq["bits"]
    ds.HighBit = acq["bits"] - 1
    ds.PixelRepresentation = 0
    maxv = (1 << acq["bits"]) - 1
    ds.WindowCenter = "%d" % int(maxv * acq.get("wc", 0.5))
    ds.WindowWidth = "%d" % int(maxv * acq.get("ww", 1.0))
    if acq["rle"]:
        ds.PixelData = encapsulate([rle_encode_frame(img)])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = img.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------- pairs and labels
CASES = ("change", "stable", "normal", "mirrored", "lateral", "other_person", "devices_only", "ap_vs_pa", "rotated")
SIZE_RANGE = {"nodule": (8.0, 28.5), "mass": (37.0, 76.0), "consolidation": (38.0, 105.0),
              "effusion": (15.0, 150.0), "pneumothorax": (5.0, 38.0)}
ZONE_T = {"upper": (0.15, 0.27), "middle": (0.41, 0.59), "lower": (0.73, 0.84)}
_FAMILY = ["SMITH", "GARCIA", "MULLER", "ROSSI", "NGUYEN", "KOWALSKI", "SILVA", "JOHANSSON", "OKAFOR", "TANAKA",
           "DUBOIS", "HANSEN", "MOREAU", "NOVAK", "SCHMIDT", "PETROV", "ALVAREZ", "MURPHY", "COHEN", "SATO"]
_GIVEN_F = ["ANNA", "MARIA", "LENA", "SOFIA", "AYA", "GRACE", "IRENE", "NORA", "ELIF", "CLARA"]
_GIVEN_M = ["JOHN", "LUCA", "PIOTR", "KENJI", "OMAR", "ERIK", "MATEO", "SAMUEL", "IVAN", "HUGO"]
_SITES = ["GENERAL HOSPITAL", "CITY CLINIC", "ST MARY MEDICAL CENTRE", "UNIVERSITY HOSPITAL", "COMMUNITY IMAGING"]


class _Retry(Exception):
    pass


def _sizes(rng, kind, change, hmax=None):
    lo, hi = SIZE_RANGE[kind]
    if hmax is not None:
        hi = min(hi, hmax)
    if change == "stable":
        s = rng.uniform(lo, hi)
        return s, s * rng.uniform(0.985, 1.015)
    if change == "new":
        return None, rng.uniform(lo, hi)
    if change == "resolved":
        return rng.uniform(lo, hi), None
    a = rng.uniform(lo, hi / 1.5)
    b = min(hi, a * rng.uniform(1.5, 2.1))
    return (a, b) if change == "worsened" else (b, a)


def _apart(item, placed, geos):
    for other in placed:
        if other[1] != item[1]:
            continue
        a, b = (item, other) if item[0] == "blob" else (other, item)
        if a[0] != "blob":
            continue          # two pleural collections on one side are excluded elsewhere
        g = geos[a[1]]
        X, Y, R = a[2], a[3], a[4]
        if b[0] == "blob":
            if math.hypot(X - b[2], Y - b[3]) < R + b[4] + 12:
                return False
        elif b[0] == "eff":
            if Y + R > g.apex + g.H - b[2] - 12:
                return False
        elif b[0] == "ptx":
            t = g.t_of(Y)
            if t < 0.85 and abs(X) + R > float(g.xlat(np.array([t]))[0]) - b[2] - 12:
                return False
    return True


def _plan_findings(rng, body, n_change, n_stable, urgent_first=False):
    used = set()
    placed = []
    out = []
    kinds = ["nodule", "mass", "consolidation", "effusion", "pneumothorax"]
    kw = np.array([0.2, 0.13, 0.22, 0.24, 0.21])
    st0 = dict(insp=0.0, roll=0.0, mid_shift=0.0)
    geos = {s: LungGeom(body, s, st0) for s in ("right", "left")}
    for j in range(n_change + n_stable):
        for _try in range(40):
            stable = j >= n_change
            change = "stable" if stable else str(rng.choice(["new", "worsened", "improved", "resolved"], p=[.35, .2, .2, .25]))
            kind = str(rng.choice(kinds, p=kw / kw.sum()))
            if urgent_first and j == 0:
                kind = "pneumothorax" if rng.random() < 0.5 else "effusion"
                change = "new" if kind == "effusion" or rng.random() < 0.6 else "worsened"
            side = "right" if rng.random() < 0.5 else "left"
            g = geos[side]
            spec = dict(kind=kind, side=side, change=change, seed=int(rng.integers(1 << 30)))
            if kind == "effusion":
                slot = [(side, "lower"), (side, "pleural")]
                sp, sc = _effusion_sizes(rng, body, kind, side, change, urgent_first, j)
            elif kind == "pneumothorax":
                slot = [(side, "upper"), (side, "pleural")]
                sp, sc = _sizes(rng, kind, change)
            else:
                zone = str(rng.choice(["upper", "middle", "lower"]))
                slot = [(side, zone)]
                sp, sc = _sizes(rng, kind, change)
                smax = max(s for s in (sp, sc) if s is not None)
                t = rng.uniform(*ZONE_T[zone])
                if kind in ("mass", "consolidation") and zone == "upper":
                    t = max(t, 0.22)
                wlo, whi = (0.55, 0.8) if (side == "left" and t > 0.45) else (0.3, 0.72)
                w = rng.uniform(wlo, whi)
                X, Y = g.point(t, w)
                rad = smax / 2 * (0.55 if kind == "consolidation" else 1.0)
                if not g.inside(g.s * X, Y, margin=min(rad * 0.8, 25)):
                    continue
                spec.update(t=float(t), w=float(w))
                _shape_spec(rng, spec, kind, side, zone, t, smax, g)
            if any(s in used for s in slot):
                continue
            if kind in ("effusion", "pneumothorax") and any((side, "pleural") == u for u in used):
                continue
            # keep lesions apart from each other and from pleural collections (honest sizes)
            smax = max(x for x in (sp, sc) if x is not None)
            if kind in ("nodule", "mass", "consolidation"):
                X, Y = g.point(spec["t"], spec["w"])
                R = smax / 2
                item = ("blob", side, X, Y, R)
            elif kind == "effusion":
                item = ("eff", side, smax)
            else:
                item = ("ptx", side, smax)
            if not _apart(item, placed, geos):
                continue
            placed.append(item)
            used.update(slot)
            spec.update(size_p=sp, size_c=sc)
            out.append(spec)
            break
    if sum(f["change"] != "stable" for f in out) < min(1, n_change) or \
            sum(f["change"] == "stable" for f in out) < min(1, n_stable):
        raise _Retry("could not place findings")
    return out


def _shape_spec(rng, spec, kind, side, zone, t, smax, g):
    """A round lesion's aspect/lobulation/spicules, or a consolidation's blur (and a fissure edge in the right upper zone), into spec."""
    if kind == "nodule":
        spec.update(aspect=float(rng.uniform(1.0, 1.3)), lob=float(rng.uniform(0, 0.04)))
    elif kind == "mass":
        spec.update(aspect=float(rng.uniform(1.0, 1.25)), lob=float(rng.uniform(0.05, 0.11)),
                    spic=int(rng.integers(0, 14)) if rng.random() < 0.4 else 0)
    else:
        spec.update(bw=float(rng.uniform(1.6, 2.6)))
        if side == "right" and zone == "upper" and rng.random() < 0.6:
            spec["fissure"] = float(t + 0.45 * (smax / 2) / g.H)


def _effusion_sizes(rng, body, kind, side, change, urgent_first, j):
    """An effusion's prior and current heights: a large new one for an urgent first finding, new ones mostly small, none near the 1/3 boundary."""
    Hmin = body.H0[side] - 25
    if urgent_first and j == 0:
        sp, sc = None, rng.uniform(0.40, 0.55) * Hmin
    elif change == "new" and rng.random() < 0.6:
        sp, sc = None, rng.uniform(15, 0.27 * Hmin)
    else:
        sp, sc = _sizes(rng, kind, change, hmax=0.55 * Hmin)
        if change == "new" and sc > 0.27 * Hmin:
            sc = rng.uniform(0.40, 0.55) * Hmin
    return sp, sc


def _plan_device(rng, kind):
    d = dict(kind=kind, jit=[float(x) for x in rng.uniform(-4, 4, 6)])
    if kind == "ett":
        d["tip"] = float(rng.uniform(30, 60))
    elif kind == "ng":
        d["tip"] = float(rng.uniform(0, 40))
    elif kind == "cvc":
        d["tip"] = float(rng.uniform(-5, 25)); d["route"] = "ij" if rng.random() < 0.6 else "sc"
    elif kind == "drain":
        d["tip"] = float(rng.uniform(0, 30)); d["side"] = "right" if rng.random() < 0.5 else "left"
    elif kind == "ecg":
        pos = [(-0.78, 0.0), (0.78, 0.0), (0.85, 0.82)]
        if rng.random() < 0.5:
            pos.append((-0.85, 0.82))
        d["pos"] = [(x + rng.uniform(-0.06, 0.06), y + rng.uniform(-0.05, 0.05)) for x, y in pos]
    return d


_DEV_NAME = {"ett": "endotracheal tube", "ng": "nasogastric tube", "cvc": "central venous line",
             "drain": "chest drain", "ecg": "ECG leads"}


def _dev_side(d):
    return {"ett": "bilateral", "ng": "left", "cvc": "right", "ecg": "bilateral"}.get(d["kind"], d.get("side"))


def _state(rng, view, portable=False):
    roll = float(np.clip(rng.normal(0, 1.8 if portable else 1.2), -4, 4))
    st = dict(insp=float(rng.uniform(-20, -6) if portable else rng.uniform(-8, 8)), roll=roll,
              mid_shift=roll * 2.2, view=view)
    if view == "AP":
        st["ap_mag"] = float(rng.uniform(1.10, 1.18))
    return st


def _acq_note(a, st, mirrored):
    s = "%s %s %s %s %.3fmm %dx%d %s %s, %d-bit" % (
        a["modality"], a["manufacturer"], a["view"], "portable" if a["portable"] else "",
        a["spacing"], a["rows"], a["cols"], "MONOCHROME1" if a["mono1"] else "MONOCHROME2",
        "RLE" if a["rle"] else "native", a["bits"])
    extra = ["mag %.3f" % a["mag"], "rot %+.1fdeg" % a["rot"]]
    if st is not None:
        extra += ["diaphragm %+.0fmm" % st["insp"], "roll %+.1fdeg" % st["roll"]]
    if a["grid"]:
        extra.append("grid lines")
    if any(a["collim"]):
        extra.append("collimated")
    if a["text"]:
        extra.append("text '%s'" % "/".join(a["text"]))
    extra.append("marker %s" % a["marker"])
    if mirrored:
        extra.append("stored mirrored (R\\F)")
    return " ".join(s.split()) + " [" + ", ".join(extra) + "]"


def _image(body, st, acq, lesions, devices, rng, mirrored):
    if acq["view"] == "LL":
        A = render_lateral(body, st); meas, tips = [], []
    else:
        A, meas, tips = render_frontal(body, st, lesions, devices)
    fov_y = acq["rows"] * acq["spacing"] / acq["mag"]
    ycen = body.apex["right"] - acq["top_margin"] / acq["mag"] + fov_y / 2
    img = acquire(A, acq, rng, ycen, mirrored=mirrored)
    return img, meas, tips


def _try_pair(rng, seed, idx, case, pid):
    body = make_body(rng)
    body_p = make_body(rng, sex=body.sex) if case == "other_person" else body
    lateral = case == "lateral"
    portable_c = case == "ap_vs_pa"
    view_p = "LL" if lateral else "PA"
    view_c = "LL" if lateral else ("AP" if portable_c else "PA")
    mag_range = (0.96, 1.04)
    rot_c = float(rng.choice([-1, 1]) * rng.uniform(8, 12)) if case == "rotated" else None
    acq_p = make_acq(rng, view_p, False, mag_range)
    acq_c = make_acq(rng, view_c, portable_c, mag_range, rot=rot_c)
    st_p = _state(rng, view_p); st_c = _state(rng, view_c, portable_c)
    mir_c = mir_p = False
    if case == "mirrored":
        mir_c = True
        mir_p = bool(rng.random() < 0.35)
    n_change = n_stable = 0
    if case in ("change", "mirrored", "ap_vs_pa", "rotated"):
        n_change = 1 if rng.random() < 0.7 else 2
        n_stable = 1 if rng.random() < 0.35 else 0
    elif case == "stable":
        n_stable = 1 if rng.random() < 0.65 else 2
    elif case == "devices_only":
        n_stable = 1 if rng.random() < 0.35 else 0
    urgent_first = case == "ap_vs_pa" and rng.random() < 0.5
    specs = _plan_findings(rng, body, n_change, n_stable, urgent_first) if n_change + n_stable else []
    # devices
    dev_p, dev_c, dev_notes = _pair_devices(rng, case)
    les_p = [dict(s, size=s["size_p"]) for s in specs if s["size_p"] is not None]
    les_c = [dict(s, size=s["size_c"]) for s in specs if s["size_c"] is not None]
    img_p, meas_p, tips_p = _image(body_p, st_p, acq_p, les_p, dev_p, rng, mir_p)
    geo_p = st_p.get("_geom")
    img_c, meas_c, tips_c = _image(body, st_c, acq_c, les_c, dev_c, rng, mir_c)
    geo_c = st_c.get("_geom")
    findings = _lesion_labels(specs, meas_p, meas_c, acq_p, acq_c)
    # devices
    _device_labels(dev_p, dev_c, tips_p, tips_c, geo_p, geo_c, findings, dev_notes)
    expect, notes = _pair_notes(case, acq_p, acq_c, st_p, st_c, mir_p, mir_c, lateral, portable_c, dev_notes)
    return dict(img_p=img_p, img_c=img_c, acq_p=acq_p, acq_c=acq_c, mir_p=mir_p, mir_c=mir_c,
                findings=findings, expect=expect, notes="; ".join(notes), body=body)


def _pair_notes(case, acq_p, acq_c, st_p, st_c, mir_p, mir_c, lateral, portable_c, dev_notes):
    """What the engine is expected to do (compare or not) and the pair's notes (acquisitions, case, devices)."""
    if case in ("lateral", "other_person"):
        expect = "not_compared"
    else:
        expect = "compare"
    notes = ["prior: " + _acq_note(acq_p, st_p if not lateral else None, mir_p),
             "current: " + _acq_note(acq_c, st_c if not lateral else None, mir_c)]
    if portable_c:
        notes.append("current AP portable vs PA prior (heart magnified x%.2f)" % st_c["ap_mag"])
    if case == "rotated":
        notes.append("current rotated %+.1f deg in plane" % acq_c["rot"])
    if case == "other_person":
        notes.append("prior is a different body with the same PatientID")
    if case == "lateral":
        notes.append("both lateral (LL) views")
    if dev_notes:
        notes.append("devices: " + "; ".join(dev_notes))
    return expect, notes


def _device_labels(dev_p, dev_c, tips_p, tips_c, geo_p, geo_c, findings, dev_notes):
    """A support_device label per device kind (new, resolved or stable; zone of its tip) into findings, a note each into dev_notes."""
    def dev_zone(d, tip, geo):
        side = _dev_side(d)
        g = geo["right" if side == "bilateral" else side]
        return zone_of(float(np.clip(g.t_of(tip[1]), 0, 1.5)))

    seen = {}
    for d, tip in zip(dev_p, tips_p):
        seen[d["kind"]] = [d, tip, None, None]
    for d, tip in zip(dev_c, tips_c):
        seen.setdefault(d["kind"], [None, None, None, None])
        seen[d["kind"]][2:] = [d, tip]
    for kd, (dp, tp, dc, tc) in seen.items():
        if dp is not None and dc is not None:
            ch = "stable"
            note = "%s moved" % _DEV_NAME[kd] if dc.get("moved") or dp.get("tip") != dc.get("tip") else "%s unchanged" % _DEV_NAME[kd]
            if dp is not dc and dp.get("tip") == dc.get("tip") and not dc.get("moved"):
                note = "%s unchanged" % _DEV_NAME[kd]
        elif dc is not None:
            ch = "new"; note = "%s added" % _DEV_NAME[kd]
        else:
            ch = "resolved"; note = "%s removed" % _DEV_NAME[kd]
        d = dc or dp
        z = dev_zone(d, tc if dc is not None else tp, geo_c if dc is not None else geo_p)
        findings.append({"finding": "support_device", "side": _dev_side(d), "zone": z, "change": ch,
                         "size_mm_prior": None, "size_mm_current": None, "urgent": False})
        dev_notes.append(note)


def _lesion_labels(specs, meas_p, meas_c, acq_p, acq_c):
    """Each planned finding's label from what was drawn (zone, size x magnification); _Retry when a drawn size or change misses the brief's ranges."""
    findings = []
    ip = ic = 0
    for s in specs:
        mp = mc = None
        if s["size_p"] is not None:
            mp = meas_p[ip]; ip += 1
        if s["size_c"] is not None:
            mc = meas_c[ic]; ic += 1
        zp = mp["zone"] if mp else None
        zc = mc["zone"] if mc else None
        if zp and zc and zp != zc:
            raise _Retry("zone differs")
        szp = round(mp["size"] * acq_p["mag"], 1) if mp else None
        szc = round(mc["size"] * acq_c["mag"], 1) if mc else None
        k = s["kind"]
        for sz in (szp, szc):
            if sz is None:
                continue
            if (k == "nodule" and not 8 <= sz <= 30) or (k == "mass" and not 30 < sz <= 80) or \
               (k == "consolidation" and not 30 <= sz <= 120) or (k == "effusion" and not 14 <= sz <= 150) or \
               (k == "pneumothorax" and not 4.8 <= sz <= 40):
                raise _Retry("size out of range")
        ch = s["change"]
        if ch == "stable" and abs(szc / szp - 1) > 0.10:
            raise _Retry("stable not stable")
        if ch == "worsened" and szc / szp < 1.25:
            raise _Retry("worsened too small")
        if ch == "improved" and szc / szp > 0.8:
            raise _Retry("improved too small")
        urgent = (k == "pneumothorax" and ch in ("new", "worsened")) or \
                 (k == "effusion" and ch == "new" and bool(mc and mc.get("large")))
        findings.append({"finding": k, "side": s["side"], "zone": zc or zp, "change": ch,
                         "size_mm_prior": szp, "size_mm_current": szc, "urgent": bool(urgent)})
    return findings


def _pair_devices(rng, case):
    """Devices on the prior and the current: added/removed/moved/mixed for devices_only, an ECG (and more) on a portable, sometimes one in both."""
    dev_p, dev_c, dev_notes = [], [], []
    if case == "devices_only":
        kinds = list(rng.permutation(["ett", "ng", "cvc", "drain", "ecg"]))
        mode = str(rng.choice(["added", "removed", "moved", "mixed"], p=[.35, .25, .2, .2]))
        base = [_plan_device(rng, k) for k in kinds[:int(rng.integers(0, 3))]]
        if mode == "added":
            dev_p = base; dev_c = base + [_plan_device(rng, k) for k in kinds[len(base):len(base) + int(rng.integers(1, 3))]]
        elif mode == "removed":
            extra = [_plan_device(rng, k) for k in kinds[len(base):len(base) + int(rng.integers(1, 3))]]
            dev_p = base + extra; dev_c = base
        elif mode == "moved":
            mv = _plan_device(rng, str(rng.choice(["ett", "cvc", "ng", "drain"])))
            if mv["kind"] in [d["kind"] for d in base]:
                base = [d for d in base if d["kind"] != mv["kind"]]
            mv2 = dict(mv); mv2["tip"] = mv["tip"] + float(rng.choice([-1, 1]) * rng.uniform(20, 35))
            mv2["moved"] = True
            dev_p = base + [mv]; dev_c = base + [mv2]
        else:
            a = _plan_device(rng, kinds[3]); b = _plan_device(rng, kinds[4])
            dev_p = base + [a]; dev_c = base + [b]
    elif case == "ap_vs_pa":
        dev_c = [_plan_device(rng, "ecg")]
        if rng.random() < 0.4:
            dev_c.append(_plan_device(rng, str(rng.choice(["cvc", "ett", "ng"]))))
    elif case in ("change", "stable") and rng.random() < 0.12:
        dd = _plan_device(rng, str(rng.choice(["cvc", "ecg", "drain"])))
        dev_p = [dd]; dev_c = [dd]
    return dev_p, dev_c, dev_notes


def make_pair(out, seed, idx, case):
    pid = "%s-%04d" % (PAIR_PREFIX, idx + 1)
    res = None
    for attempt in range(10):
        rng = np.random.default_rng([seed, idx, attempt, 20261207])
        try:
            res = _try_pair(rng, seed, idx, case, pid)
            break
        except _Retry:
            continue
    if res is None:
        raise RuntimeError("could not build pair %s" % pid)
    rng = np.random.default_rng([seed, idx, 99])
    sex = res["body"].sex
    given = (_GIVEN_F if sex == "F" else _GIVEN_M)[int(rng.integers(10))]
    pat = dict(id="A2D%04d%05d" % (seed % 10000, idx + 1), name="%s^%s" % (_FAMILY[int(rng.integers(20))], given),
               sex=sex, site=_SITES[int(rng.integers(len(_SITES)))])
    cur = _dt.datetime(2017, 1, 1, 7, 0) + _dt.timedelta(days=int(rng.integers(0, 3000)), minutes=int(rng.integers(0, 12 * 60)))
    pri = cur - _dt.timedelta(days=int(rng.integers(30, 701)), minutes=int(rng.integers(-300, 300)))
    age = int(rng.integers(25, 90))
    pat["birth"] = (cur.date() - _dt.timedelta(days=age * 365 + int(rng.integers(0, 360)))).strftime("%Y%m%d")
    d = Path(out) / pid
    d.mkdir(parents=True, exist_ok=True)
    for which, img, acq, mir, when in (("prior", res["img_p"], res["acq_p"], res["mir_p"], pri),
                                       ("current", res["img_c"], res["acq_c"], res["mir_c"], cur)):
        uids = dict(study=_uid(seed, idx, which, "study"), series=_uid(seed, idx, which, "series"),
                    sop=_uid(seed, idx, which, "sop"), acc="A2D%07d%d" % (seed * 1000 + idx, which == "current"))
        acq["wc"] = float(rng.uniform(0.45, 0.55)); acq["ww"] = float(rng.uniform(0.85, 1.0))
        orient = ["P", "F"] if acq["view"] == "LL" else (["R", "F"] if mir else ["L", "F"])
        desc = "CHEST %s%s" % (acq["view"], " PORTABLE" if acq["portable"] else "")
        write_dicom(d / ("%s.dcm" % which), img, acq, pat, when, uids, orient, desc)
    return {"pair_id": pid, "generator": GENERATOR, "seed": seed, "case": res.get("case", None) or "",
            "prior": "%s/prior.dcm" % pid, "current": "%s/current.dcm" % pid, "expect": res["expect"],
            "findings": res["findings"], "notes": res["notes"]}


def _case_plan(seed, n_pairs, cases):
    plan = []
    if cases:
        for k, v in cases.items():
            if k not in CASES:
                raise ValueError("unknown case %r (known: %s)" % (k, ", ".join(CASES)))
            plan += [k] * int(v)
    rest = max(0, n_pairs - len(plan))
    if rest:
        nc = int(round(rest * 0.6)); ns = int(round(rest * 0.2))
        plan += ["change"] * nc + ["stable"] * ns + ["normal"] * (rest - nc - ns)
    rng = np.random.default_rng([seed, 4242])
    return [plan[i] for i in rng.permutation(len(plan))]


def generate(out_dir: Path, *, seed: int, n_pairs: int, cases: dict[str, int] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = _case_plan(seed, n_pairs, cases)
    with open(out / "labels.jsonl", "w") as fh:
        for i, case in enumerate(plan):
            rec = make_pair(out, seed, i, case)
            rec["case"] = case
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
    return out


# ----------------------------------------------------------------------------- series mode (issue 29)
# Several studies of one patient over 1-4 years.  Written from /work/briefs/series.md by the
# series helper, who read none of comparison/, workers/, benchmarks/ nor modeldev/evaluate.py;
# it reuses only this module's own body, lesion drawing, acquisition and DICOM writer (nothing
# is shared with thorax3d).
SER_N_STUDIES = (3, 5)            # studies per patient (inclusive)
SER_SPAN = (365, 1460)            # days from the first to the last study (1-4 years)
SER_STABLE_SPAN = 760             # stable-nodule series cover more than two years
SER_MIN_GAP = 30                  # days; closer routine follow-ups are rare
SER_PTX_GAP = (1, 12)             # days between films of a pneumothorax being followed
SER_STEP = (1.3, 1.7)             # true-size factor per interval of a growing/shrinking lesion
SER_STABLE_TOL = 1.15             # labels of an unchanged lesion differ by magnification only
SER_STEP_MIN = 1.15               # labels of a changing lesion differ at least this much
SER_VDT = (60.0, 400.0)           # volume doubling time (days) of a growing nodule
SER_NODULE = (7.0, 24.0)          # true nodule diameters (labels stay 8-30 mm with lobes/aspect)
SER_AP_P = 0.15                   # follow-up studies taken AP portable
SER_MIX_MIN = (("stable_nodule", 0.30), ("recurrent", 0.15))
SER_MIX_REST = (("growing_nodule", 0.11), ("resolving_consolidation", 0.09), ("growing_effusion", 0.09),
                ("pneumothorax", 0.09), ("none", 0.07), ("shrinking_mass", 0.05), ("appearing_nodule", 0.05))
SER_SECOND_P = 0.5                # series with a lesion that get a second one
SER_SECOND = (("nodule", "stable"), ("nodule", "appearing"), ("consolidation", "resolving"),
              ("nodule", "growing"), ("mass", "shrinking"))
SER_RECUR = (("nodule", 0.35), ("consolidation", 0.35), ("effusion", 0.15), ("pneumothorax", 0.15))
SER_MAIN = {"stable_nodule": ("nodule", "stable"), "growing_nodule": ("nodule", "growing"),
            "resolving_consolidation": ("consolidation", "resolving"), "growing_effusion": ("effusion", "growing"),
            "shrinking_mass": ("mass", "shrinking"), "appearing_nodule": ("nodule", "appearing")}
SER_TRIES = 12


def _ser_scenarios(seed: int, n: int) -> list[str]:
    """Main scenario per series: minimum shares rounded up, the rest by largest remainder, shuffled."""
    names = []
    for name, share in SER_MIX_MIN:
        names += [name] * int(math.ceil(share * n))
    names = names[:n]
    k = n - len(names)
    quota = np.array([w for _, w in SER_MIX_REST]) / sum(w for _, w in SER_MIX_REST) * k
    cnt = np.floor(quota).astype(int)
    for i in sorted(range(len(cnt)), key=lambda i: (cnt[i] - quota[i], i))[: k - int(cnt.sum())]:
        cnt[i] += 1
    for (name, _), c in zip(SER_MIX_REST, cnt):
        names += [name] * int(c)
    order = np.random.default_rng([seed, 0xA25E]).permutation(len(names))
    return [names[i] for i in order]


def _ser_days(rng, m: int, min_span: float = 0.0) -> list[int]:
    """m study days (first = 0) with irregular gaps spread over 1-4 years."""
    for _ in range(500):
        span = rng.uniform(max(min_span, SER_SPAN[0]), SER_SPAN[1])
        gaps = rng.gamma(2.0, 1.0, m - 1)
        gaps = np.round(gaps / gaps.sum() * span)
        if gaps.min() >= SER_MIN_GAP:
            return [0] + [int(x) for x in np.cumsum(gaps)]
    raise _Retry("no dates")


def _ser_steps(rng, n: int, lo: float, hi: float) -> list[float] | None:
    """n increasing sizes in [lo, hi], consecutive factors drawn from SER_STEP."""
    f = rng.uniform(SER_STEP[0], SER_STEP[1], n - 1)
    total = float(np.prod(f))
    if total > hi / lo:
        return None
    first = rng.uniform(lo, hi / total)
    return [float(first)] + [float(first * x) for x in np.cumprod(f)]


def _ser_limits(body, kind: str, side: str) -> tuple[float, float]:
    if kind == "nodule":
        return SER_NODULE
    lo, hi = SIZE_RANGE[kind]
    if kind == "effusion":
        hi = min(hi, 0.55 * (body.H0[side] - 25))
    return lo, hi


def _ser_vdt(rng, days) -> tuple[list[float], float] | None:
    """Growing nodule: diameter d0 * 2 ** (t / (3 VDT)), the volume doubling every VDT days."""
    d0 = rng.uniform(SER_NODULE[0], 10.0)
    t = np.array(days, float)
    lo = max(SER_VDT[0], t[-1] / (3 * math.log2(SER_NODULE[1] / d0)))
    hi = min(SER_VDT[1], float(np.diff(t).min()) / (3 * math.log2(SER_STEP[0])))
    if lo > hi:
        return None
    vdt = float(rng.uniform(lo, hi))
    return [float(x) for x in d0 * 2 ** (t / (3 * vdt))], vdt


def _ser_sizes(rng, body, kind: str, side: str, traj: str, days):
    """(true sizes per study, None = absent; VDT or None) for one lesion, or None if it cannot fit."""
    m = len(days)
    lo, hi = _ser_limits(body, kind, side)
    if traj == "stable":
        return [float(rng.uniform(lo, hi))] * m, None
    if traj == "growing" and kind == "nodule":
        return _ser_vdt(rng, days)
    if traj in ("growing", "shrinking"):
        s = _ser_steps(rng, m, lo, hi)
        return None if s is None else ((s if traj == "growing" else s[::-1]), None)
    if traj == "resolving":
        j = int(rng.integers(1, m))
        s = _ser_steps(rng, j, lo, hi)
        return None if s is None else (s[::-1] + [None] * (m - j), None)
    if traj == "appearing":
        j = int(rng.integers(1, m))
        grows = kind in ("effusion", "pneumothorax") or rng.random() < 0.5
        s = _ser_steps(rng, m - j, lo, hi) if grows else [float(rng.uniform(lo, hi))] * (m - j)
        return None if s is None else ([None] * j + s, None)
    if traj == "recurrent":
        a = int(rng.integers(1, m - 1))
        b = int(rng.integers(1, m - a))
        s1 = float(rng.uniform(lo, hi))
        s2 = float(np.clip(s1 * rng.uniform(0.85, 1.25), lo, hi)) if kind == "nodule" else float(rng.uniform(lo, hi))
        return [s1] * a + [None] * b + [s2] * (m - a - b), None
    raise ValueError(traj)


def _ser_main(rng, body, scenario: str, side: str):
    """Study days and the main lesion (kind, trajectory, sizes, VDT) of a scenario (None: no lesion)."""
    if scenario == "none":
        return _ser_days(rng, int(rng.integers(SER_N_STUDIES[0], SER_N_STUDIES[1] + 1))), None
    if scenario == "pneumothorax":
        m = int(rng.integers(SER_N_STUDIES[0], SER_N_STUDIES[1] + 1))
        n_ptx = int(rng.integers(2, min(3, m - 1) + 1))
        days = _ser_days(rng, m - n_ptx + 1)
        for _ in range(n_ptx - 1):
            days.append(days[-1] + int(rng.integers(SER_PTX_GAP[0], SER_PTX_GAP[1] + 1)))
        s = _ser_steps(rng, n_ptx, *_ser_limits(body, "pneumothorax", side))
        if s is None:
            raise _Retry("pneumothorax sizes")
        return days, ("pneumothorax", "appearing", [None] * (m - n_ptx) + s, None)
    if scenario == "recurrent":
        kinds = [k for k, _ in SER_RECUR]
        kind, traj = kinds[int(rng.choice(len(kinds), p=[w for _, w in SER_RECUR]))], "recurrent"
    else:
        kind, traj = SER_MAIN[scenario]
    for _ in range(60):
        m = 3 if scenario == "shrinking_mass" else int(rng.integers(SER_N_STUDIES[0], SER_N_STUDIES[1] + 1))
        days = _ser_days(rng, m, SER_STABLE_SPAN if scenario == "stable_nodule" else 0.0)
        r = _ser_sizes(rng, body, kind, side, traj, days)
        if r is not None:
            return days, (kind, traj, r[0], r[1])
    raise _Retry("main lesion sizes")


def _ser_place(rng, body, geos, kind: str, side: str, sizes, placed) -> dict | None:
    """A drawable spec for a lesion on this side, kept apart from the others (honest sizes); a
    pleural collection owns its hemithorax."""
    same = [p for p in placed if p["spec"]["side"] == side]
    if same and (kind in ("effusion", "pneumothorax")
                 or any(p["spec"]["kind"] in ("effusion", "pneumothorax") for p in same)):
        return None
    g = geos[side]
    spec = dict(kind=kind, side=side, seed=int(rng.integers(1 << 30)))
    if kind in ("effusion", "pneumothorax"):
        return spec
    smax = max(s for s in sizes if s is not None)
    for _ in range(40):
        zone = str(rng.choice(["upper", "middle", "lower"]))
        if any(p["zone"] == zone for p in same):
            continue
        t = rng.uniform(*ZONE_T[zone])
        if kind in ("mass", "consolidation") and zone == "upper":
            t = max(t, 0.22)
        w = rng.uniform(*((0.55, 0.8) if (side == "left" and t > 0.45) else (0.3, 0.72)))
        X, Y = g.point(t, w)
        rad = smax / 2 * (0.55 if kind == "consolidation" else 1.0)
        if not g.inside(g.s * X, Y, margin=min(rad * 0.8, 25)):
            continue
        if not _apart(("blob", side, X, Y, smax / 2), [p["item"] for p in placed], geos):
            continue
        spec.update(t=float(t), w=float(w))
        _shape_spec(rng, spec, kind, side, zone, t, smax, g)
        spec["_zone"], spec["_item"] = zone, ("blob", side, X, Y, smax / 2)
        return spec
    return None


def _ser_lesions(rng, body, scenario: str):
    """Study days and the lesions of one series: the scenario's main lesion, sometimes a second."""
    st0 = dict(insp=0.0, roll=0.0, mid_shift=0.0)
    geos = {s: LungGeom(body, s, st0) for s in ("right", "left")}
    side = "right" if rng.random() < 0.5 else "left"
    days, main = _ser_main(rng, body, scenario, side)
    placed: list[dict] = []
    todo = [] if main is None else [(main, side)]
    if main is not None and rng.random() < SER_SECOND_P:
        kind, traj = SER_SECOND[int(rng.integers(len(SER_SECOND)))]
        side2 = "right" if rng.random() < 0.5 else "left"
        r = _ser_sizes(rng, body, kind, side2, traj, days)
        if r is not None:
            todo.append(((kind, traj, r[0], r[1]), side2))
    for n, ((kind, traj, sizes, vdt), sd) in enumerate(todo):
        spec = _ser_place(rng, body, geos, kind, sd, sizes, placed)
        if spec is None:
            if n == 0:
                raise _Retry("main lesion has no place")
            continue
        item = spec.pop("_item", ("eff" if kind == "effusion" else "ptx", sd, max(s for s in sizes if s is not None)))
        zone = spec.pop("_zone", "pleural")
        placed.append(dict(spec=spec, traj=traj, sizes=sizes, vdt=vdt, item=item, zone=zone))
    return days, placed


def _ser_study_lesions(lesions, k: int, drop: int | None = None) -> list[dict]:
    """Specs drawn on study k (present lesions at their true size), optionally one left out."""
    return [dict(L["spec"], size=L["sizes"][k], _j=j) for j, L in enumerate(lesions)
            if L["sizes"][k] is not None and j != drop]


def _ser_validate(L: dict, labels: list, zones: list) -> None:
    """_Retry unless the drawn labels keep one zone, the brief's ranges and clear directions."""
    if len({z for z in zones if z is not None}) > 1:
        raise _Retry("zone differs between studies")
    kind, t = L["spec"]["kind"], L["sizes"]
    lo, hi = {"nodule": (6.0, 30.0), "mass": (31.0, 80.0), "consolidation": (30.0, 120.0),
              "effusion": (14.0, 150.0), "pneumothorax": (4.8, 40.0)}[kind]
    if any(v is not None and not lo <= v <= hi for v in labels):
        raise _Retry("size out of range")
    run: list[float] = []
    for k, v in enumerate(labels):
        if v is None:
            run = []
            continue
        if run and t[k] != t[k - 1]:
            r = v / labels[k - 1]
            if (t[k] > t[k - 1] and r < SER_STEP_MIN) or (t[k] < t[k - 1] and r > 1 / SER_STEP_MIN):
                raise _Retry("direction unclear")
            run = []
        run.append(v)
        if max(run) > SER_STABLE_TOL * min(run):
            raise _Retry("unchanged lesion measures changed")


def _ser_acqs(rng, days) -> list[tuple[dict, dict]]:
    """(acquisition, patient state) per study: detector, processing, scale, inspiration, roll; some AP."""
    out = []
    for k in range(len(days)):
        quick = k > 0 and days[k] - days[k - 1] <= SER_PTX_GAP[1]
        portable = k > 0 and rng.random() < (0.5 if quick else SER_AP_P)
        view = "AP" if portable else "PA"
        acq = make_acq(rng, view, portable, (0.96, 1.04))
        acq["wc"], acq["ww"] = float(rng.uniform(0.45, 0.55)), float(rng.uniform(0.85, 1.0))
        out.append((acq, _state(rng, view, portable)))
    return out


def _ser_render(body, acq: dict, st: dict, specs: list[dict], noise_key) -> tuple[np.ndarray, list]:
    """One study's pixels and per-lesion measurements (the noise depends on noise_key only)."""
    img, meas, _ = _image(body, dict(st), acq, specs, [], np.random.default_rng(noise_key), False)
    return img, meas


def _ser_try(seed: int, idx: int, scenario: str, attempt: int) -> dict:
    """Plan, draw and label one series; _Retry when a drawn label breaks a rule."""
    rng = np.random.default_rng([seed, idx, attempt, 0xA25E])
    body = make_body(rng)
    days, lesions = _ser_lesions(rng, body, scenario)
    studies = _ser_acqs(rng, days)
    labels = [[None] * len(days) for _ in lesions]
    zones = [[None] * len(days) for _ in lesions]
    pix = []
    for k, (acq, st) in enumerate(studies):
        specs = _ser_study_lesions(lesions, k)
        img, meas = _ser_render(body, acq, st, specs, [seed, idx, attempt, k, 0x15E])
        pix.append(img)
        for sp, ms in zip(specs, meas):
            labels[sp["_j"]][k] = round(ms["size"] * acq["mag"], 1)
            zones[sp["_j"]][k] = ms["zone"]
    for L, lab, zs in zip(lesions, labels, zones):
        _ser_validate(L, lab, zs)
    return dict(rng=rng, body=body, days=days, lesions=lesions, studies=studies, pix=pix,
                labels=labels, zones=zones, attempt=attempt)


def _ser_draw(seed: int, idx: int, scenario: str) -> dict:
    """The first attempt of a series that keeps every rule (deterministic per seed and index)."""
    for attempt in range(SER_TRIES):
        try:
            return _ser_try(seed, idx, scenario, attempt)
        except _Retry:
            continue
    raise RuntimeError("series %d: no valid draw in %d attempts" % (idx, SER_TRIES))


def make_series(out, seed: int, idx: int, scenario: str) -> dict:
    """Write DIR/<series_id>/<k>.dcm (oldest first) for one patient; return its series.jsonl record."""
    s = _ser_draw(seed, idx, scenario)
    sid = "a2s-%04d" % (idx + 1)
    rng = np.random.default_rng([seed, idx, 0xD1C0])
    sex = s["body"].sex
    given = (_GIVEN_F if sex == "F" else _GIVEN_M)[int(rng.integers(10))]
    pat = dict(id="A2S%04d%05d" % (seed % 10000, idx + 1), name="%s^%s" % (_FAMILY[int(rng.integers(20))], given),
               sex=sex, site=_SITES[int(rng.integers(len(_SITES)))])
    first = _dt.datetime(2014, 1, 1, 7, 0) + _dt.timedelta(days=int(rng.integers(0, 3200)))
    age = int(rng.integers(35, 86))
    pat["birth"] = (first.date() - _dt.timedelta(days=age * 365 + int(rng.integers(0, 360)))).strftime("%Y%m%d")
    d = Path(out) / sid
    d.mkdir(parents=True, exist_ok=True)
    studies = []
    for k, ((acq, st), img) in enumerate(zip(s["studies"], s["pix"])):
        when = first + _dt.timedelta(days=s["days"][k], minutes=int(rng.integers(0, 11 * 60)))
        uids = dict(study=_uid("series", seed, idx, k, "study"), series=_uid("series", seed, idx, k, "series"),
                    sop=_uid("series", seed, idx, k, "sop"), acc="A2S%06d%02d" % ((seed % 1000) * 1000 + idx, k))
        desc = "CHEST %s%s" % (acq["view"], " PORTABLE" if acq["portable"] else "")
        write_dicom(d / ("%d.dcm" % k), img, acq, pat, when, uids, ["L", "F"], desc)
        studies.append({"index": k, "study_uid": uids["study"], "date": when.date().isoformat(), "view": acq["view"]})
    lesions = []
    for j, (L, lab, zs) in enumerate(zip(s["lesions"], s["labels"], s["zones"])):
        rec = {"lesion_id": "%s-L%d" % (sid, j), "finding": L["spec"]["kind"], "side": L["spec"]["side"],
               "zone": next(z for z in zs if z is not None), "sizes_mm": lab, "kind": L["traj"]}
        if L["vdt"] is not None:
            rec["vdt_days"] = round(L["vdt"], 1)
        lesions.append(rec)
    return {"series_id": sid, "generator": GENERATOR, "seed": seed, "scenario": scenario,
            "studies": studies, "lesions": lesions}


def generate_series(out_dir: Path, *, seed: int, n_series: int) -> Path:
    """Write n_series patients' histories and DIR/series.jsonl (deterministic per seed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "series.jsonl", "w") as fh:
        for i, scenario in enumerate(_ser_scenarios(seed, n_series)):
            fh.write(json.dumps(make_series(out, seed, i, scenario)) + "\n")
            fh.flush()
    return out


def _diff_size_mm(diff: np.ndarray, spacing: float, kind: str, side: str) -> float:
    """A lesion's size (mm) segmented from the difference to a lesion-free render of the same
    study (MONOCHROME2 sense, standard display): nodule/mass/consolidation = longest extent of the
    part above a share of the peak; effusion = its height next to the lateral chest wall;
    pneumothorax = lateral rim depth (darkening after a 3 mm opening that drops the moved
    vessels, twice the largest inscribed radius 20-50 % down the rim); the shares of the peak
    are per finding (the effusion's top: half of each wall column's own peak)."""
    f = 2
    h, w = diff.shape
    dd = diff[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean((1, 3))
    sp = spacing * f
    if kind == "pneumothorax":
        dd = ndimage.grey_opening(-dd, size=(max(3, round(3.0 / sp)),) * 2)
    else:
        dd = ndimage.gaussian_filter(dd, 0.75)
    share = {"nodule": 0.2, "mass": 0.2, "consolidation": 0.4, "effusion": 0.1, "pneumothorax": 0.1}[kind]
    lab, n = ndimage.label(dd > share * float(dd.max()))
    if n == 0:
        return 0.0
    big = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    rr, cc = np.nonzero(big)
    if kind in ("nodule", "mass", "consolidation"):
        return max(float(np.ptp(rr * math.sin(a) + cc * math.cos(a))) + 1.0
                   for a in np.linspace(0, np.pi, 36, endpoint=False)) * sp
    if kind == "effusion":       # per column next to the wall: rows at >= half that column's peak
        edge = cc.min() if side == "right" else cc.max()
        cols = np.unique(cc[np.abs(cc - edge) <= 0.1 * (np.ptp(cc) + 1)])
        heights = []
        for c in cols:
            col = dd[:, c] * big[:, c]
            rows = np.flatnonzero(col >= 0.5 * col.max())
            heights.append(float(np.ptp(rows) + 1) if rows.size else 0.0)
        return max(heights) * sp
    top, bot = int(rr.min()), int(rr.max())
    e = ndimage.distance_transform_edt(big)[int(top + 0.2 * (bot - top)): int(top + 0.5 * (bot - top)) + 1]
    return float(2 * e.max() * sp)


def series_size_check(seed: int, n_series: int) -> list[dict]:
    """Every lesion of every study re-drawn without it: label vs size measured on the difference."""
    rows = []
    for i, scenario in enumerate(_ser_scenarios(seed, n_series)):
        s = _ser_draw(seed, i, scenario)
        for k, (acq, st) in enumerate(s["studies"]):
            for j, L in enumerate(s["lesions"]):
                if L["sizes"][k] is None:
                    continue
                img0, _ = _ser_render(s["body"], acq, st, _ser_study_lesions(s["lesions"], k, drop=j),
                                      [seed, i, s["attempt"], k, 0x15E])
                diff = s["pix"][k].astype(np.float32) - img0.astype(np.float32)
                if acq["mono1"]:
                    diff = -diff
                got = _diff_size_mm(diff, acq["spacing"], L["spec"]["kind"], L["spec"]["side"])
                rows.append({"series": i, "study": k, "finding": L["spec"]["kind"],
                             "label": s["labels"][j][k], "measured": round(got, 1)})
    return rows


def size_check_summary(rows: list[dict]) -> dict:
    """Per finding: n, median relative error, share within 10 % and within 20 % or 3 mm."""
    res = {}
    for kind in sorted({r["finding"] for r in rows}) + ["all"]:
        sel = [r for r in rows if kind in ("all", r["finding"])]
        rel = np.array([r["measured"] / r["label"] - 1 for r in sel])
        near = np.array([abs(r["measured"] - r["label"]) <= max(0.2 * r["label"], 3.0) for r in sel])
        res[kind] = {"n": len(sel), "median_rel_err": round(float(np.median(rel)), 3),
                     "median_abs_rel_err": round(float(np.median(np.abs(rel))), 3),
                     "within_10pct": round(float(np.mean(np.abs(rel) <= 0.1)), 3),
                     "within_20pct_or_3mm": round(float(near.mean()), 3)}
    return res


def _parse_cases(s):
    if not s:
        return None
    out = {}
    for part in s.split(","):
        if part.strip():
            k, v = part.split("=")
            out[k.strip()] = int(v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m modeldev.generators.atlas2d", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, required=True, help="number of pairs (at least; --cases may add more)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", default=None, help="e.g. mirrored=5,lateral=5,other_person=5")
    ap.add_argument("--series", action="store_true",
                    help="write --n patients' histories (3-5 studies each) and series.jsonl instead of pairs")
    ap.add_argument("--check", action="store_true",
                    help="with --series: measure every lesion on the difference to a lesion-free render, "
                         "write DIR/size_check.json and print the agreement (no studies written)")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.series and a.check:
        rows = series_size_check(a.seed, a.n)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "size_check.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(size_check_summary(rows), indent=1))
        return
    if a.series:
        p = generate_series(a.out, seed=a.seed, n_series=a.n)
        print("wrote %d series to %s in %.1f s" % (a.n, p, time.time() - t0))
        return
    p = generate(a.out, seed=a.seed, n_pairs=a.n, cases=_parse_cases(a.cases))
    n = sum(1 for _ in open(p / "labels.jsonl"))
    print("wrote %d pairs to %s in %.1f s" % (n, p, time.time() - t0))


if __name__ == "__main__":
    main()
