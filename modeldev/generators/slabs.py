r"""slabs: layered analytic-thickness chest-radiograph pair generator with a polyenergetic X-ray step.

Statement of independence
-------------------------
Written from ``modeldev/generators/BRIEF.md`` by the "slabs" helper session, who read none of
``comparison/``, ``benchmarks/`` (``cxrpairs``, ``change_engine.py``, ``reader_*.py``),
``comparison/synthetic.py``, ``workers/``, ``tests/``, ``modeldev/evaluate.py`` nor any other
generator under ``modeldev/generators/`` (only BRIEF.md there, and only the vocabulary section of
``/work/shared/DESIGN.md``).  Everything else is public radiology / X-ray physics / DICOM knowledge.

Brief (summary; cases and output spec in full)
----------------------------------------------
Generate longitudinal pairs of chest radiographs (prior, current) of the same patient (or on
purpose not) with exact labels, to evaluate an interval-change engine.

Frontal appearance: brightness rises with attenuation; dark lungs with branching vessels fading
peripherally; ribs (posterior arcs, fainter anterior ribs sloping down-medially), clavicles,
bright mediastinum/heart bulging to the patient's left, domed hemidiaphragms (right higher,
gastric bubble under the left), sharp costophrenic angles, soft tissue.  Patient's right is on
the image's left; PatientOrientation ``L\\F`` standard, ``R\\F`` mirrored.  ViewPosition PA/AP/LL.
AP portable: heart magnified 10-20 %, scapulae over lungs, clavicles higher, lower volumes, more
noise, rotation, burned-in "PORTABLE"/"AP"; still compared with a PA prior.  Lateral never
compared as frontal.

Vocabulary: finding nodule|mass|consolidation|effusion|pneumothorax|edema|atelectasis|
cardiomegaly|support_device|other; change new|worsened|stable|improved|resolved; side = the
patient's right|left|bilateral; zone upper|middle|lower = thirds of that lung's height on the
frontal view from apex to the lowest point of the costophrenic angle, by the lesion's centre.
Nodule <= 30 mm, mass > 30 mm; consolidation 30-120 mm fluffy, fissure edge, air bronchograms;
effusion: dependent opacity with meniscus, size = fluid height, large = meniscus reaches >= 1/3
of that lung's height; pneumothorax: visceral pleural line, no markings beyond, size = rim depth;
devices are never disease.  Urgent = new or worsened pneumothorax, or new large effusion; nothing
else.

Acquisition varies: CR vs DR, pixel spacing 0.10-0.20 mm, matrix 1700-3000, LUT/gamma, unsharp
masking, equalisation, exposure/noise, grid lines, inspiration +-12 mm, roll <= 4 deg, in-plane
rotation, magnification +-5 %, shift, collimation, burned-in text/markers, MONOCHROME1/2, native
little endian or RLE Lossless.  Same person within a pair except the "other person" case.

Cases (field ``case``):
- ``change``: one or two findings changed (new/worsened/improved/resolved), possibly other stable
  findings.  Sizes: nodules 8-30 mm, masses 35-80, consolidations 30-120, effusions 15-150 mm
  height, pneumothorax rim 5-40 mm.
- ``stable``: findings in both, unchanged (size within +-10 %), acquisition changes.
- ``normal``: no findings in either, acquisition changes.
- safety cases: ``mirrored`` (current or both stored mirrored, ``R\\F``, with a real change),
  ``lateral`` (both lateral, expect not_compared), ``other_person`` (prior of a different body,
  same PatientID, expect not_compared), ``devices_only`` (devices added/moved, no disease
  change), ``ap_vs_pa`` (AP portable current, PA prior, real change, some urgent), ``rotated``
  (current rotated 8-12 deg in plane, real change).

Output: ``generate(out_dir, *, seed, n_pairs, cases=None) -> Path`` and CLI
``python -m modeldev.generators.slabs --seed S --n N --out DIR [--cases mirrored=5,...]``.
Default mix 60 % change, 20 % stable, 20 % normal; deterministic per seed.  Writes
``DIR/<pair_id>/prior.dcm``, ``DIR/<pair_id>/current.dcm`` and ``DIR/labels.jsonl`` with one
object per pair: pair_id, generator, seed, case, prior, current, expect ("compare" |
"not_compared"), findings [{finding, side, zone, change, size_mm_prior, size_mm_current,
urgent}], notes.  DICOM: Part-10, DX For Presentation or CR, 16-bit unsigned, BitsStored 12-15,
PatientID/Name/BirthDate/Sex, StudyInstanceUID (one study per image), SeriesInstanceUID,
SOPInstanceUID, StudyDate (prior 30-700 days before current), Modality, BodyPartExamined CHEST,
ViewPosition, PatientOrientation, ImagerPixelSpacing, PixelSpacing, Rows/Columns,
PhotometricInterpretation, WindowCenter/Width; fresh PatientID per pair; < ~3 s per pair;
numpy/scipy/pydicom only.

Method (this generator)
-----------------------
The chest is a stack of craniocaudal slabs (one per working-grid row, ~0.7-0.9 mm thick -
finer than the 2-4 mm first suggested so rib and diaphragm edges stay crisp).  In each slab the
body wall, each lung, the heart, superior mediastinum, descending aorta, spine, and the dome
exclusion region of each hemidiaphragm are analytic (super)ellipse cross-sections whose
parameters are smooth functions of height and per-patient shape parameters.  Along every ray
the tissue path lengths are interval (chord) lengths computed analytically - lungs are the lung
interval minus the exact union of the excluding intervals - so no voxel grid exists.  Ribs are
thin elliptical rings (outer minus inner ellipse) whose height along the ring follows each rib's
course; the chord of the ring's posterior/anterior half is kept where the slab cuts that rib.
The same model is projected along z for PA/AP and along x for laterals.  Divergent beam: every
structure group is projected with its own magnification SID/(SID-OID(z)) (anterior structures
magnified in AP) and roll shifts by depth.  Vessels: a 3-D random branching tree per lung
(recursive, radius-tapered, pruned at the pleura) rendered as analytic cylinder chords and
masked by local lung thickness.  Lesions add analytic path length (sphere chords; lobulated
sphere unions with spicules; thresholded smooth random field with air-bronchogram channels and
optional fissure edge; dependent fluid with lateral meniscus; pneumothorax = retracted lung
cross-sections, air rim, visceral pleura as a thin analytic shell).  Physics: 6 energy bins of a
Kramers spectrum (kVp- and filtration-dependent), water/bone/iron attenuation per bin,
energy-integrating detector, scatter = blurred fraction of primary, detector MTF blur, quantum
noise scaled by local dose, then log, equalisation, unsharp mask, sigmoid/gamma LUT,
grid stripes, collimation, burned-in markers, MONOCHROME1/2, native or RLE Lossless.

Labels (how this generator fills them)
--------------------------------------
- side = the patient's side of the lesion centre (x < 0 is the patient's right; in the standard
  ``L\F`` image it lies on the image's left; mirrored files are stored flipped with ``R\F``).
- zone = third of that lung's apex -> lateral costophrenic-angle height containing the lesion
  centre.  Lesions are placed in lung-fraction coordinates in the middle of a third (never
  within ~8 % of a boundary) and follow inspiration, so both exams agree.  Effusion = lower,
  pneumothorax (apical/lateral rim) = upper; both are checked against the rendered masks.
- sizes are measured in the image (detector mm, i.e. from the pixel spacing, including the
  beam magnification of that exam): nodule/mass diameter, consolidation = longest side of the
  largest connected opacity, effusion = fluid height from the costophrenic angle to the top of
  the meniscus, pneumothorax = rim depth chest wall -> visceral pleural line.  Stable findings
  keep their image size within +-3 % (the nominal size compensates a magnification change).
- urgent: new/worsened pneumothorax; new effusion whose height is >= 1/3 of that lung's
  height (sampled sizes stay clear of the 1/3 boundary: <= 0.26 or >= 0.40 of the height).
- devices (ETT, NG tube, right central line, chest drain, ECG leads) are listed as
  ``support_device`` with change new (added) / resolved (removed) / stable (present in both
  or moved - "moved" is said in notes), never urgent; ``normal`` pairs carry no devices.
- ``lateral`` and ``other_person`` pairs: expect ``not_compared`` and an empty findings list.
- RLE Lossless files are encoded by a small vectorised encoder here (PackBits literal runs,
  one segment per byte plane) because pydicom's pure-Python RLE encoder takes ~6 s for a
  6-Mpixel image; every file decodes with pydicom's ``pixel_array``.

Known limitations: anatomy is smooth/idealised (regular ribs, superellipse lungs, no lung
texture beyond the vessel tree, fine structure limited by the ~0.8 mm working grid that is
up-sampled to the detector matrix); no edema/atelectasis/cardiomegaly; no tension shift;
laterals carry no findings; AP "supine" fluid redistribution is not modelled (semi-erect).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

GENERATOR = "slabs"
SOP_DX = "1.2.840.10008.5.1.4.1.1.1.1"
SOP_CR = "1.2.840.10008.5.1.4.1.1.1"

# ----------------------------------------------------------------------------- physics tables
E_BINS = np.array([30.0, 40.0, 50.0, 60.0, 80.0, 100.0])  # keV
# linear attenuation coefficients in 1/mm (mass coefficients (NIST, rounded) x density / 10)
MU_WATER = np.array([0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707]) * 1.0 / 10
MU_BONE = np.array([1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855]) * 1.92 / 10
MU_IRON = np.array([8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717]) * 7.87 / 10
MU_AL = np.array([1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704]) * 2.70 / 10
ETA_DET = np.array([0.97, 0.93, 0.86, 0.76, 0.55, 0.40])  # CsI/BaFBr absorption efficiency
LUNG_RHO = 0.26


def spectrum(kvp: float, al_mm: float) -> np.ndarray:
    """Energy-integrated detector weights per bin (Kramers x filtration x E x efficiency)."""
    w = np.clip(kvp - E_BINS, 0, None) / E_BINS
    w = w * np.exp(-MU_AL * al_mm) * E_BINS * ETA_DET
    return w / w.sum()


# ----------------------------------------------------------------------------- geometry helpers
def se_factor(d, a, p):
    """Half-chord factor of a superellipse |d/a|^p + |v/b|^p = 1 at offset d (0 outside)."""
    t = np.abs(d) / np.maximum(a, 1e-6)
    tt = np.minimum(t, 1.0)
    if p == 2.0:
        f = np.sqrt(1.0 - tt * tt)
    else:
        f = np.power(np.maximum(1.0 - np.power(tt, p), 0.0), 1.0 / p)
    return np.where((t < 1.0) & (a > 1e-6), f, 0.0)


NONE_LO = -1e6


def interval(yv, uv, shape, view):
    """Interval (lo, hi) along the ray of a slab-wise (super)ellipse.

    shape: dict of callables/arrays evaluated on slab heights -> cx, cz, ax, az, p.
    view 'F' (ray along z, column coordinate u = x) or 'L' (ray along x, u = z).
    yv: (ny,1) heights; uv: (1,nx) column coordinates.  Absent -> (NONE_LO, NONE_LO)."""
    cx, cz, ax, az, p = shape(yv)
    if view == "F":
        f = se_factor(uv - cx, ax, p)
        half = az * f
        c = cz
    else:
        f = se_factor(uv - cz, az, p)
        half = ax * f
        c = cx
    c = np.broadcast_to(c, f.shape)
    lo = np.where(f > 0, c - half, NONE_LO)
    hi = np.where(f > 0, c + half, NONE_LO)
    return lo, hi


def ilen(iv):
    return np.maximum(iv[1] - iv[0], 0.0)


def lung_minus(lung, excl):
    """Exact length of the lung interval minus the union of excluder intervals."""
    llo, lhi = lung
    clipped = []
    for lo, hi in excl:
        a = np.maximum(lo, llo)
        b = np.minimum(hi, lhi)
        ok = b > a
        clipped.append((np.where(ok, a, NONE_LO), np.where(ok, b, NONE_LO)))
    if not clipped:
        return ilen(lung)
    los = np.stack([c[0] for c in clipped])
    his = np.stack([c[1] for c in clipped])
    order = np.argsort(los, axis=0)
    los = np.take_along_axis(los, order, 0)
    his = np.take_along_axis(his, order, 0)
    run = np.full(los.shape[1:], NONE_LO)
    union = np.zeros(los.shape[1:])
    for k in range(los.shape[0]):
        start = np.maximum(los[k], run)
        union += np.maximum(his[k] - start, 0.0)
        run = np.maximum(run, his[k])
    return np.maximum(ilen(lung) - union, 0.0)


# ----------------------------------------------------------------------------- patient model
def make_patient(rng) -> dict:
    P = {}
    P["sex"] = "F" if rng.random() < 0.5 else "M"
    m = 1.0 if P["sex"] == "M" else 0.93
    P["CW"] = rng.uniform(135, 165) * m          # chest half width at lung level
    P["BD"] = rng.uniform(92, 125) * m           # body half depth
    P["SW"] = P["CW"] * rng.uniform(1.12, 1.25)  # shoulder half width
    P["neck"] = rng.uniform(52, 64) * m
    P["wall"] = rng.uniform(10, 18)
    P["k_ap"] = rng.uniform(28, 40)
    P["k_lat"] = rng.uniform(45, 70)
    P["xlat0"] = rng.uniform(60, 75)
    P["dome_R"] = rng.uniform(225, 262) * m
    P["dome_L"] = P["dome_R"] + rng.uniform(8, 20)
    P["D_lat"] = rng.uniform(28, 42)
    P["xd_frac"] = rng.uniform(0.42, 0.55)
    P["kz"] = rng.uniform(0.0012, 0.0020)
    P["zd"] = rng.uniform(10, 25)
    P["heart_x"] = rng.uniform(10, 22)
    P["heart_ax"] = rng.uniform(62, 76) * m
    P["heart_ay"] = rng.uniform(52, 64) * m
    P["heart_az"] = rng.uniform(45, 58) * m
    P["heart_tilt"] = rng.uniform(0.18, 0.38)
    P["med_w"] = rng.uniform(20, 28)
    P["apex_L"] = rng.uniform(-4, 4)
    P["rib_sp"] = rng.uniform(21, 25) * m
    P["rib_y1"] = rng.uniform(-12, -4)
    P["rib_drop"] = rng.uniform(125, 150)
    P["rib_hump"] = rng.uniform(10, 17)
    P["rib_h"] = rng.uniform(8.5, 11.5)
    P["rib_jit"] = rng.normal(0, 1.5, size=(2, 12))
    P["vert_h"] = rng.uniform(19, 23)
    P["breast_r"] = rng.uniform(45, 75) if P["sex"] == "F" else 0.0
    P["bubble_r"] = rng.uniform(14, 30)
    P["fat"] = rng.uniform(0.0, 1.0)
    P["hilum_x"] = (rng.uniform(45, 56), rng.uniform(48, 60))
    P["hilum_f"] = (rng.uniform(0.38, 0.43), rng.uniform(0.34, 0.39))  # left hilum higher
    P["vessels"] = {s: make_vessel_tree(rng, P, s) for s in (-1, 1)}
    return P


def body_dims(P, y):
    yk = np.array([-200, -70, -35, -8, 40, 120, 230, 330, 500.0])
    ak = np.array([P["neck"], P["neck"], P["SW"] * 0.80, P["SW"], P["CW"] * 1.02, P["CW"] * 1.05,
                   P["CW"] * 1.04, P["CW"] * 0.98, P["CW"] * 0.95])
    bk = np.array([P["neck"] * 0.95, P["neck"], P["BD"] * 0.75, P["BD"] * 0.85, P["BD"] * 0.95,
                   P["BD"], P["BD"] * 1.02, P["BD"] * 1.02, P["BD"]])
    return np.interp(y, yk, ak), np.interp(y, yk, bk)


def lung_params(P, s, y, retract=None, inflate=0.0):
    """Cross-section of lung s (-1 right, +1 left) at reference heights y."""
    y_ap = P["apex_L"] if s > 0 else 0.0
    y_ap = y_ap - inflate
    if retract is not None:
        y_ap = y_ap + retract["apex"]
    t = np.maximum(y - y_ap, 0.0)
    g = np.sqrt(np.clip(1.0 - np.exp(-t / P["k_ap"]), 0.0, 1.0))
    h = 1.0 - np.exp(-t / P["k_lat"])
    xmax = P["CW"] - P["wall"]
    xlat = P["xlat0"] + (xmax - P["xlat0"]) * h + inflate
    if retract is not None:
        xlat = xlat - retract["d"](y)
    xmed = 9.0 + 6.0 * np.exp(-t / 40.0) - inflate
    a = 0.5 * (xlat - xmed) * g
    cx = s * 0.5 * (xlat + xmed)
    _, bd = body_dims(P, y)
    b = ((bd - P["wall"] - 6.0) * (0.45 + 0.55 * h) * g) + inflate * (g > 0)
    if retract is not None:
        b = b * np.sqrt(np.clip((xlat - xmed) / np.maximum(xlat + retract["d"](y) - xmed, 1), 0.2, 1))
    cz = -12.0 + 0.0 * y
    a = np.where(y > y_ap, a, 0.0)
    return cx, cz, a, b, 2.3


def dome_params(P, s, y, insp_dy=0.0):
    ytop = (P["dome_L"] if s > 0 else P["dome_R"])
    xmax = P["CW"] - P["wall"]
    xd = P["xd_frac"] * xmax
    kx = P["D_lat"] / (xmax - xd) ** 2
    dy = np.maximum(y - ytop, 0.0)
    a = np.sqrt(dy / kx)
    b = np.sqrt(dy / P["kz"])
    return s * xd + 0 * y, P["zd"] + 0 * y, a, b, 2.3


def lung_geom(P, s):
    """Reference apex, CP-angle bottom and height of lung s (for zones)."""
    y_ap = P["apex_L"] if s > 0 else 0.0
    ytop = P["dome_L"] if s > 0 else P["dome_R"]
    y_cp = ytop + P["D_lat"]
    return y_ap, y_cp, y_cp - y_ap


def heart_params(P, y):
    yc = P["dome_L"] - 0.55 * P["heart_ay"]
    u = (y - yc) / P["heart_ay"]
    f = np.sqrt(np.clip(1 - u * u, 0, 1))
    cx = P["heart_x"] + P["heart_tilt"] * (y - yc) * 0.6
    return cx, 30.0 + 0 * y, P["heart_ax"] * f, P["heart_az"] * f, 2.0


def medsup_params(P, y):
    ytop_h = P["dome_L"] - 1.55 * P["heart_ay"]
    w = P["med_w"] * (1 + 0.25 * np.clip((y - ytop_h + 60) / 60, 0, 1))
    # below the great vessels the (posterior) mediastinum narrows smoothly to the diaphragm
    w = np.where(y < ytop_h + 10, w, np.maximum(16.0, w - (y - ytop_h - 10) * 0.4))
    present = y < P["dome_L"] + 60
    knob = 14.0 * np.exp(-((y - (ytop_h + 5)) / 14.0) ** 2)   # aortic knob bulge to the left
    return 4.0 + knob * 0.5 + 0 * y, 5.0 + 0 * y, np.where(present, w + knob * 0.5, 0.0), 38.0 + 0 * y, 2.4


def aorta_params(P, y):
    ytop_h = P["dome_L"] - 1.55 * P["heart_ay"]
    present = y > ytop_h + 5
    return 22.0 + 0 * y, -P["BD"] + 62.0 + 0 * y, np.where(present, 12.0, 0.0), 12.0 + 0 * y, 2.0


def spine_params(P, y):
    a = 15.0 + 0.02 * np.clip(y + 60, 0, 450)
    return 0 * y, -P["BD"] + 40.0 + 0 * y, a, a * 0.8, 2.2


# ----------------------------------------------------------------------------- vessel trees (3-D)
def _lung_lut(P, s):
    key = ("_lut", s)
    if key not in P:
        ys = np.arange(-40.0, 460.0, 1.0)
        P[key] = (ys, lung_params(P, s, ys), dome_params(P, s, ys), heart_params(P, ys))
    return P[key]


def inside_lung_ref(P, s, x, y, z):
    ys, lp, dp, hp = _lung_lut(P, s)
    i = int(min(max(round(y - ys[0]), 0), ys.size - 1))
    cx, cz, a, b, p = lp[0][i], lp[1][i], lp[2][i], lp[3][i], lp[4]
    if a <= 1:
        return False
    v = (abs(x - cx) / a) ** p + (abs(z - cz) / max(b, 1)) ** p
    if v >= 0.92:
        return False
    dcx, dcz, da, db = dp[0][i], dp[1][i], dp[2][i], dp[3][i]
    if da > 0 and ((x - dcx) / max(da, 1e-6)) ** 2 + ((z - dcz) / max(db, 1e-6)) ** 2 < 1.05:
        return False
    hx, hz, hax, haz = hp[0][i], hp[1][i], hp[2][i], hp[3][i]
    if hax > 0 and ((x - hx) / hax) ** 2 + ((z - hz) / haz) ** 2 < 0.9:
        return False
    return True


def _inside_lung_ref_slow(P, s, x, y, z):
    cx, cz, a, b, p = lung_params(P, s, np.asarray(y, float))
    if a <= 1:
        return False
    v = (abs(x - cx) / a) ** p + (abs(z - cz) / max(b, 1)) ** p
    if v >= 0.92:
        return False
    dcx, dcz, da, db, _ = dome_params(P, s, np.asarray(y, float))
    if da > 0 and ((x - dcx) / max(da, 1e-6)) ** 2 + ((z - dcz) / max(db, 1e-6)) ** 2 < 1.05:
        return False
    hx, hz, hax, haz, _ = heart_params(P, np.asarray(y, float))
    if hax > 0 and ((x - hx) / hax) ** 2 + ((z - hz) / haz) ** 2 < 0.9:
        return False
    return True


def make_vessel_tree(rng, P, s, cap=1800):
    """Random 3-D monopodial branching tree grown from the hilum (largest vessels first).

    Each vessel continues (radius x0.86-0.93, small wiggle) and sprouts a side branch
    (radius x0.5-0.75, 30-55 deg) with probability 0.75; growth stops at the pleura (no
    vessel leaves the lung) or below 0.35 mm radius.  Returns (p, q, r0, r1) segments in
    reference patient coordinates (mm)."""
    import heapq
    _, y_cp, H = lung_geom(P, s)
    hil = np.array([s * P["hilum_x"][0 if s < 0 else 1], P["hilum_f"][0 if s < 0 else 1] * H, -8.0])
    segs = []
    trunks = [(-0.95, 0.25, 4.2), (-0.5, 0.85, 3.4), (0.05, 1.0, 3.6), (0.6, 0.8, 4.4), (0.95, 0.2, 4.2), (0.7, 0.35, 3.4)]
    heap = []
    cnt = 0
    for dy, dx, r in trunks:
        d = np.array([s * dx, dy, rng.normal(0, 0.35)])
        d /= np.linalg.norm(d)
        heapq.heappush(heap, (-r, cnt, hil + d * 6.0, d, r))
        cnt += 1
    while heap and len(segs) < cap:
        _, _, p, d, r = heapq.heappop(heap)
        L = 5.0 + 5.5 * r
        q = p + d * L
        if not inside_lung_ref(P, s, q[0], float(q[1]), q[2]):
            q2 = p + d * L * 0.45
            if inside_lung_ref(P, s, q2[0], float(q2[1]), q2[2]):
                segs.append((p, q2, r, r * 0.8))
            continue
        r2 = r * rng.uniform(0.86, 0.93)
        segs.append((p, q, r, r2))
        if r2 < 0.35:
            continue
        away = q - hil
        away /= np.linalg.norm(away) + 1e-9
        perp = np.cross(d, rng.normal(size=3))
        perp /= np.linalg.norm(perp) + 1e-9
        w = rng.uniform(0.05, 0.22)
        nd = d * math.cos(w) + perp * math.sin(w) + 0.12 * away
        nd /= np.linalg.norm(nd)
        heapq.heappush(heap, (-r2, cnt, q, nd, r2)); cnt += 1
        if rng.random() < 0.9:
            ang = rng.uniform(0.5, 0.95)
            perp = np.cross(d, rng.normal(size=3))
            perp /= np.linalg.norm(perp) + 1e-9
            sd = d * math.cos(ang) + perp * math.sin(ang) + 0.2 * away
            sd /= np.linalg.norm(sd)
            rs = r * rng.uniform(0.5, 0.75)
            if rs >= 0.35:
                heapq.heappush(heap, (-rs, cnt, q, sd, rs)); cnt += 1
    return segs


def vessel_raster(P, s, view):
    """Render a lung's vessel tree once per patient in its reference frame (0.5 mm grid)."""
    key = ("_vr", s, view)
    if key in P:
        return P[key]
    pitch = 0.5
    _, y_cp, H = lung_geom(P, s)
    y0, y1 = -25.0, y_cp + 40.0
    if view == "F":
        u0, u1 = (-P["CW"] - 5, 5.0) if s < 0 else (-5.0, P["CW"] + 5)
    else:
        u0, u1 = -P["BD"] - 5, P["BD"] + 5
    nx, ny = int((u1 - u0) / pitch) + 1, int((y1 - y0) / pitch) + 1
    acc = np.zeros((ny, nx), np.float64)
    for (p, q, r0, r1) in P["vessels"][s]:
        if view == "F":
            a, b = (p[0], p[1]), (q[0], q[1])
        else:
            a, b = (p[2], p[1]), (q[2], q[1])
        seg_chord_aniso(acc, u0, y0, pitch, pitch, a, b, r0, r1, use_max=True)
    P[key] = (acc.astype(np.float32), u0, y0, pitch)
    return P[key]


# ----------------------------------------------------------------------------- rendering
class Frames:
    """Per-depth magnified / rolled coordinate vectors of the working grid."""

    def __init__(self, ex, ny, nx, pitch):
        self.ex, self.ny, self.nx, self.pitch = ex, ny, nx, pitch
        self.X = (np.arange(nx) - (nx - 1) / 2) * pitch + ex["shift"][0]
        self.Y = (np.arange(ny) - (ny - 1) / 2) * pitch + ex["shift"][1]
        self.cache = {}

    def mag(self, depth):
        ex = self.ex
        oid = ex["det_pos"] - depth if ex["det_sign"] > 0 else depth - ex["det_pos"]
        return ex["scale"] * ex["SID"] / (ex["SID"] - oid)

    def get(self, depth):
        k = round(depth, 1)
        if k not in self.cache:
            M = self.mag(depth)
            u = self.X / M - math.sin(self.ex["roll"]) * depth
            y = self.ex["yc"] + self.Y / M
            self.cache[k] = (y, u, M)
        return self.cache[k]


def insp_ref(y, P, ex):
    """Map exam heights to reference heights (inspiration scales about the apex)."""
    return y / ex["s_insp"]


def render_paths(P, ex, findings, devices, ny, nx, pitch):
    """Return water-equivalent, bone and metal path length maps (mm) and measurement info."""
    view = ex["view"]
    F = Frames(ex, ny, nx, pitch)
    BD = P["BD"]
    W = np.zeros((ny, nx))
    B = np.zeros((ny, nx))
    MT = np.zeros((ny, nx))
    info = {}
    side_depth = (lambda s: s * 0.55 * P["CW"]) if view == "L" else (lambda s: -12.0)

    def grid(depth):
        y, u, M = F.get(depth)
        return y[:, None], u[None, :], M

    body_len, vb = _paths_body_spine(P, view, BD, grid, W, B)

    # thoracic structures use reference heights (inspiration)
    excl_common = _paths_excluded(P, ex, view, BD, grid, vb, W)

    lung_air, lung_mask = _paths_lungs(P, ex, view, grid, side_depth, findings, W, excl_common, ny, nx, info)
    W -= lung_air * (1.0 - LUNG_RHO)

    _paths_airways(P, ex, view, grid, W, body_len, ny, nx)

    _paths_breasts(P, view, BD, grid, W)

    # ribs (elliptical rings; the slab keeps the part of the ring where the rib passes)
    rib_bone(P, ex, F, B, W, view)
    # clavicles, scapulae, humeral heads
    shoulder_bones(P, ex, F, B, W, view)

    _paths_vessels(P, ex, view, grid, side_depth, lung_mask, W, ny, nx)

    info["lung_masks_anat"] = {k: lung_mask.get("full_" + k, lung_mask[k]).copy() for k in ("left", "right")}
    # lesions (frontal only)
    if view == "F":
        info.update(render_lesions(P, ex, F, findings, W, lung_mask, grid))
    # devices
    if devices and view == "F":
        render_devices(P, ex, F, devices, MT, W, grid)

    W = np.maximum(W, 0.0)
    info["body_len"] = body_len
    info["lung_masks"] = {k: v for k, v in lung_mask.items() if k in ("left", "right")}
    info["lung_air"] = lung_air
    return W, B, MT, info


def _paths_vessels(P, ex, view, grid, side_depth, lung_mask, W, ny, nx):
    """Pulmonary vessels (and the hilar shadows on a frontal) into W, faded at the lung edge."""
    # vessels
    ves = np.zeros((ny, nx))
    for s in (-1, 1):
        side = "left" if s > 0 else "right"
        yl, ul, Ml = grid(-12.0 if view == "F" else side_depth(s))
        x0 = ul[0, 0]
        px = ul[0, 1] - ul[0, 0]
        yref = insp_ref(yl, P, ex)
        y0 = yref[0, 0]
        py = yref[1, 0] - yref[0, 0]
        ras, ru0, ry0, rp = vessel_raster(P, s, view)
        ci = (yref[:, 0] - ry0) / rp
        cj = (ul[0, :] - ru0) / rp
        CI, CJ = np.broadcast_arrays(ci[:, None], cj[None, :])
        acc = ndi.map_coordinates(ras, [CI.ravel(), CJ.ravel()], order=1, mode="constant", cval=0.0).reshape(ny, nx)
        lm = lung_mask[side]
        ves += acc * np.clip(lm / 35.0, 0, 1) ** 0.7
        if view == "F":
            # hilar pulmonary arteries / veins: a dense lobulated shadow at the hilum
            _, _, Hs = lung_geom(P, s)
            hx = s * P["hilum_x"][0 if s < 0 else 1]
            hy = P["hilum_f"][0 if s < 0 else 1] * Hs
            q = ((ul - hx - s * 4) / 13.0) ** 2 + ((yref - hy - 6) / 24.0) ** 2
            ves += 16.0 * np.exp(-1.5 * q) * np.clip(lm / 35.0, 0, 1)
    W += ves * (1.05 - LUNG_RHO) * 2.2


def _paths_breasts(P, view, BD, grid, W):
    """Breast soft tissue into W (none when breast_r is 0)."""
    # breasts
    if P["breast_r"] > 0:
        for s in (-1, 1):
            _, _, HR = lung_geom(P, s)
            r = P["breast_r"]
            if view == "F":
                yb, ub, _ = grid(BD + 10)
                cx, cy = s * (P["CW"] * 0.55), 0.62 * HR + 0.2 * r
                ry = np.where(yb < cy, 2.6 * r, 0.85 * r)
                q = 1 - ((ub - cx) / (1.15 * r)) ** 2 - ((yb - cy) / ry) ** 2
                wup = np.clip(1.0 - (cy - yb) / (2.6 * r), 0.0, 1.0)
                W += 2 * 0.6 * r * np.sqrt(np.maximum(q, 0)) * np.where(yb < cy, wup, 1.0)
            else:
                yb, ub, _ = grid(s * P["CW"] * 0.55)
                cz, cy = BD + 0.35 * r, 0.62 * HR + 0.2 * r
                q = 1 - ((ub - cz) / (0.75 * r)) ** 2 - ((yb - cy) / (0.85 * r)) ** 2
                W += 2 * 0.45 * r * np.sqrt(np.maximum(q, 0))


def _paths_airways(P, ex, view, grid, W, body_len, ny, nx):
    """Trachea, main bronchi and the gastric bubble (frontal), or the tracheal air column (lateral), out of W."""
    # trachea and main bronchi (air inside mediastinum)
    if view == "F":
        yt, ut, _ = grid(0.0)
        ytr = insp_ref(yt, P, ex)
        air = np.zeros((ny, nx))
        x0, y0 = ut[0, 0], ytr[0, 0]
        py = (ytr[1, 0] - ytr[0, 0])
        px = (ut[0, 1] - ut[0, 0])
        _, _, HR = lung_geom(P, -1)
        car = 0.30 * HR
        tr = [(1.0, -260.0), (2.0, -60.0), (3.0, car)]
        tmp = np.zeros((ny, nx))
        for pts, rr in ((tr, 8.5), ([(3.0, car), (-38.0, car + 25)], 6.0), ([(3.0, car), (40.0, car + 35)], 5.5)):
            t1 = np.zeros((ny, nx))
            for a_, b_ in zip(pts[:-1], pts[1:]):
                t2 = np.zeros((ny, nx))
                seg_chord_aniso(t2, x0, y0, px, py, a_, b_, rr, rr)
                np.maximum(t1, t2, out=t1)
            np.maximum(tmp, t1, out=tmp)
        W -= np.minimum(tmp, body_len * 0.3) * 0.95
        # gastric bubble under the left dome
        yb, ub, _ = grid(10.0)
        ybr = insp_ref(yb, P, ex)
        r = P["bubble_r"]
        cxb, cyb = 0.5 * (P["CW"] - P["wall"]), P["dome_L"] + 8.0 + r * 0.9
        d2 = ((ub - cxb) ** 2 + (ybr - cyb) ** 2)
        ch = 2 * np.sqrt(np.maximum(r * r - d2, 0)) * (ybr < cyb + 0.2 * r)
        W -= ch * 0.95
    else:
        yt, ut, _ = grid(0.0)
        ytr = insp_ref(yt, P, ex)
        _, _, HR = lung_geom(P, -1)
        ch = 2 * np.sqrt(np.maximum(9.0 ** 2 - (ut - 5.0 + 0.02 * ytr) ** 2, 0)) * (ytr < 0.33 * HR)
        W -= ch * 0.9


def _paths_lungs(P, ex, view, grid, side_depth, findings, W, excl_common, ny, nx, info):
    """Each lung's air path (a pneumothorax retracts it, its pleural space air) out of W; (summed lung air, lung masks)."""
    lung_air = np.zeros((ny, nx))
    lung_mask = {}
    ptx = {f["side"]: f for f in findings if f["finding"] == "pneumothorax"}
    for s in (-1, 1):
        yl, ul, Ml = grid(side_depth(s) if view == "L" else -12.0)
        ylr = insp_ref(yl, P, ex)
        retract = None
        side = "left" if s > 0 else "right"
        if side in ptx:
            d = ptx[side]["size"]
            _, _, H = lung_geom(P, s)
            y_ap = P["apex_L"] if s > 0 else 0.0

            def dprof(y, d=d, H=H, y_ap=y_ap):
                t = (y - y_ap) / H
                return d * np.clip((0.55 - t) / 0.3, 0, 1) ** 0.6
            retract = {"d": dprof, "apex": d * 0.9}
        # crop to the rows / columns this lung can occupy
        y_ap_s, y_cp_s, _ = lung_geom(P, s)
        rows = np.flatnonzero((ylr[:, 0] > y_ap_s - 3) & (ylr[:, 0] < y_cp_s + 200))
        cols = np.flatnonzero(s * ul[0, :] > -20) if view == "F" else np.arange(nx)
        full_ll = np.zeros((ny, nx))
        if rows.size == 0 or cols.size == 0:
            lung_mask[side] = full_ll
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        W_full = W
        W = W_full[r0:r1, c0:c1]
        ylr, ul = ylr[r0:r1], ul[:, c0:c1]
        ex_crop = [(a_[r0:r1, c0:c1], b_[r0:r1, c0:c1]) for a_, b_ in excl_common]
        L = interval(ylr, ul, lambda y: lung_params(P, s, y, retract), view)
        dome = interval(ylr, ul, lambda y: dome_params(P, s, y), view)
        ex_list = ex_crop + [dome]
        ll = lung_minus(L, ex_list)
        if retract is not None:
            Lfull = interval(ylr, ul, lambda y: lung_params(P, s, y, None), view)
            llf = lung_minus(Lfull, ex_list)
            # visceral pleura: thin shell on the retracted lung, lateral/apical part only
            Lin = interval(ylr, ul, lambda y: lung_params(P, s, y, retract, inflate=0.5), view)
            shell = np.maximum(lung_minus(Lin, ex_list) - ll, 0.0)
            cxr = lung_params(P, s, ylr, retract)[0]
            lateral = (s * (ul - cxr) > -5.0) if view == "F" else np.ones_like(shell, bool)
            # pleural space = air (density 0) except the visceral pleura shell (tissue)
            shell_eff = np.minimum(shell, 9.0) * lateral
            W -= np.maximum(llf - ll - shell_eff, 0.0)
            tmp = np.zeros((ny, nx))
            tmp[r0:r1, c0:c1] = llf
            lung_mask["full_" + side] = tmp
            rim = (llf > 5.0) & (ll < 1.0)
            if rim.any():
                rr, cc = np.nonzero(rim)
                info["centre_" + side + "_pneumothorax"] = (float(rr.mean() + r0), float(cc.mean() + c0))
        W = W_full
        full_ll[r0:r1, c0:c1] = ll
        lung_mask[side] = full_ll
        lung_air += full_ll
    return lung_air, lung_mask


def _paths_excluded(P, ex, view, BD, grid, vb, W):
    """Heart, upper mediastinum, aorta and spine intervals, cut out of the lungs (reference heights: inspiration)."""
    excl_common = []
    yh, uh, _ = grid(30.0 if view == "F" else 10.0)
    yhr = insp_ref(yh, P, ex)
    heart = interval(yhr, uh, lambda y: heart_params(P, y), view)
    W += 0.0
    excl_common.append(heart)
    ym, um, _ = grid(5.0 if view == "F" else 0.0)
    ymr = insp_ref(ym, P, ex)
    med = interval(ymr, um, lambda y: medsup_params(P, y), view)
    excl_common.append(med)
    ya, ua, _ = grid(-BD + 62 if view == "F" else 15.0)
    aorta = interval(insp_ref(ya, P, ex), ua, lambda y: aorta_params(P, y), view)
    excl_common.append(aorta)
    excl_common.append(vb)
    return excl_common


def _paths_body_spine(P, view, BD, grid, W, B):
    """Body outline and the spine (bodies, discs, pedicles, spinous processes) into W and B; (body path length, vertebral interval)."""
    # body
    yv, uv, _ = grid(0.0)
    body = interval(yv, uv, lambda y: (0 * y, 0 * y, *body_dims(P, y), 2.4), view)
    body_len = ilen(body)
    W += body_len * (1.0 - 0.05 * P["fat"])

    # spine (bony column, discs, pedicles)
    ysp, usp, _ = grid(-BD + 40 if view == "F" else 0.0)
    vb = interval(ysp, usp, lambda y: spine_params(P, y), view)
    vb_in = interval(ysp, usp, lambda y: (lambda c: (c[0], c[1], c[2] - 2.5, c[3] - 2.5, c[4]))(spine_params(P, y)), view)
    period = P["vert_h"] + 5.0
    ph = np.mod(ysp + 40.0, period) / period
    disc = (ph > P["vert_h"] / period).astype(float)
    bone_vb = (ilen(vb) - ilen(vb_in)) * 0.3 + ilen(vb_in) * 0.07
    bone_vb = bone_vb * (1 - 0.8 * disc)
    B += bone_vb
    W -= bone_vb
    if view == "F":
        # pedicles (small dense ovals) and spinous processes
        for sx in (-1, 1):
            ped = interval(ysp, usp, lambda y: (sx * spine_params(P, y)[2] * 0.72, -BD + 20 + 0 * y, 4.5 + 0 * y, 12.0 + 0 * y, 2.0), view)
            pm = np.exp(-((ph - 0.3) / 0.16) ** 2)
            B += ilen(ped) * 0.22 * pm
        sp = interval(ysp, usp, lambda y: (0 * y, -BD + 8 + 0 * y, 4.0 + 0 * y, 10.0 + 0 * y, 2.0), view)
        B += ilen(sp) * 0.15 * np.exp(-((ph - 0.6) / 0.2) ** 2)
    return body_len, vb


def seg_scaled(acc, x0, y0, px, py, a, b, r0, r1, scale=1.0):
    seg_chord_aniso(acc, x0, y0, px, py, a, b, r0, r1, scale)


def seg_chord_aniso(acc, x0, y0, px, py, p0, p1, r0, r1, scale=1.0, use_max=False):
    ny, nx = acc.shape
    rmax = max(r0, r1)
    xa, xb = min(p0[0], p1[0]) - rmax, max(p0[0], p1[0]) + rmax
    ya, yb = min(p0[1], p1[1]) - rmax, max(p0[1], p1[1]) + rmax
    j0, j1 = max(int((xa - x0) / px), 0), min(int((xb - x0) / px) + 2, nx)
    i0, i1 = max(int((ya - y0) / py), 0), min(int((yb - y0) / py) + 2, ny)
    if j1 <= j0 or i1 <= i0:
        return
    xs = x0 + px * np.arange(j0, j1)
    ys = y0 + py * np.arange(i0, i1)
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    L2 = dx * dx + dy * dy + 1e-9
    t = ((xs[None, :] - p0[0]) * dx + (ys[:, None] - p0[1]) * dy) / L2
    t = np.clip(t, 0.0, 1.0)
    ddx = xs[None, :] - (p0[0] + t * dx)
    ddy = ys[:, None] - (p0[1] + t * dy)
    r = r0 + (r1 - r0) * t
    d2 = ddx * ddx + ddy * ddy
    ch = 2.0 * np.sqrt(np.maximum(r * r - d2, 0.0))
    pitch = min(px, py)
    if rmax < 0.7 * pitch:
        # keep a thin tube's integral over a one-pixel Gaussian footprint
        ch = np.maximum(ch, (math.pi * r * r / 2.0) / (0.6 * pitch * 1.772) * np.exp(-d2 / (0.36 * pitch * pitch)))
    if use_max:
        np.maximum(acc[i0:i1, j0:j1], ch * scale, out=acc[i0:i1, j0:j1])
    else:
        acc[i0:i1, j0:j1] += ch * scale


def polyline_scaled(acc, x0, y0, px, py, pts, r, scale=1.0):
    for a, b in zip(pts[:-1], pts[1:]):
        seg_chord_aniso(acc, x0, y0, px, py, a, b, r, r, scale)


def rib_bone(P, ex, F, B, W, view):
    BD = P["BD"]
    nrib = 11
    for s in (-1, 1):
        si = 0 if s < 0 else 1
        for k in range(nrib):
            y0r = P["rib_y1"] + k * P["rib_sp"] * (1 + 0.02 * k) + P["rib_jit"][si, k]
            A = P["CW"] - 6.0 if k > 1 else P["CW"] * (0.62 + 0.18 * k)
            A = min(A, P["CW"] - 6.0)
            Bc = BD - 12.0 if k > 1 else BD * (0.55 + 0.2 * k)
            t = 6.0 if k > 0 else 8.0
            h = P["rib_h"] * (1.0 + 0.06 * k) if k > 0 else P["rib_h"] * 1.3
            for part in ("post", "ant"):
                if view == "F":
                    depth = -0.75 * BD if part == "post" else 0.75 * BD
                else:
                    depth = s * 0.8 * P["CW"]
                y, u, M = F.get(depth)
                yref = insp_ref(y, P, ex)
                # phi of the ring point crossed by each column
                if view == "F":
                    sx = s * u
                    ok = sx > 0
                    asn = np.arcsin(np.clip(sx / A, 0, 1))
                    phi = asn if part == "post" else math.pi - asn
                    fo = se_factor(u, A + t / 2, 2.0)
                    fi = se_factor(u, A - t / 2, 2.0)
                    half = 0.5 * ((Bc + t / 2) * fo * 2 - (Bc - t / 2) * fi * 2) / 2 * 2
                    half = ((Bc + t / 2) * fo - (Bc - t / 2) * fi)
                else:
                    zz = u
                    ok = np.abs(zz) < Bc + t / 2
                    phi = np.arccos(np.clip(-zz / Bc, -1, 1))
                    inpart = (phi < math.pi / 2) if part == "post" else (phi >= math.pi / 2)
                    ok = ok & inpart
                    fo = se_factor(zz, Bc + t / 2, 2.0)
                    fi = se_factor(zz, Bc - t / 2, 2.0)
                    half = ((A + t / 2) * fo - (A - t / 2) * fi)
                phi_min = 0.10 if k > 0 else 0.2
                phi_end = 0.80 * math.pi if k > 0 else 0.9 * math.pi
                ok = ok & (phi > phi_min) & (phi < phi_end)
                xi = np.sin(np.clip(phi, 0, math.pi))  # 0 at the midline, 1 at the lateral wall
                dpost = 0.28 * P["rib_drop"] * (1 + 0.03 * k)
                if part == "post":
                    yk = y0r + dpost * xi ** 2.2 - P["rib_hump"] * np.sin(math.pi * xi) * 0.7
                else:
                    yk = y0r + dpost + 0.8 * P["rib_drop"] * (1 - xi) ** 0.9
                dens = 0.6 if part == "post" else (0.3 if k > 1 else 0.15)
                if part == "ant":
                    dens = dens * np.clip((phi_end - phi) / 0.25, 0, 1)
                if not np.any(ok):
                    continue
                ykv = yk[ok]
                rsel = np.flatnonzero((yref > ykv.min() - h) & (yref < ykv.max() + h))
                if rsel.size == 0:
                    continue
                r0, r1 = rsel[0], rsel[-1] + 1
                dd = (yref[r0:r1, None] - yk[None, :]) / (h / 2)
                add = np.abs(dd) < 1.05
                prof = np.sqrt(np.clip(1 - dd * dd, 0, None)) * 0.6 + 0.5 * np.exp(-((np.abs(dd) - 0.85) / 0.14) ** 2) * add
                contrib = prof * (half * ok * dens)[None, :]
                B[r0:r1] += contrib
                W[r0:r1] -= contrib * 0.3


def shoulder_bones(P, ex, F, B, W, view):
    BD, CW, SW = P["BD"], P["CW"], P["SW"]
    ap = ex["ap"]
    if view == "F":
        for s in (-1, 1):
            y, u, M = F.get(0.7 * BD)
            x0, y0 = u[0], y[0]
            px, py = u[1] - u[0], y[1] - y[0]
            lift = -22.0 if ap else 0.0
            pts = [(s * 22, -18 + lift), (s * 55, -10 + lift), (s * 95, -22 + lift), (s * (SW - 35), -38 + lift * 0.5), (s * (SW - 15), -44 + lift * 0.3)]
            acc = np.zeros_like(B)
            polyline_scaled(acc, x0, y0, px, py, pts, 6.5)
            B += acc * 0.8
            W -= acc * 0.5
            # scapula: PA protracted out of the lungs, AP over the lateral upper lung
            y, u, M = F.get(-0.85 * BD)
            med_x = CW * (1.0 if not ap else 0.62)
            yy, uu = y[:, None], s * u[None, :]
            sup = (med_x + 10, -20.0)
            inf = (med_x + 30, 130.0 if not ap else 110.0)
            gle = (SW - 20, -30.0)
            plate = tri_mask(uu, yy, sup, inf, gle, soft=9.0)
            B += plate * 5.0
            lat = np.zeros_like(B)
            polyline_scaled(lat, x0, y0, px, py, [(s * inf[0], inf[1]), (s * gle[0], gle[1] + 15)], 6.0)
            B += lat * 0.5
            # humeral head
            hx, hy, r = s * (SW - 8), -30.0, 24.0
            d2 = (u[None, :] - hx) ** 2 + (y[:, None] - hy) ** 2
            ch = 2 * np.sqrt(np.maximum(r * r - d2, 0))
            B += ch * 0.35
            W += ch * 0.4
            acc = np.zeros_like(B)
            polyline_scaled(acc, x0, y0, px, py, [(hx + s * 5, hy), (s * (SW + 25), 260.0)], 13.0)
            B += acc * 0.35
            W += acc * 1.2
    else:
        # lateral: clavicles superimposed anteriorly at the top, scapulae posteriorly, sternum
        y, u, M = F.get(0.0)
        x0, y0 = u[0], y[0]
        px, py = u[1] - u[0], y[1] - y[0]
        acc = np.zeros_like(B)
        polyline_scaled(acc, x0, y0, px, py, [(BD - 15, -15.0), (BD - 35, -30.0), (-20.0, -45.0)], 7.0)
        B += acc * 0.8
        acc = np.zeros_like(B)
        polyline_scaled(acc, x0, y0, px, py, [(-BD + 25, -10.0), (-BD + 15, 130.0)], 6.0)
        B += acc * 0.8
        acc = np.zeros_like(B)
        _, _, HR = lung_geom(P, -1)
        polyline_scaled(acc, x0, y0, px, py, [(BD - 8, 5.0), (BD - 6, 0.62 * HR + 40)], 5.0)
        B += acc * 0.5


def tri_mask(x, y, a, b, c, soft=2.0):
    def edge(p, q, r):
        # signed distance to line p->q, positive on the side of r
        nx_, ny_ = q[1] - p[1], -(q[0] - p[0])
        n = math.hypot(nx_, ny_)
        nx_, ny_ = nx_ / n, ny_ / n
        sgn = 1.0 if (r[0] - p[0]) * nx_ + (r[1] - p[1]) * ny_ > 0 else -1.0
        return sgn * ((x - p[0]) * nx_ + (y - p[1]) * ny_)
    d = np.minimum(np.minimum(edge(a, b, c), edge(b, c, a)), edge(c, a, b))
    return np.clip(d / soft + 0.5, 0, 1)


# ----------------------------------------------------------------------------- lesions
def lesion_xyz(P, f):
    """Reference-space centre of a lesion from its fractional position."""
    s = -1 if f["side"] == "right" else 1
    y_ap, y_cp, H = lung_geom(P, s)
    yr = y_ap + f["fy"] * H
    cx, cz, a, b, p = lung_params(P, s, np.asarray(yr, float))
    x = cx - s * a + s * 2 * a * f["fx"]
    return float(x), float(yr), float(cz + f["fz"] * b * 0.5)


def render_lesions(P, ex, F, findings, W, lung_mask, grid):
    info = {}
    for f in findings:
        s = -1 if f["side"] == "right" else 1
        side = f["side"]
        kind = f["finding"] + "#" + str(f["uid"])
        if f["finding"] in ("nodule", "mass"):
            _render_round(P, ex, f, W, lung_mask, grid, info, side, kind)
        elif f["finding"] == "consolidation":
            _render_consolidation(P, ex, F, f, W, lung_mask, grid, info, side, kind)
        elif f["finding"] == "effusion":
            _render_effusion(P, ex, f, W, lung_mask, grid, info, s, side, kind)
    return info


def _render_effusion(P, ex, f, W, lung_mask, grid, info, s, side, kind):
    """A pleural effusion: dependent fluid with a meniscus into W; the lung mask loses what the fluid replaces."""
    y_ap, y_cp, H = lung_geom(P, s)
    y, u, M = grid(-12.0)
    yref = insp_ref(y, P, ex)
    h_ref = f["size"] / ex["s_insp"]
    top = y_cp - h_ref
    xmax = P["CW"] - P["wall"]
    tl = np.clip((s * u - 20.0) / (xmax - 20.0), 0, 1)
    men = min(0.45 * h_ref, 40.0)
    yf = top + men * (1 - tl ** 2.5)
    tau = 5.0 + 0.05 * h_ref
    fill = np.clip((yref - yf) / tau, 0, 1) ** 0.8
    fill = fill * (s * u > 5.0)
    lm = lung_mask.get("full_" + side, lung_mask[side])
    # the fluid replaces the lung along the ray; along the lateral wall the fluid layer
    # is cut tangentially (meniscus), which adds path where the lung itself is thin
    W += fill * (lm * (1 - LUNG_RHO) + 25.0 * tl ** 3 * np.clip(lm / 25.0, 0, 1))
    fm = fill > 0.5
    if fm.any():
        rr, cc = np.nonzero(fm & (lm > 2))
        if rr.size:
            info["centre_" + side + "_" + kind] = (float(rr.mean()), float(cc.mean()))
    lung_mask[side] = lung_mask[side] * (1 - fill)


def _render_consolidation(P, ex, F, f, W, lung_mask, grid, info, side, kind):
    """A consolidation: a seeded patchy field, cut at a fissure, with air bronchograms, into W; measured size and centre into info."""
    x, yr, z = lesion_xyz(P, f)
    y, u, M = grid(-12.0)
    yref = insp_ref(y, P, ex)
    ext = f["size"]
    e1, e2 = ext / 2.0, ext / 2.0 * f["aspect"]
    ca, sa = math.cos(f["angle"]), math.sin(f["angle"])
    dx = u - x
    dy = (yref - yr) * ex["s_insp"]
    q = ((dx * ca + dy * sa) / e1) ** 2 + ((-dx * sa + dy * ca) / e2) ** 2
    env = np.exp(-1.2 * q * q)
    # smooth random field, fixed per lesion (seeded), sampled in lesion coordinates
    fr = np.random.default_rng(f["field_seed"])
    g = ndi.gaussian_filter(fr.standard_normal((48, 48)), 3.0)
    g = (g - g.mean()) / (g.std() + 1e-9)
    gi = (dx / (1.3 * e1) + 1) * 23.5
    gj = (dy / (1.3 * max(e1, e2)) + 1) * 23.5
    gi, gj = np.broadcast_arrays(gi, gj)
    fld = ndi.map_coordinates(g, [np.clip(gj, 0, 47).ravel(), np.clip(gi, 0, 47).ravel()], order=1).reshape(gi.shape)
    fill = np.clip((env * 1.7 + 0.5 * fld - 0.5) / 0.7, 0, 1) * f["density"] * np.clip(env * 2.5, 0, 1)

    if f.get("fissure") is not None:
        fis_y = f["fissure"]
        fill = fill * np.clip((fis_y - yref) * ex["s_insp"] / 1.2 + 0.5, 0, 1)
    # air bronchograms: branching dark channels
    x0, y0 = u[0, 0], yref[0, 0]
    px, py = u[0, 1] - u[0, 0], yref[1, 0] - yref[0, 0]
    br = np.zeros_like(W)
    for (a, b, rad) in f["bronchi"]:
        seg_chord_aniso(br, x0, y0, px, py, (x + a[0], yr + a[1]), (x + b[0], yr + b[1]), rad, rad * 0.8)
    fill = fill * (1 - np.clip(br / 2.0, 0, 0.6))
    fill = ndi.gaussian_filter(fill, 2.0 / F.pitch)
    lm = lung_mask.get("full_" + side, lung_mask[side])
    W += fill * lm * (1 - LUNG_RHO)
    # measured size: largest connected opacity (fill above 40 % of its peak, inside lung)
    m = (fill > 0.4 * f["density"]) & (lm > 10.0)
    if m.any():
        lab, nlab = ndi.label(m)
        if nlab > 1:
            sizes = np.bincount(lab.ravel())[1:]
            m = lab == (int(np.argmax(sizes)) + 1)
        rows = np.where(m.any(1))[0]
        cols = np.where(m.any(0))[0]
        info["size_" + kind] = max((rows[-1] - rows[0] + 1), (cols[-1] - cols[0] + 1)) * F.pitch
        yy, xx = np.nonzero(m)
        info["centre_" + side + "_" + kind] = (float(yy.mean()), float(xx.mean()))


def _render_round(P, ex, f, W, lung_mask, grid, info, side, kind):
    """A nodule or mass: lobes as spheres (plus spicules) into W, clipped to the lung; its centre into info."""
    x, yr, z = lesion_xyz(P, f)
    y, u, M = grid(z)
    yref = insp_ref(y, P, ex)
    r = f["size"] / 2.0
    acc = np.zeros_like(W)
    for (ox, oy, oz, fr) in f["lobes"]:
        rr = r * fr
        d2 = (u - (x + ox * r)) ** 2 + ((yref - (yr + oy * r)) * ex["s_insp"]) ** 2
        acc = np.maximum(acc, 2 * np.sqrt(np.maximum(rr * rr - d2, 0)))
    if f.get("spic"):
        x0, y0 = u[0, 0], yref[0, 0]
        px, py = u[0, 1] - u[0, 0], yref[1, 0] - yref[0, 0]
        for ang, ln in f["spic"]:
            a = (x, yr)
            b = (x + math.cos(ang) * r * (1 + ln), yr + math.sin(ang) * r * (1 + ln) / ex["s_insp"])
            seg_chord_aniso(acc, x0, y0, px, py, a, b, 1.6, 0.3)
    lm = lung_mask.get("full_" + side, lung_mask[side])
    W += np.minimum(acc, lm + 5.0) * (1 - LUNG_RHO)
    ii = int(np.argmin(np.abs(yref[:, 0] - yr)))
    jj = int(np.argmin(np.abs(u[0, :] - x)))
    info["centre_" + side + "_" + kind] = (float(ii), float(jj))


def render_devices(P, ex, F, devices, MT, W, grid):
    y, u, M = grid(0.4 * P["BD"])
    yref = insp_ref(y, P, ex)
    x0, y0 = u[0, 0], yref[0, 0]
    px, py = u[0, 1] - u[0, 0], yref[1, 0] - yref[0, 0]
    _, _, HR = lung_geom(P, -1)
    car = 0.30 * HR
    for d in devices:
        kind, j = d["kind"], d["jit"]
        if kind == "ett":
            tip = car - 45 + j * 15
            pts = [(2.0 + j, -300.0), (1.0, -80.0), (0.0 + j, tip)]
            tube = np.zeros_like(W)
            polyline_scaled(tube, x0, y0, px, py, pts, 4.0)
            W += tube * 0.5
            polyline_scaled(MT, x0, y0, px, py, [(p[0] - 1.5, p[1]) for p in pts], 0.45)
        elif kind == "ng":
            yd = P["dome_L"] + 60 + j * 20
            pts = [(-4.0, -300.0), (4.0, 0.0), (12.0, car + 40), (22.0, P["dome_L"] - 20), (60.0 + 20 * j, yd)]
            tube = np.zeros_like(W)
            polyline_scaled(tube, x0, y0, px, py, pts, 2.5)
            W += tube * 0.4
            polyline_scaled(MT, x0, y0, px, py, pts, 0.35)
        elif kind == "cvc":
            tipy = car + 15 + 20 * j
            pts = [(-P["CW"] - 20, -15.0), (-85.0, -18.0), (-40.0, -8.0), (-20.0, 25.0), (-14.0, tipy)]
            polyline_scaled(MT, x0, y0, px, py, pts, 0.5)
            W_t = np.zeros_like(W)
            polyline_scaled(W_t, x0, y0, px, py, pts, 1.5)
            W += W_t * 0.5
        elif kind == "drain":
            s = d["side_s"]
            xl = P["CW"] - P["wall"] - 10
            pts = [(s * (P["CW"] + 40), P["dome_R"] + 20), (s * xl, P["dome_R"] - 20), (s * (xl - 15), 0.4 * HR), (s * (xl - 35), 0.12 * HR + 20 * j)]
            tube = np.zeros_like(W)
            polyline_scaled(tube, x0, y0, px, py, pts, 5.0)
            W += tube * 0.6
            polyline_scaled(MT, x0, y0, px, py, pts, 0.5)
        elif kind == "ecg":
            rng = np.random.default_rng(d["seed"])
            for q in range(d["n"]):
                cx = rng.uniform(-P["CW"] * 0.85, P["CW"] * 0.85)
                cy = rng.uniform(-10, HR * 0.8)
                d2 = ((u - cx) ** 2 + ((yref - cy) * ex["s_insp"]) ** 2)
                MT += 0.5 * (d2 < 3.2 ** 2) + 0.12 * ((d2 < 11 ** 2) & (d2 > 9.5 ** 2))
                W += 6.0 * (d2 < 11 ** 2)
                ang = rng.uniform(0, 2 * math.pi)
                wire = [(cx, cy)]
                for _ in range(5):
                    ang += rng.normal(0, 0.35)
                    wire.append((wire[-1][0] + 60 * math.cos(ang), wire[-1][1] + 60 * math.sin(ang)))
                polyline_scaled(MT, x0, y0, px, py, wire, 0.35)


# ----------------------------------------------------------------------------- acquisition / processing
FONT = {
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "B": ["11110", "10001", "10001", "11110", "10001", "10001", "11110"],
    "C": ["01110", "10001", "10000", "10000", "10000", "10001", "01110"],
    "D": ["11110", "10001", "10001", "10001", "10001", "10001", "11110"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "H": ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "N": ["10001", "11001", "10101", "10011", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "U": ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
    "-": ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
    " ": ["00000"] * 7,
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11110", "00001", "00001", "01110", "00001", "00001", "11110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    ":": ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
}


def burn_text(img, text, r0, c0, px, value, box=False):
    """Burn 5x7 bitmap text, each font pixel px image pixels, top-left at (r0, c0)."""
    n = len(text)
    h, w = 7 * px, n * 6 * px
    r0 = int(np.clip(r0, 0, img.shape[0] - h - 1))
    c0 = int(np.clip(c0, 0, img.shape[1] - w - 1))
    if box:
        img[max(r0 - px, 0):r0 + h + px, max(c0 - px, 0):c0 + w + px] = 0 if value > 0 else value
    for k, ch in enumerate(text):
        g = FONT.get(ch, FONT[" "])
        bm = np.array([[c == "1" for c in row] for row in g])
        big = np.kron(bm, np.ones((px, px), bool))
        sub = img[r0:r0 + h, c0 + k * 6 * px:c0 + k * 6 * px + 5 * px]
        sub[big] = value


def smooth_big(a, sigma_px):
    """Large Gaussian blur computed on a 4x decimated grid (scatter, equalisation)."""
    f = 4
    ny, nx = a.shape
    sm = a[: ny - ny % f, : nx - nx % f].reshape(ny // f, f, nx // f, f).mean(axis=(1, 3))
    sm = ndi.gaussian_filter(sm, sigma_px / f, mode="nearest")
    up = ndi.zoom(sm, (ny / sm.shape[0], nx / sm.shape[1]), order=1, grid_mode=True, mode="nearest")
    out = np.empty_like(a)
    out[: up.shape[0], : up.shape[1]] = up[:ny, :nx]
    if up.shape[0] < ny:
        out[up.shape[0]:] = out[up.shape[0] - 1]
    if up.shape[1] < nx:
        out[:, up.shape[1]:] = out[:, up.shape[1] - 1: up.shape[1]]
    return out


def upsample(x, R, C):
    """Separable linear up-sampling of the working image to the detector matrix (float32)."""
    ny, nx = x.shape
    def idx(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        i0 = np.minimum(pos.astype(np.int64), n_in - 2)
        w = (pos - i0).astype(np.float32)
        return i0, w
    r0, wr = idx(ny, R)
    c0, wc = idx(nx, C)
    x = x.astype(np.float32)
    t = x[r0] * (1 - wr)[:, None] + x[r0 + 1] * wr[:, None]
    return t[:, c0] * (1 - wc)[None, :] + t[:, c0 + 1] * wc[None, :]


_NOISE = {}


def noise_buffer():
    """One fixed white-noise field (deterministic) from which each image takes a random crop."""
    if "buf" not in _NOISE:
        _NOISE["buf"] = np.random.default_rng(20261207).standard_normal((3400, 3400), dtype=np.float32)
    return _NOISE["buf"]


def physics(W, B, MT, ex, pitch):
    w = spectrum(ex["kvp"], ex["al"])
    P_ = np.zeros_like(W)
    for k in range(len(E_BINS)):
        P_ += w[k] * np.exp(-(MU_WATER[k] * W + MU_BONE[k] * B + MU_IRON[k] * MT))
    S = smooth_big(P_, 70.0 / pitch) * ex["spr"]
    I = P_ + S
    return I


def sample_acq(rng, *, ap=False, lateral=False, rotate=None):
    ex = {}
    ex["ap"] = ap
    ex["view"] = "L" if lateral else "F"
    ex["modality"] = "CR" if rng.random() < 0.4 else "DX"
    fov_w = rng.uniform(350, 430) if not lateral else rng.uniform(330, 400)
    fov_h = rng.uniform(380, 440)
    lo = max(0.10, max(fov_w, fov_h) / 3000)
    hi = min(0.20, min(fov_w, fov_h) / 1700)
    sp = round(float(rng.uniform(lo, hi)), 4)
    # keep the pixel count bounded for the time budget
    ex["spacing"] = sp
    ex["cols"] = int(np.clip(round(fov_w / sp), 1700, 3000))
    ex["rows"] = int(np.clip(round(fov_h / sp), 1700, 3000))
    ex["bits"] = int(rng.choice([12, 14, 15]))
    ex["mono1"] = bool(rng.random() < 0.35)
    ex["rle"] = bool(rng.random() < 0.3)
    ex["kvp"] = float(rng.uniform(105, 125) if not ap else rng.uniform(80, 95))
    if lateral:
        ex["kvp"] = float(rng.uniform(110, 125))
    ex["al"] = float(rng.uniform(2.5, 4.5))
    ex["grid"] = bool(rng.random() < 0.45)
    ex["grid_period"] = float(rng.uniform(2.4, 5.5))
    ex["grid_amp"] = float(rng.uniform(0.006, 0.02))
    ex["spr"] = float(rng.uniform(0.12, 0.35) if not ap else rng.uniform(0.35, 0.6))
    ex["mtf_mm"] = float(rng.uniform(0.15, 0.35) if ex["modality"] == "DX" else rng.uniform(0.3, 0.55))
    ex["noise"] = float(rng.uniform(0.010, 0.022) * (1.6 if ap else 1.0))
    ex["lut"] = str(rng.choice(["sigmoid", "gamma"]))
    ex["gamma"] = float(rng.uniform(0.75, 1.35))
    ex["sig_w"] = float(rng.uniform(0.17, 0.3))
    ex["sig_c"] = float(rng.uniform(0.45, 0.58))
    ex["usm"] = float(rng.uniform(0.0, 1.4))
    ex["usm_mm"] = float(rng.uniform(1.5, 4.0))
    ex["eq"] = float(rng.uniform(0.0, 0.3))
    ex["SID"] = 1800.0 if not ap else float(rng.uniform(950, 1150))
    ex["scale"] = float(rng.uniform(0.965, 1.035))
    ex["roll"] = math.radians(rng.uniform(-2.5, 2.5) if not ap else rng.uniform(-4, 4))
    ex["rot"] = float(rng.uniform(-2.5, 2.5)) if rotate is None else float(rotate)
    ex["shift"] = (float(rng.uniform(-15, 15)), float(rng.uniform(-15, 15)))
    ex["insp"] = float(rng.uniform(-12, 12)) - (rng.uniform(8, 22) if ap else 0.0)
    ex["collim"] = [float(v) for v in rng.uniform(0, 25, size=4)] if rng.random() < 0.6 else [0.0] * 4
    ex["marker"] = bool(rng.random() < 0.8)
    ex["text"] = bool(rng.random() < 0.5) or ap
    return ex


def finalize_geometry(P, ex):
    BD = P["BD"]
    if ex["view"] == "F":
        if ex["ap"]:
            ex["det_sign"], ex["det_pos"] = -1, -BD - 35.0
        else:
            ex["det_sign"], ex["det_pos"] = 1, BD + 15.0
    else:
        ex["det_sign"], ex["det_pos"] = 1, P["CW"] + 15.0  # left side against detector (LL)
    _, y_cp, H = lung_geom(P, -1)
    ex["s_insp"] = (H + ex["insp"]) / H
    ex["yc"] = 0.5 * (y_cp * ex["s_insp"]) - 5.0


def render_exam(P, ex, findings, devices, rng):
    """Full image (uint16 stored values) plus measurement info."""
    finalize_geometry(P, ex)
    fov_w, fov_h = ex["cols"] * ex["spacing"], ex["rows"] * ex["spacing"]
    pitch = max(fov_w, fov_h) / 500.0
    nx, ny = int(round(fov_w / pitch)), int(round(fov_h / pitch))
    W, B, MT, info = render_paths(P, ex, findings, devices, ny, nx, pitch)
    I = physics(W, B, MT, ex, pitch)
    L = -np.log(np.maximum(I, 1e-6))
    body = info["body_len"] > 30
    lung = info["lung_air"] > 40
    if ex["view"] == "L":
        # lateral display: anterior towards the image left (rows run towards Posterior: P\F)
        L, body, lung = L[:, ::-1], body[:, ::-1], lung[:, ::-1]
    vals = L[body] if body.sum() > 100 else L.ravel()
    lv = L[lung] if lung.sum() > 100 else vals
    lo = np.percentile(lv, 0.5) - 0.15 * (np.percentile(vals, 97) - np.percentile(lv, 0.5))
    hi = np.percentile(vals, 97.5)
    # in-plane rotation of the patient about the image centre (on the working grid)
    if abs(ex["rot"]) > 0.05:
        L = ndi.rotate(L, -ex["rot"], reshape=False, order=1, mode="nearest")
    # collimation (detector-aligned; outside the field only a little scatter arrives)
    cl, cr, ct, cb = [int(v / pitch) for v in ex["collim"]]
    if cl or cr or ct or cb:
        m = np.zeros_like(L)
        if cl: m[:, :cl] = 1
        if cr: m[:, nx - cr:] = 1
        if ct: m[:ct, :] = 1
        if cb: m[ny - cb:, :] = 1
        L = L + 3.2 * ndi.gaussian_filter(m, 0.8)
    # detector MTF (working grid) - blur of the recorded signal
    L = ndi.gaussian_filter(L, ex["mtf_mm"] / pitch)
    x = (L - lo) / (hi - lo)
    if ex["eq"] > 0:
        x = x - ex["eq"] * (smooth_big(x, 22.0 / pitch) - x.mean())
    if ex["usm"] > 0:
        x = x + ex["usm"] * (x - ndi.gaussian_filter(x, ex["usm_mm"] / pitch))
    # up-sample to the detector matrix
    R, C = ex["rows"], ex["cols"]
    xf = upsample(x, R, C)
    # quantum noise: std in the log domain ~ 1/sqrt(dose) at full detector resolution
    _add_quantum_noise(ex, xf, hi, lo, R, C, rng)
    if ex["grid"]:
        j = np.arange(C, dtype=np.float32)
        xf = xf + (ex["grid_amp"] * np.cos(2 * np.pi * j / ex["grid_period"])).astype(np.float32)[None, :]
    if ex["lut"] == "sigmoid":
        yv = 1 / (1 + np.exp(-(xf - ex["sig_c"]) / ex["sig_w"]))
        y0 = 1 / (1 + math.exp(ex["sig_c"] / ex["sig_w"]))
        y1 = 1 / (1 + math.exp(-(1 - ex["sig_c"]) / ex["sig_w"]))
        yv = (yv - y0) / (y1 - y0)
    else:
        yv = np.clip(xf, 0, None) ** ex["gamma"]
    maxv = (1 << ex["bits"]) - 1
    v = np.clip(yv * 0.96 * maxv, 0, maxv)
    img = v.astype(np.uint16)
    _burn_annotations(img, ex, R, C, maxv)
    if ex["mono1"]:
        img = (maxv - img).astype(np.uint16)
    info["pitch"] = pitch
    return img, info


def _burn_annotations(img, ex, R, C, maxv):
    """The lead marker and the burned-in view text (display-white) into img in place."""
    # burned-in marker and annotation (display-white)
    fp = max(int(round(1.6 / ex["spacing"])), 4)
    if ex["view"] == "F":
        if ex["marker"]:
            # lead marker on the patient's left (image right in standard display)
            burn_text(img, "L", int(R * 0.06), int(C * 0.88), fp, maxv)
        if ex["text"]:
            lines = ["AP PORTABLE", "SEMI-ERECT"] if ex["ap"] else ["PA ERECT"]
            for k, t in enumerate(lines):
                burn_text(img, t, int(R * 0.03) + k * 9 * max(fp // 2, 2), int(C * 0.04), max(fp // 2, 2), maxv)
    else:
        if ex["marker"]:
            burn_text(img, "L", int(R * 0.06), int(C * 0.06), fp, maxv)
        if ex["text"]:
            burn_text(img, "LATERAL", int(R * 0.93), int(C * 0.05), max(fp // 2, 2), maxv)


def _add_quantum_noise(ex, xf, hi, lo, R, C, rng):
    """Quantum noise into xf in place: a random window of the shared noise buffer, randomly flipped, scaled by the signal."""
    kfac = np.float32(ex["noise"] * (0.15 / ex["spacing"]) / (hi - lo) * (1 + 0.6 * ex["usm"]))
    sig = xf * np.float32(0.5 * (hi - lo))
    sig += np.float32(0.5 * lo)
    np.minimum(sig, np.float32(4.0), out=sig)
    np.exp(sig, out=sig)
    sig *= kfac
    nb = noise_buffer()
    oy, ox = int(rng.integers(0, nb.shape[0] - R + 1)), int(rng.integers(0, nb.shape[1] - C + 1))
    nz = nb[oy:oy + R, ox:ox + C]
    if rng.random() < 0.5:
        nz = nz[::-1]
    if rng.random() < 0.5:
        nz = nz[:, ::-1]
    sig *= nz
    xf += sig


# ----------------------------------------------------------------------------- DICOM
def rle_encode_frame(img: np.ndarray) -> bytes:
    """DICOM RLE Lossless frame (2 byte segments, PackBits rows; vectorised)."""
    R, C = img.shape
    hi = (img >> 8).astype(np.uint8)
    lo = (img & 0xFF).astype(np.uint8)
    segs = [_packbits_rows(hi), _packbits_rows(lo)]
    header = np.zeros(16, dtype="<u4")
    header[0] = 2
    off = 64
    for k, s in enumerate(segs):
        header[1 + k] = off
        off += len(s)
    return header.tobytes() + b"".join(segs)


def _packbits_rows(plane: np.ndarray) -> bytes:
    """PackBits each row separately as literal packets of <= 128 bytes (valid RLE, vectorised)."""
    R, C = plane.shape
    nf, rem = divmod(C, 128)
    parts = []
    if nf:
        full = np.empty((R, nf, 129), np.uint8)
        full[:, :, 0] = 127
        full[:, :, 1:] = plane[:, : nf * 128].reshape(R, nf, 128)
        parts.append(full.reshape(R, nf * 129))
    if rem:
        tail = np.empty((R, rem + 1), np.uint8)
        tail[:, 0] = rem - 1
        tail[:, 1:] = plane[:, nf * 128:]
        parts.append(tail)
    b = np.concatenate(parts, axis=1).tobytes()
    if len(b) % 2:
        b += b"\x00"
    return b


def write_dicom(path: Path, img, ex, pat, study_date, uid_seed, mirrored, series_desc):
    if mirrored:
        img = img[:, ::-1].copy()
    ds = Dataset()
    sop = SOP_DX if ex["modality"] == "DX" else SOP_CR
    sop_uid = generate_uid(entropy_srcs=[uid_seed, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = RLELossless if ex["rle"] else ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["slabs-generator-impl"])
    meta.ImplementationVersionName = "SLABS_1"
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    itype = ["DERIVED", "PRIMARY"] if ex["modality"] == "CR" else ["ORIGINAL", "PRIMARY"]
    ds.ImageType = itype
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = "%02d%02d00" % (8 + sum(map(ord, uid_seed)) % 10, sum(map(ord, uid_seed)) % 60)
    ds.SeriesTime = ds.StudyTime
    ds.ContentTime = ds.StudyTime
    ds.AccessionNumber = ("A" + "".join(ch for ch in uid_seed if ch.isdigit())[-10:] + uid_seed[-1].upper())[:16]
    ds.Modality = ex["modality"]
    ds.Manufacturer = "SLABS-SYNTH"
    ds.InstitutionName = "Synthetic Site %d" % ex.get("site", 1)
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CHEST"
    ds.SeriesDescription = series_desc
    ds.ManufacturerModelName = "slabs-" + ex["modality"]
    ds.PatientName = pat["name"]
    ds.PatientID = pat["id"]
    ds.PatientBirthDate = pat["birth"]
    ds.PatientSex = pat["sex"]
    ds.BodyPartExamined = "CHEST"
    ds.KVP = round(ex["kvp"], 1)
    ds.DistanceSourceToDetector = round(ex["SID"], 1)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "series"])
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = (["R", "F"] if mirrored else ["L", "F"]) if ex["view"] == "F" else (["A", "F"] if mirrored else ["P", "F"])
    ds.ViewPosition = "LL" if ex["view"] == "L" else ("AP" if ex["ap"] else "PA")
    ds.ImageLaterality = "U"
    ds.PatientPosition = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if ex["mono1"] else "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated = 16
    ds.BitsStored = ex["bits"]
    ds.HighBit = ex["bits"] - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [ex["spacing"], ex["spacing"]]
    ds.ImagerPixelSpacing = [ex["spacing"], ex["spacing"]]
    maxv = (1 << ex["bits"]) - 1
    ds.WindowCenter = int(maxv // 2)
    ds.WindowWidth = int(maxv)
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "YES" if (ex["text"] or ex["marker"]) else "NO"
    ds.PresentationLUTShape = "INVERSE" if ex["mono1"] else "IDENTITY"
    _dx_attrs(ds, ex)
    if ex["rle"]:
        ds.PixelData = encapsulate([rle_encode_frame(img)])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = img.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _dx_attrs(ds, ex):
    """The DX image module's attributes (presentation intent, detector, anatomic region and view codes, positioner); CR has none of these."""
    if ex["modality"] == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.DetectorType = "SCINTILLATOR"
        ds.ImagerPixelSpacing = [ex["spacing"], ex["spacing"]]
        ds.PatientOrientation = ds.PatientOrientation
        ds.AnatomicRegionSequence = []
        ar = Dataset()
        ar.CodeValue = "43799004"
        ar.CodingSchemeDesignator = "SCT"
        ar.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = [ar]
        vc = Dataset()
        vc.CodeValue, vc.CodeMeaning = {"PA": ("399348003", "postero-anterior"),
                                        "AP": ("399182005", "antero-posterior"),
                                        "LL": ("399173006", "left lateral")}[ds.ViewPosition]
        vc.CodingSchemeDesignator = "SCT"
        ds.ViewCodeSequence = [vc]
        ds.PositionerType = "COLUMN" if ds.ViewPosition != "AP" else "NONE"
        ds.AcquisitionContextSequence = []


# ----------------------------------------------------------------------------- case logic
# nominal (patient-plane) sizes; the labels report sizes measured in the image (x magnification
# 1.0-1.25), so the nominal ranges sit inside the brief's ranges with room for magnification
SIZE_RANGES = {"nodule": (8.0, 24.0), "mass": (35.0, 63.0), "consolidation": (42.0, 95.0),
               "effusion": (15.0, 130.0), "pneumothorax": (6.0, 34.0)}
ZONE_FY = {"upper": (0.12, 0.25), "middle": (0.42, 0.58), "lower": (0.74, 0.86)}


def zone_of(fy):
    return "upper" if fy < 1 / 3 else ("middle" if fy < 2 / 3 else "lower")


def new_finding(rng, P, kind, side, zone=None):
    s = -1 if side == "right" else 1
    _, _, H = lung_geom(P, s)
    f = {"finding": kind, "side": side, "field_seed": int(rng.integers(1 << 30)), "uid": int(rng.integers(1 << 30))}
    if kind in ("nodule", "mass"):
        zone = zone or str(rng.choice(["upper", "middle", "lower"]))
        f["fy"] = float(rng.uniform(*ZONE_FY[zone]))
        f["fx"] = float(rng.uniform(0.35, 0.75))
        f["fz"] = float(rng.uniform(-0.4, 0.4))
        lobes = [(0.0, 0.0, 0.0, 1.0)]
        if kind == "mass":
            for _ in range(int(rng.integers(1, 4))):
                a = rng.uniform(0, 2 * math.pi)
                lobes.append((0.4 * math.cos(a), 0.4 * math.sin(a), 0.0, float(rng.uniform(0.45, 0.58))))
            if rng.random() < 0.5:
                f["spic"] = [(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.15, 0.45))) for _ in range(int(rng.integers(5, 11)))]
        f["lobes"] = lobes
    elif kind == "consolidation":
        zone = zone or str(rng.choice(["upper", "middle", "lower"]))
        f["fy"] = float(rng.uniform(*ZONE_FY[zone]))
        f["fx"] = float(rng.uniform(0.45, 0.7))
        f["fz"] = 0.0
        f["aspect"] = float(rng.uniform(0.55, 0.9))
        f["density"] = float(rng.uniform(0.45, 0.65))
        f["angle"] = float(rng.uniform(-0.6, 0.6))
        f["fissure"] = None
        f["bronchi"] = []
        nb = int(rng.integers(2, 5))
        for _ in range(nb):
            a = rng.uniform(0, 2 * math.pi)
            st = (rng.uniform(-10, 10), rng.uniform(-10, 10))
            ln = rng.uniform(15, 30)
            en = (st[0] + ln * math.cos(a), st[1] + ln * math.sin(a))
            mid = (0.5 * (st[0] + en[0]) + rng.normal(0, 3), 0.5 * (st[1] + en[1]) + rng.normal(0, 3))
            rb = float(rng.uniform(1.0, 1.5))
            f["bronchi"].append((st, mid, rb))
            f["bronchi"].append((mid, en, rb * 0.85))
            for sgn in (-1, 1):
                a2 = a + sgn * rng.uniform(0.3, 0.7)
                f["bronchi"].append((en, (en[0] + 0.6 * ln * math.cos(a2), en[1] + 0.6 * ln * math.sin(a2)), 0.7))
    elif kind == "effusion":
        zone = "lower"
        f["fy"] = 0.85
    elif kind == "pneumothorax":
        zone = "upper"
        f["fy"] = 0.2
    f["zone"] = zone
    return f


def set_fissure(P, f):
    # right upper-zone consolidation bounded below by the minor fissure (sharp straight edge)
    if f["finding"] == "consolidation" and f["side"] == "right" and f["zone"] == "upper" and f.get("fiss_ok"):
        y_ap, y_cp, H = lung_geom(P, -1)
        f["fissure"] = y_ap + 0.38 * H


def size_px_factor(P, ex, f):
    """Image magnification for a finding (detector mm per patient mm)."""
    if f["finding"] in ("nodule", "mass"):
        _, _, z = lesion_xyz(P, f)
    else:
        z = -12.0
    oid = ex["det_pos"] - z if ex["det_sign"] > 0 else z - ex["det_pos"]
    return ex["scale"] * ex["SID"] / (ex["SID"] - oid)


def mass_extent(f):
    """Diameter multiplier of a (lobulated) lesion relative to its nominal size."""
    ext = 0.0
    for (ox, oy, oz, fr) in f["lobes"]:
        ext = max(ext, math.hypot(ox, oy) + fr)
    return ext


def measure(P, ex, f, info):
    """Label size (mm in the image, from the detector pixel spacing) of a rendered finding."""
    M = size_px_factor(P, ex, f)
    kind = f["finding"]
    if kind in ("nodule", "mass"):
        return round(f["size"] * mass_extent(f) * M, 1)
    if kind == "consolidation":
        v = info.get("size_consolidation#" + str(f["uid"]))
        return round(float(v), 1) if v is not None else round(f["size"] * M, 1)
    if kind == "effusion":
        return round(f["size"] * M, 1)
    if kind == "pneumothorax":
        return round(f["size"] * M, 1)
    return None


def plan_findings(rng, P, case):
    """Return list of (prior_finding|None, current_finding|None, change)."""
    kinds = ["nodule", "mass", "consolidation", "effusion", "pneumothorax"]
    used = set()
    out = []

    def pick(kind=None, allow=None):
        for _ in range(50):
            k = kind or str(rng.choice(kinds, p=[0.25, 0.15, 0.2, 0.2, 0.2]))
            side = str(rng.choice(["right", "left"]))
            if k in ("effusion", "pneumothorax"):
                zone_needed = (side, "lower") if k == "effusion" else (side, "upper")
                if (side, "pleural") in used or zone_needed in used:
                    continue
                used.add((side, "pleural"))
                used.add((side, "lower") if k == "effusion" else (side, "upper"))
                return new_finding(rng, P, k, side)
            zones = [z for z in ("upper", "middle", "lower") if (side, z) not in used]
            if not zones:
                continue
            z = str(rng.choice(zones))
            used.add((side, z))
            f = new_finding(rng, P, k, side, z)
            f["fiss_ok"] = bool(rng.random() < 0.6)
            set_fissure(P, f)
            return f
        return None

    def sized(f, lo_frac=0.0, hi_frac=1.0):
        lo, hi = SIZE_RANGES[f["finding"]]
        if f["finding"] == "effusion":
            _, _, H = lung_geom(P, -1 if f["side"] == "right" else 1)
            hi = min(hi, 0.58 * H)
        return lo + (hi - lo) * rng.uniform(lo_frac, hi_frac)

    def with_size(f, size):
        g = dict(f)
        g["size"] = float(size)
        return g

    if case in ("change", "mirrored", "ap_vs_pa", "rotated"):
        _plan_changes(rng, P, case, out, pick, sized, with_size)
    elif case in ("stable", "devices_only"):
        n = 1 if rng.random() < 0.7 else 2
        if case == "devices_only":
            n = 1 if rng.random() < 0.4 else 0
        for _ in range(n):
            f = pick()
            if f is None:
                continue
            sz = sized(f, 0.1, 0.9)
            if f["finding"] == "effusion":
                _, _, H = lung_geom(P, -1 if f["side"] == "right" else 1)
                sz = min(sz, 0.26 * H) if sz < 0.33 * H else max(sz, 0.40 * H)
            out.append((with_size(f, sz), with_size(f, sz * rng.uniform(0.97, 1.03)), "stable"))
    return out


def _plan_changes(rng, P, case, out, pick, sized, with_size):
    """One or two changing findings (sizes kept off the large-effusion boundary), sometimes a stable one beside them, appended to out."""
    nchg = 1 if rng.random() < 0.6 else 2
    for i in range(nchg):
        if case == "ap_vs_pa" and i == 0 and rng.random() < 0.5:
            f = pick(str(rng.choice(["pneumothorax", "effusion"])))
        else:
            f = pick()
        if f is None:
            continue
        ch = str(rng.choice(["new", "worsened", "improved", "resolved"], p=[0.4, 0.25, 0.15, 0.2]))
        if f["finding"] == "effusion":
            _, _, H = lung_geom(P, -1 if f["side"] == "right" else 1)
            # avoid the 1/3-height boundary of the large rule
            big = rng.random() < 0.45
            lo, hi = SIZE_RANGES["effusion"]
            s_big = rng.uniform(0.40 * H, min(0.58 * H, hi))
            s_small = rng.uniform(lo, 0.26 * H)
            main = s_big if big else s_small
        else:
            main = sized(f, 0.35, 1.0)
        if ch == "new":
            out.append((None, with_size(f, main), ch))
        elif ch == "resolved":
            out.append((with_size(f, main), None, ch))
        else:
            lo, hi = SIZE_RANGES[f["finding"]]
            if f["finding"] == "effusion":
                hi = max(main, lo * 1.6)
            if main < lo * 1.45:
                main = min(hi, lo * rng.uniform(1.45, 1.8))
            ratio = rng.uniform(1.35, max(1.36, min(2.2, main / lo)))
            small = max(lo, main / ratio)
            if f["finding"] == "effusion" and main > 0.3 * lung_geom(P, -1 if f["side"] == "right" else 1)[2]:
                small = min(small, 0.25 * lung_geom(P, -1 if f["side"] == "right" else 1)[2])
            if ch == "worsened":
                out.append((with_size(f, small), with_size(f, main), ch))
            else:
                out.append((with_size(f, main), with_size(f, small), ch))
    if rng.random() < 0.3:
        f = pick(str(rng.choice(["nodule", "mass", "consolidation"])))
        if f is not None:
            sz = sized(f, 0.2, 0.9)
            out.append((with_size(f, sz), with_size(f, sz * rng.uniform(0.98, 1.02)), "stable"))


def urgent_of(kind, change, cur_large):
    if kind == "pneumothorax" and change in ("new", "worsened"):
        return True
    if kind == "effusion" and change == "new" and cur_large:
        return True
    return False


DEVICE_SIDE = {"ett": "bilateral", "ng": "bilateral", "cvc": "right", "drain": None, "ecg": "bilateral"}
DEVICE_ZONE = {"ett": "upper", "ng": "lower", "cvc": "upper", "drain": "upper", "ecg": "middle"}


def make_device(rng, kind):
    d = {"kind": kind, "jit": float(rng.uniform(-1, 1)), "seed": int(rng.integers(1 << 30)), "n": int(rng.integers(3, 6))}
    d["side_s"] = int(rng.choice([-1, 1]))
    return d


def device_side(d):
    if d["kind"] == "drain":
        return "right" if d["side_s"] < 0 else "left"
    return DEVICE_SIDE[d["kind"]]


def make_pair(seed: int, index: int, case: str, pair_id: str, out_dir: Path):
    rng = np.random.default_rng([seed, index, 7919])
    P = make_patient(rng)
    notes = []
    ap_cur = case == "ap_vs_pa" or (case in ("change", "stable", "normal") and rng.random() < 0.12)
    lateral = case == "lateral"
    rot_cur = None
    if case == "rotated":
        rot_cur = float(rng.choice([-1, 1]) * rng.uniform(8, 12))
    ex_p = sample_acq(rng, lateral=lateral)
    ex_c = sample_acq(rng, ap=ap_cur and not lateral, lateral=lateral, rotate=rot_cur)
    ex_p["site"], ex_c["site"] = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    plan = [] if case in ("normal", "lateral", "other_person") else plan_findings(rng, P, case)
    # devices
    dev_p, dev_c, dev_labels = _plan_devices(rng, case, ap_cur, notes)
    # a stable finding keeps its image size (within +-3 %) even when the magnification differs
    # between the two exams (e.g. AP portable current vs PA prior)
    finalize_geometry(P, ex_p)
    finalize_geometry(P, ex_c)
    for a, b, ch in plan:
        if ch == "stable" and a is not None and b is not None and a["finding"] != "support_device":
            b["size"] = a["size"] * size_px_factor(P, ex_p, a) / size_px_factor(P, ex_c, b) * float(rng.uniform(0.98, 1.02))
    fp = [a for a, b, c in plan if a is not None]
    fc = [b for a, b, c in plan if b is not None]
    P_prior = P
    if case == "other_person":
        P_prior = make_patient(rng)
        notes.append("prior is a different body (same PatientID)")
    img_p, info_p = render_exam(P_prior, ex_p, fp, dev_p, rng)
    img_c, info_c = render_exam(P, ex_c, fc, dev_c, rng)
    # mirrored storage
    mir_p = mir_c = False
    if case == "mirrored":
        mir_c = True
        mir_p = bool(rng.random() < 0.5)
        notes.append("current stored mirrored (R\\F)" + ("; prior too" if mir_p else ""))
    # labels
    findings = _pair_labels(P, ex_p, ex_c, plan, info_p, info_c, dev_labels, notes)
    # acquisition notes
    notes = [_acq_note(ex_p, "prior"), _acq_note(ex_c, "current")] + notes
    if case == "ap_vs_pa":
        notes.append("current AP portable vs PA prior")
    # DICOM
    pid = f"SLB{seed:04d}{index:05d}"
    sex = P["sex"]
    byear = int(rng.integers(1935, 2000))
    pat = {"name": f"SLABS^{pair_id.upper().replace('-', '')}", "id": pid, "birth": f"{byear}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}", "sex": sex}
    cur_date = _dt.date(2022, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 1300)))
    prior_date = cur_date - _dt.timedelta(days=int(rng.integers(30, 701)))
    pdir = out_dir / pair_id
    write_dicom(pdir / "prior.dcm", img_p, ex_p, pat, prior_date, f"{GENERATOR}-{seed}-{index}-prior", mir_p, "CHEST " + ("LAT" if lateral else "PA"))
    write_dicom(pdir / "current.dcm", img_c, ex_c, pat, cur_date, f"{GENERATOR}-{seed}-{index}-current", mir_c, "CHEST " + ("LAT" if lateral else ("AP" if ex_c["ap"] else "PA")))
    rec = {"pair_id": pair_id, "generator": GENERATOR, "seed": seed, "case": case,
           "prior": f"{pair_id}/prior.dcm", "current": f"{pair_id}/current.dcm",
           "expect": "not_compared" if case in ("lateral", "other_person") else "compare",
           "findings": findings, "notes": "; ".join(notes)}
    return rec


def _pair_labels(P, ex_p, ex_c, plan, info_p, info_c, dev_labels, notes):
    """The pair's labels (measured sizes, the urgent rule, effusions large or small in the notes), devices last."""
    findings = []
    for a, b, ch in plan:
        f = a or b
        sp = measure(P, ex_p, a, info_p) if a is not None else None
        sc = measure(P, ex_c, b, info_c) if b is not None else None
        large = False
        if b is not None and b["finding"] == "effusion":
            _, _, H = lung_geom(P, -1 if b["side"] == "right" else 1)
            large = b["size"] >= H * ex_c["s_insp"] / 3.0
        findings.append({"finding": f["finding"], "side": f["side"], "zone": f["zone"], "change": ch,
                         "size_mm_prior": sp, "size_mm_current": sc,
                         "urgent": urgent_of(f["finding"], ch, large)})
        if f["finding"] == "effusion":
            if a is not None:
                _, _, H = lung_geom(P, -1 if a["side"] == "right" else 1)
                notes.append(f"{a['side']} effusion prior {'large' if a['size'] >= H * ex_p['s_insp'] / 3 else 'small'}")
            if b is not None:
                notes.append(f"{b['side']} effusion current {'large' if large else 'small'}")
    findings += dev_labels
    return findings


def _plan_devices(rng, case, ap_cur, notes):
    """Support devices on each exam and their labels: added/moved for devices_only, else sometimes present (more often on an AP portable)."""
    dev_p, dev_c, dev_labels = [], [], []
    if case == "devices_only":
        pool = ["ett", "ng", "cvc", "drain", "ecg"]
        kinds = list(rng.choice(pool, size=int(rng.integers(1, 4)), replace=False))
        for k in kinds:
            mode = str(rng.choice(["added", "moved"], p=[0.6, 0.4]))
            d = make_device(rng, k)
            if mode == "added":
                dev_c.append(d)
                ch = "new"
            elif mode == "removed":
                dev_p.append(d)
                ch = "resolved"
            else:
                d2 = dict(d)
                d2["jit"] = -d["jit"] if abs(d["jit"]) > 0.4 else d["jit"] + 0.9 * (1 if d["jit"] < 0 else -1)
                dev_p.append(d)
                dev_c.append(d2)
                ch = "stable"
            notes.append(f"device {k} {mode}")
            dev_labels.append({"finding": "support_device", "side": device_side(d), "zone": DEVICE_ZONE[k],
                               "change": ch, "size_mm_prior": None, "size_mm_current": None, "urgent": False})
    elif case in ("change", "stable", "ap_vs_pa", "rotated", "mirrored") and rng.random() < (0.5 if ap_cur else 0.12):
        kinds = list(rng.choice(["ett", "ng", "cvc", "ecg"], size=int(rng.integers(1, 3)), replace=False))
        for k in kinds:
            d = make_device(rng, k)
            if ap_cur and case != "stable":
                dev_c.append(d)
                ch = "new"
            else:
                dev_p.append(d)
                dev_c.append(d)
                ch = "stable"
            dev_labels.append({"finding": "support_device", "side": device_side(d), "zone": DEVICE_ZONE[k],
                               "change": ch, "size_mm_prior": None, "size_mm_current": None, "urgent": False})
            notes.append(f"device {k} {'added' if ch == 'new' else 'present in both'}")
    return dev_p, dev_c, dev_labels


def _acq_note(ex, name):
    """One exam's acquisition in words (the labels' notes)."""
    bits = [f"{name} {ex['modality']} {ex['rows']}x{ex['cols']} @{ex['spacing']}mm",
            "AP portable" if ex["ap"] else ("lateral" if ex["view"] == "L" else "PA"),
            f"{ex['kvp']:.0f}kVp", "MONOCHROME1" if ex["mono1"] else "MONOCHROME2",
            "RLE" if ex["rle"] else "native", f"LUT {ex['lut']}", f"USM {ex['usm']:.2f}",
            f"insp {ex['insp']:+.0f}mm", f"rot {ex['rot']:+.1f}deg", f"roll {math.degrees(ex['roll']):+.1f}deg"]
    if ex["grid"]:
        bits.append("grid lines")
    if any(ex["collim"]):
        bits.append("collimation")
    return ", ".join(bits)


def case_list(rng, n_pairs, cases):
    if cases is None:
        n_change = int(round(0.6 * n_pairs))
        n_stable = int(round(0.2 * n_pairs))
        lst = ["change"] * n_change + ["stable"] * n_stable + ["normal"] * (n_pairs - n_change - n_stable)
        lst = lst[:n_pairs]
    else:
        lst = []
        for k, v in cases.items():
            lst += [k] * int(v)
        rest = n_pairs - len(lst)
        if rest > 0:
            n_change = int(round(0.6 * rest))
            n_stable = int(round(0.2 * rest))
            lst += ["change"] * n_change + ["stable"] * n_stable + ["normal"] * (rest - n_change - n_stable)
    order = rng.permutation(len(lst))
    return [lst[i] for i in order]


def generate(out_dir: Path, *, seed: int, n_pairs: int, cases: dict[str, int] | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    known = {"change", "stable", "normal", "mirrored", "lateral", "other_person", "devices_only", "ap_vs_pa", "rotated"}
    if cases:
        bad = set(cases) - known
        if bad:
            raise ValueError(f"unknown cases {sorted(bad)}")
    rng = np.random.default_rng([seed, 12345])
    lst = case_list(rng, n_pairs, cases)
    labels = out_dir / "labels.jsonl"
    with open(labels, "w") as fh:
        for i, case in enumerate(lst):
            pair_id = f"g-{i:04d}"
            rec = make_pair(seed, i, case, pair_id, out_dir)
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
    return labels


def _parse_cases(s):
    if not s:
        return None
    out = {}
    for part in s.split(","):
        if not part.strip():
            continue
        k, v = part.split("=")
        out[k.strip()] = int(v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", type=str, default=None, help="e.g. mirrored=5,lateral=5")
    a = ap.parse_args(argv)
    p = generate(a.out, seed=a.seed, n_pairs=a.n, cases=_parse_cases(a.cases))
    print(p)


if __name__ == "__main__":
    main()
