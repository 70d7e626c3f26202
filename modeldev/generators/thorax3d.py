"""thorax3d: an independent generator of longitudinal chest-radiograph pairs from a projected 3-D thorax.

Statement of independence
-------------------------
Written from ``modeldev/generators/BRIEF.md`` (and the vocabulary section of
``/work/shared/DESIGN.md``) by the thorax3d author, who read none of ``comparison/``,
``benchmarks/`` (``cxrpairs/``, ``change_engine.py``, ``reader_*.py``), ``workers/``,
``tests/``, ``comparison/synthetic.py``, ``workers/demo.py`` nor any other generator under
``modeldev/generators/``.  Everything here comes from that brief and from public knowledge of
chest radiography, X-ray physics and DICOM.

The brief (summary, with the case and output specification in full)
--------------------------------------------------------------------
Generate pairs (prior, current) of chest radiographs of the same patient (or, on purpose, not
the same) with exact labels, to evaluate an interval-change engine.

* Frontal PA, upright, standard display: patient's right on the image's left,
  ``PatientOrientation`` ``L\\F``; a mirrored image is ``R\\F``.  ``ViewPosition`` PA / AP /
  LL|RL.  AP portable: heart magnified 10-20 %, scapulae over the lungs, clavicles higher,
  lower volumes, more noise, rotation, burned-in "PORTABLE"/"AP"; compared with a PA prior,
  never refused.  A lateral must never be compared as a frontal.
* Vocabulary: finding ``nodule, mass, consolidation, effusion, pneumothorax, edema,
  atelectasis, cardiomegaly, support_device, other``; change ``new, worsened, stable,
  improved, resolved``; side (patient's) ``right/left/bilateral``; zone ``upper/middle/lower``
  = thirds of that lung's craniocaudal height on the frontal view from the apex to the lowest
  point of its costophrenic angle, the third containing the lesion centre.
* Nodule <= 30 mm, mass > 30 mm; consolidation fluffy airspace opacity with air
  bronchograms, 30-120 mm; effusion (upright) dependent with a meniscus, size = fluid height,
  large = meniscus reaches >= 1/3 of the lung height; pneumothorax = visceral pleural line,
  no markings beyond, size = rim depth; support devices are never disease.
* Urgent: a new or worsened pneumothorax; a new large pleural effusion.  Nothing else.
* Acquisition varies: CR vs DR, pixel spacing 0.10-0.20 mm, matrix 1700-3000, LUT/gamma,
  unsharp masking, equalisation, exposure/noise, grid lines, inspiration +-12 mm, roll <= 4 deg,
  in-plane rotation, magnification +-5 %, shift, collimation, burned-in text/markers,
  MONOCHROME1/2, native little-endian or RLE Lossless.  Same body in a pair except
  ``other_person``.
* Cases (field ``case``):
  - ``change``: one or two findings that changed (new / worsened / improved / resolved),
    possibly with other stable findings.  Sizes: nodules 8-30 mm, masses 35-80 mm,
    consolidations 30-120 mm, effusions 15-150 mm height, pneumothorax rim 5-40 mm.
  - ``stable``: findings present in both, unchanged (size within +-10 %), with acquisition
    changes.
  - ``normal``: no findings in either, with acquisition changes.
  - safety cases (about 5 each when asked): ``mirrored`` (current or both stored mirrored
    with ``PatientOrientation`` ``R\\F`` saying so, with a real change), ``lateral`` (both
    lateral views), ``other_person`` (prior from a different body, same PatientID),
    ``devices_only`` (devices added or moved, no disease change), ``ap_vs_pa`` (AP portable
    current, PA prior, with a real change, some urgent), ``rotated`` (current rotated 8-12 deg
    in plane, with a real change).
* Output (exact): ``generate(out_dir, *, seed, n_pairs, cases=None) -> Path`` and the CLI
  ``python -m modeldev.generators.thorax3d --seed S --n N --out DIR [--cases mirrored=5,...]``.
  Default mix when ``cases`` is None: 60 % change, 20 % stable, 20 % normal.  Deterministic
  per seed.  Writes ``DIR/<pair_id>/prior.dcm``, ``DIR/<pair_id>/current.dcm`` and
  ``DIR/labels.jsonl``, one JSON object per pair::

    {"pair_id": "g-0003", "generator": "thorax3d", "seed": 1, "case": "change",
     "prior": "g-0003/prior.dcm", "current": "g-0003/current.dcm",
     "expect": "compare",            # or "not_compared" (lateral, other_person)
     "findings": [                   # every finding present in EITHER image, with its change
       {"finding": "pneumothorax", "side": "left", "zone": "upper", "change": "new",
        "size_mm_prior": null, "size_mm_current": 18.0, "urgent": true}],
     "notes": "free text: acquisition differences"}

  DICOM: valid Part-10, Digital X-Ray (For Presentation) or CR Image Storage, 16-bit unsigned
  (BitsStored 12-15), PatientID/Name/BirthDate/Sex, StudyInstanceUID (new per image),
  SeriesInstanceUID, SOPInstanceUID, StudyDate (prior 30-700 days before current), Modality
  CR/DX, BodyPartExamined CHEST, ViewPosition, PatientOrientation, ImagerPixelSpacing and
  PixelSpacing, Rows/Columns, PhotometricInterpretation, WindowCenter/WindowWidth.  Each pair
  a new patient.  Under ~3 s per pair on one core; numpy/scipy/pydicom only.

How this generator works
------------------------
A patient is a set of analytic 3-D shapes in millimetres (x towards the patient's left,
y towards the back, z towards the feet; z = 0 at the lung apices): trunk with neck, shoulders,
optional arms and breasts; two lungs (elliptic cross-sections tapering to a rounded apex, cut
by diaphragm domes that descend laterally and posteriorly into the costophrenic recesses, the
left dome lower); a tilted ellipsoidal heart and an aortic knob excluded from the lungs;
segmented spine with pedicles; sternum, scapulae, stomach gas bubble.  Soft-occupancy
(partial-volume) voxels are evaluated on a coarse grid (2.5 mm across the detector, 7 mm
along the ray) and ray-summed slice by slice with per-slice magnification (point source,
SID 1800 mm PA/lateral, ~1000 mm AP; detector against the chest front for PA, the back for
AP, the left side for LL) and per-slice shear for patient roll / lordotic tilt.  Thin 3-D
objects are projected analytically (chord length of tubes and spheres, with obliquity) onto a
0.5 mm grid: ribs (3-D curved tubes with cortex around the chest-wall ellipse, posterior parts
nearly horizontal, anterior parts sloping down-medially), clavicles, humeri, trachea and main
bronchi (air), a branching pulmonary vessel tree per lung, nodules/masses (spheres /
lobulated unions with spicules), air bronchograms, the visceral pleural line and devices.
Lesions: consolidation = lumpy soft region with fuzzy margins inside the lung, optionally
cut by the minor fissure, with air bronchograms; effusion = lung space below a meniscus
surface rising laterally / anteroposteriorly (fluid replaces lung, vessels removed); pneumo-
thorax = lung retracted from apex and lateral wall with pleural air (mu = 0) in the rim and
vessels carried with the lung; devices = ET tube, NG tube, central line, chest drain, ECG
electrodes and leads.  Inspiration stretches everything intrathoracic craniocaudally.
Detector: exp(-line integral), heel effect, collimation, scatter (blurred primary x SPR,
higher without a grid), quantum noise, log, equalisation, unsharp masking, S-shaped LUT with
gamma, fine noise, grid-line stripes, burned-in side marker and text, MONOCHROME1/2, 12-15
bits, native or RLE Lossless (own vectorised PackBits encoder, decoded back by pydicom).

Labels: side is anatomical; zone is computed on the frontal projection (before in-plane
rotation) from the lesion centre between the projected apex and lateral costophrenic point of
that lung (lesion centres are placed >= 8 % of the lung height away from a zone boundary);
sizes are in image millimetres at the detector (pixel spacing), i.e. true size x geometric
magnification x acquisition scale, so a stable finding on an AP current (heart-side objects
magnified ~10-20 %) may measure larger than on the PA prior while its label stays ``stable``.
Nodule/mass size = diameter; consolidation size = longest projected extent of >= 12 mm of
consolidated lung along the ray (pre-checked on a plain PA to stay within 33-112 mm, change
ratio >= 1.3); effusion size = height from the lateral costophrenic angle to the meniscus top
at the lateral wall, with extra keys ``large_prior`` / ``large_current`` (>= 1/3 of that lung's
projected height; sampled away from the threshold); pneumothorax size = rim depth at the upper
lateral wall.  Lateral images get zone/size from a virtual PA of the same anatomy.  Devices
are listed as ``support_device`` with an extra ``device`` key (midline tubes and ECG leads
use side ``bilateral``; zone from the tip); a moved device is ``stable`` with
``"moved": true``.  Urgent exactly per the rule above; in ``other_person`` pairs the prior is
a different, finding-free body, the current's findings are listed as ``new`` and never urgent
(there is no real interval change).  Worsened/improved sizes differ by a factor 1.45-2.1
(true size); a pneumothorax hemithorax holds no other lesion.

``cases``: explicit counts per case; when their sum is below ``n_pairs`` the rest is filled
with the default 60/20/20 change/stable/normal mix (the total is max(n_pairs, sum)); the
order is shuffled deterministically.  Everything derives from ``seed`` and the pair index
(numpy ``default_rng([seed, index, ...])``; UIDs from ``generate_uid(entropy_srcs=...)``),
so the same call writes byte-identical files.

RLE Lossless is written by a vectorised PackBits encoder in this module (pydicom's own
pure-Python RLE encoder, the only one installed, takes ~6 s per image); every file is read
back and decoded by pydicom in the checks, and ``dciodvfy`` reports no errors or warnings.

Known limitations: stylised anatomy (smooth ellipsoidal organs, circular rib tubes, no
lobar fissures except the minor one, no bronchial walls, breasts as ellipsoids); edema,
atelectasis and cardiomegaly are not generated; AP is semi-erect (effusion still layers
with a meniscus, pneumothorax still apical); no tension shift; the scapulae are thin plates;
coarse voxels (2.5 mm across, 7 mm along the ray) soften organ edges slightly; grid lines
can alias when the image is strided without low-pass filtering (a real effect too); pixel
spacing is drawn from 0.115-0.200 mm (0.100 mm would need > 3000 px for a whole chest);
laterals are always LL; small consolidations can look like ill-defined round blobs.

Series mode (issue 29)
----------------------
Written from ``/work/briefs/series.md`` by the series helper, who read none of
``comparison/``, ``workers/``, ``benchmarks/`` nor ``modeldev/evaluate.py``, and who shares no
code with atlas2d's series mode: everything below reuses this module's own ``Person``, lesion
templates, ``make_acq``, ``render_image``, ``measure_lesion`` and ``write_dicom``.

``python -m modeldev.generators.thorax3d --series --seed S --n N --out DIR`` (or
``generate_series(out_dir, seed=S, n_series=N)``) writes N patients' histories:
``DIR/<series_id>/<k>.dcm`` for k = 0..m-1, oldest first, m = 3-5 studies whose dates spread
over 1-4 years with irregular (gamma) intervals of >= 30 days (a pneumothorax is re-imaged
1-12 days later); the same PatientID / name / birth date / sex, a new StudyInstanceUID and
SOPInstanceUID per study; the same body (habitus, heart, ribs, vessels) with a new acquisition
per study (detector CR/DR, spacing, processing, grid, inspiration, roll, scale, shift; 15 % of
follow-ups AP portable, half of the quick pneumothorax follow-ups).  ``DIR/series.jsonl`` has one
object per series::

  {"series_id": "t3s-0003", "generator": "thorax3d", "seed": 1, "scenario": "growing_nodule",
   "studies": [{"index": 0, "study_uid": "...", "date": "2014-01-15", "view": "PA"}, ...],
   "lesions": [{"lesion_id": "t3s-0003-L0", "finding": "nodule", "side": "right",
                "zone": "lower", "sizes_mm": [10.9, 17.8, 25.2], "kind": "growing",
                "vdt_days": 271.7}]}

``sizes_mm`` has one entry per study, ``null`` exactly where the lesion is absent (not drawn).
Sizes are image millimetres at the detector (what PixelSpacing measures): true size x the
geometric magnification at the lesion x the acquisition scale, so an unchanged lesion's labels
differ between studies by magnification alone (<= 15 %, checked).  Per finding: nodule/mass =
longest in-plane diameter of the drawn sphere or lobulated union (spicules excluded);
consolidation = longest projected extent of the part whose consolidated path is >= 15 % of its
maximum; effusion = height of the fluid from the lateral costophrenic angle to the top of the
meniscus at the lateral chest wall; pneumothorax = lateral rim depth (chest wall to the visceral
pleural line, the lung's retraction) in the upper third, where it is widest along the lateral
wall (the apical cap is not measured).

``kind``: ``stable`` = present on every study at one true size; ``growing`` / ``shrinking`` =
present on every study, each interval a true-size factor of 1.3-1.7 (a growing nodule instead
follows d(t) = d0 * 2 ** (t / (3 VDT)) with its volume doubling time ``vdt_days`` in 60-400 and
every interval still >= 1.3); ``appearing`` = absent on the first study or studies, then present
(constant or growing; a pneumothorax grows across its two or three consecutive studies);
``resolving`` = present, shrinking by >= 1.3 per interval, then absent to the end; ``recurrent``
= present, absent on one or more studies, present again.  Every labelled step keeps a factor
>= 1.15 in the labels themselves, zones stay the same across studies, and a draw that misses a
rule is redrawn (attempt number in the seed).  Field ``scenario`` names the series' main
lesion.  Mix per run: >= 30 % ``stable_nodule`` series (a stable nodule, the series spanning
>= 760 days), >= 15 % ``recurrent`` (nodule, consolidation, effusion or pneumothorax), the rest
growing nodules, resolving consolidations, growing effusions, pneumothoraces, no lesion,
shrinking masses and appearing nodules; half of the series with a lesion carry a second one.
A pleural collection owns its hemithorax.

``--series --check`` re-renders every study with each lesion left out, segments the lesion on
the difference of the stored pixels (``measure_drawn``) and prints the agreement with the labels
(``DIR/size_check.json`` holds every row).  Seed 11, 20 series, 84 lesion-studies (2-core machine,
loaded): 97.6 % within 20 % or 3 mm of the label, 96.4 % within 10 %; nodules 60/60 within 10 %
(median -2.7 %: the 20 %-of-peak edge), effusions 7/7, masses 3/3, consolidations 9/9 within
20 %; pneumothoraces 3/5 (the moved vessels and the apical cap confound the rim on the
difference, worst on AP).  About 0.5 s CPU per study (seed 5, 20 series, 68 studies: 33 s).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

GENERATOR = "thorax3d"

# linear attenuation coefficients (1/mm, ~60 keV effective)
MU_ST = 0.0200      # soft tissue / blood
MU_FAT = 0.0175
MU_LUNG = 0.0045    # aerated lung
MU_FLUID = 0.0205
MU_VB = 0.0285      # vertebral body (cancellous + cortex, averaged)
MU_CORT = 0.0600    # cortical bone
MU_MARROW = 0.0260
MU_SCAP = 0.0450

F32 = np.float32

DX_SOP = "1.2.840.10008.5.1.4.1.1.1.1"
CR_SOP = "1.2.840.10008.5.1.4.1.1.1"

DEFAULT_MIX = (("change", 0.6), ("stable", 0.2), ("normal", 0.2))
SAFETY = ("mirrored", "lateral", "other_person", "devices_only", "ap_vs_pa", "rotated")


# ----------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------
def _unit(v):
    v = np.asarray(v, float)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def _soft(F, fuzz=0.0):
    """Partial-volume occupancy of {F < 0}: F linearised over a voxel (span = L1 voxel change)."""
    if F.ndim == 3 and min(F.shape) >= 2:
        span = np.abs(np.gradient(F, axis=0))
        span += np.abs(np.gradient(F, axis=1))
        span += np.abs(np.gradient(F, axis=2))
    else:
        span = np.ones_like(F)
    span += F32(1e-3 + fuzz)
    out = F32(0.5) - F / span
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _upsample_linear(img, out_shape, src_pos_r, src_pos_c):
    """Separable linear interpolation; src_pos_* are fractional source indices per output row/col."""
    def weights(pos, n):
        pos = np.clip(pos, 0, n - 1)
        i0 = np.floor(pos).astype(np.int64)
        i0 = np.clip(i0, 0, max(n - 2, 0))
        w = (pos - i0).astype(F32)
        return i0, np.minimum(i0 + 1, n - 1), w
    r0, r1, wr = weights(src_pos_r, img.shape[0])
    c0, c1, wc = weights(src_pos_c, img.shape[1])
    tmp = img[r0] * (1 - wr)[:, None] + img[r1] * wr[:, None]
    out = tmp[:, c0] * (1 - wc)[None, :] + tmp[:, c1] * wc[None, :]
    return out.astype(F32, copy=False)


def _blur(img, sigma_px):
    """Gaussian blur, done on a block-reduced copy for large sigma."""
    if sigma_px <= 0:
        return img
    f = int(max(1, sigma_px // 3))
    if f == 1:
        return ndimage.gaussian_filter(img, sigma_px, mode="nearest")
    h, w = img.shape
    hh, ww = (h + f - 1) // f, (w + f - 1) // f
    pad = np.pad(img, ((0, hh * f - h), (0, ww * f - w)), mode="edge")
    small = pad.reshape(hh, f, ww, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / f, mode="nearest")
    pr = (np.arange(h) + 0.5) / f - 0.5
    pc = (np.arange(w) + 0.5) / f - 0.5
    return _upsample_linear(small.astype(F32), (h, w), pr, pc)


# ----------------------------------------------------------------------------------------
# the patient
# ----------------------------------------------------------------------------------------
class Person:
    """Body habitus, organ geometry, rib cage and vessel tree (neutral inspiration)."""

    def __init__(self, rng: np.random.Generator, sex: str | None = None):
        self.sex = sex or ("F" if rng.random() < 0.5 else "M")
        male = self.sex == "M"
        self.W = rng.uniform(150, 176) if male else rng.uniform(138, 162)   # half trunk width
        self.D = rng.uniform(98, 125) if male else rng.uniform(90, 114)     # half trunk depth
        self.tw = rng.uniform(12, 22)                                      # lateral wall
        self.H = rng.uniform(245, 285) if male else rng.uniform(228, 262)  # apex -> right CP
        self.M_up = rng.uniform(24, 31)
        self.M_lo = rng.uniform(10, 15)
        self.hd = rng.uniform(36, 52)          # dome height above the lateral CP angle
        self.ll = rng.uniform(8, 20)           # left hemidiaphragm lower by
        self.yc = rng.uniform(4, 14)           # lung centre depth (posterior of mid-plane)
        self.Bmid = self.D - self.tw * 0.8 - 6
        H = self.H
        # heart (neutral coordinates)
        self.h_ra = rng.uniform(72, 86)        # long semi-axis
        self.h_rb = rng.uniform(46, 56)
        self.h_rc = rng.uniform(54, 64)        # depth
        self.h_t = math.radians(rng.uniform(36, 50))
        self.hx = rng.uniform(14, 28)
        self.hy = -0.18 * self.D
        self.hz = H - self.hd * 0.55 - 0.62 * self.h_rb
        self.knob = (self.M_up + rng.uniform(0, 7), 4.0, 0.25 * H, rng.uniform(14, 19))
        # spine
        self.y_sp = 0.45 * self.D
        self.r_vb = rng.uniform(18, 22)
        self.vb_len = rng.uniform(23, 28)
        self.vb_off = rng.uniform(0, self.vb_len)
        # ribs: posterior origin heights, spacing, anterior drop
        self.rib_z0 = rng.uniform(-6, 4)
        self.rib_sp = (H + 10) / rng.uniform(9.4, 10.4)
        self.rib_drop = rng.uniform(1.45, 1.9)    # anterior end drop in rib spacings (approx)
        self.rib_jit = rng.normal(0, 2.0, size=(2, 12))
        self.rib_r = rng.uniform(4.2, 5.4)
        self.clav = (rng.uniform(-8, 6), rng.uniform(-5, 8))  # z of medial/lateral clavicle ends
        self.arms = rng.random() < 0.6
        self.arm_r = rng.uniform(34, 44)
        self.breasts = (not male) and rng.random() < 0.85
        self.breast_r = rng.uniform(45, 70)
        self.bubble = (rng.uniform(45, 75), rng.uniform(-10, 20), rng.uniform(18, 32))
        self.vessel_seed = int(rng.integers(0, 2**31 - 1))
        self.vessels = {s: self._vessel_tree(np.random.default_rng(self.vessel_seed + (s > 0)), s)
                        for s in (-1, 1)}

    # --- geometry helpers (neutral coordinates; zn = z / stretch) ---
    def Wc(self, zn):
        return (self.W - self.tw) * (0.90 + 0.12 * np.clip(zn / self.H, 0, 1))

    def M(self, zn):
        return np.interp(zn, [0.32 * self.H, 0.5 * self.H], [self.M_up, self.M_lo])

    def lung_frame(self, zn, s, ptx_d=0.0, ptx_top=0.0):
        """Cross-section of lung s at neutral height zn: (xc, A, B) after pneumothorax retraction."""
        H = self.H
        M = self.M(zn)
        Wc = self.Wc(zn)
        Amid = (Wc - M) / 2
        xc = s * (M + Amid)
        zt = zn - ptx_top
        taper = np.clip(zt / (0.22 * H), 0.0, 1.0) ** 0.42
        A = Amid * taper + 0.5
        B = self.Bmid * (0.45 + 0.55 * np.sqrt(np.clip(zt / (0.35 * H), 0.0, 1.0)))
        if ptx_d > 0:
            dz = ptx_d * (1 - 0.8 * np.clip((zn - 0.35 * H) / (0.65 * H), 0, 1))
            A = np.maximum(A - dz / 2, 0.5)
            xc = xc - s * dz / 2
            B = np.maximum(B - 0.15 * dz, 1.0)
        return xc, A, B

    def z_cp(self, s):
        return self.H + (self.ll if s > 0 else 0.0)

    def zdia(self, x, y, s):
        Wc0 = self.W - self.tw
        top = self.z_cp(s) - self.hd
        lat = (s * x - 0.40 * Wc0) / (0.60 * Wc0)
        dy = (y - self.yc) / self.Bmid
        post = 0.55 * np.clip(dy, 0, 1) ** 2 + 0.2 * np.clip(-dy, 0, 1) ** 2
        return top + self.hd * (lat * lat + post)

    def heart_F(self, x, y, zn):
        dx = x - self.hx
        dz = zn - self.hz
        c, s = math.cos(self.h_t), math.sin(self.h_t)
        a1 = (dx * c + dz * s) / self.h_ra
        a2 = (-dx * s + dz * c) / self.h_rb
        a3 = (y - self.hy) / self.h_rc
        F = (np.sqrt(a1 * a1 + a2 * a2 + a3 * a3) - 1) * self.h_rb
        kx, ky, kz, kr = self.knob
        Fk = (np.sqrt((x - kx) ** 2 + (y - ky) ** 2 + (zn - kz) ** 2) - kr)
        return np.minimum(F, Fk)

    def lung_F(self, x, y, zn, s, ptx_d=0.0, ptx_top=0.0):
        xc, A, B = self.lung_frame(zn, s, ptx_d, ptx_top)
        q = np.sqrt(((x - xc) / A) ** 2 + ((y - self.yc) / B) ** 2)
        F1 = (q - 1) * np.minimum(A, B)
        F2 = ptx_top - zn
        F3 = zn - self.zdia(x, y, s)
        F4 = -self.heart_F(x, y, zn)
        return np.maximum(np.maximum(F1, F2), np.maximum(F3, F4))

    def lateral_cp(self, s):
        """(x, zn) of the lateral costophrenic angle at the lung's mid depth."""
        z = self.z_cp(s)
        for _ in range(8):
            xc, A, B = self.lung_frame(z, s)
            x = xc + s * A
            z = float(self.zdia(x, self.yc, s))
        xc, A, B = self.lung_frame(z, s)
        return float(xc + s * A), z

    def inside_lung(self, P, s, margin=0.0):
        return self.lung_F(P[..., 0], P[..., 1], P[..., 2], s) < -margin

    # --- vessel tree ---
    def _vessel_tree(self, rng, s):
        """Branching pulmonary vessel tree of lung s, generated generation by generation."""
        H = self.H
        hil = np.array([s * (self.M(0.42 * H) + 14), self.yc - 4, 0.40 * H])
        trunks = np.array([(0.35, -1.0), (0.8, -0.65), (1.0, -0.05), (0.9, 0.45), (0.45, 1.0),
                           (0.15, 1.0), (0.7, 0.2), (0.6, 0.7)])
        n0 = len(trunks)
        d = _unit(np.stack([s * trunks[:, 0], rng.uniform(-0.5, 0.5, n0), trunks[:, 1]], 1))
        P = hil + rng.normal(0, 4, (n0, 3))
        r = rng.uniform(4.6, 6.0, n0) * np.where(trunks[:, 1] < -0.5, 0.85, 1.0)
        segA, segB, rad = [], [], []
        for g in range(9):
            if len(P) == 0:
                break
            L = 30.0 * 0.80 ** g * rng.uniform(0.75, 1.25, len(P))
            Q = P + d * L[:, None]
            if g > 0:
                ok = self.inside_lung(Q, s, margin=0.0) & (self.lung_F(Q[:, 0], Q[:, 1], Q[:, 2], s) < -r)
                Qh = P + d * (0.5 * L)[:, None]
                okh = self.lung_F(Qh[:, 0], Qh[:, 1], Qh[:, 2], s) < -r
                Q = np.where(ok[:, None], Q, Qh)
                keep = ok | okh
                P, Q, d, r = P[keep], Q[keep], d[keep], r[keep]
            segA.append(P)
            segB.append(Q)
            rad.append(r)
            grow = r >= 0.55
            P, Q, d, r = P[grow], Q[grow], d[grow], r[grow]
            if g >= 7 or len(P) == 0:
                break
            out = _unit(Q - hil)
            kids_d, kids_r = [], []
            for k in range(2):
                rnd = _unit(rng.normal(0, 1, (len(P), 3)))
                kids_d.append(_unit(d + 0.75 * rnd + 0.35 * out))
                kids_r.append(r * (0.80 if k == 0 else 0.68) * rng.uniform(0.9, 1.05, len(P)))
            P = np.concatenate([Q, Q])
            d = np.concatenate(kids_d)
            r = np.concatenate(kids_r)
        return np.concatenate(segA), np.concatenate(segB), np.concatenate(rad)


# ----------------------------------------------------------------------------------------
# projection geometry
# ----------------------------------------------------------------------------------------
class Geometry:
    """Point-source projection with roll/pitch shear, then in-plane similarity on the detector."""

    def __init__(self, view, person, *, sid, roll, pitch, theta, k, tx, ty, zc):
        self.view = view            # 'PA', 'AP', 'LL'
        self.p = person
        self.sid = sid
        self.tr = math.tan(math.radians(roll))
        self.tp = math.tan(math.radians(pitch))
        self.theta = math.radians(theta)
        self.k = k
        self.tx, self.ty = tx, ty
        self.zc = zc
        D, W = person.D, person.W
        if view == "PA":       # detector at the anterior surface
            self.det = -(D + 8)
        elif view == "AP":     # detector behind the back
            self.det = D + 12
        else:                  # LL: left side against the detector
            self.det = W + 12

    @property
    def lateral(self):
        return self.view == "LL"

    def mag(self, depth):
        dist = np.abs(depth - self.det)
        return self.sid / (self.sid - dist)

    def split(self, P):
        P = np.asarray(P, float)
        if self.lateral:
            return P[..., 1], P[..., 0], P[..., 2]   # a (across), depth, z
        return P[..., 0], P[..., 1], P[..., 2]

    def uv(self, P):
        a, dep, z = self.split(P)
        m = self.mag(dep)
        return m * (a + dep * self.tr), m * (z - self.zc + dep * self.tp), m

    def det_xy(self, u, v):
        c, s = math.cos(self.theta), math.sin(self.theta)
        return (self.k * (c * u - s * v) + self.tx, self.k * (s * u + c * v) + self.ty)

    def proj(self, P):
        u, v, m = self.uv(P)
        X, Y = self.det_xy(u, v)
        return X, Y, m * self.k

    def inv_uv(self, X, Y):
        c, s = math.cos(self.theta), math.sin(self.theta)
        X = (np.asarray(X) - self.tx) / self.k
        Y = (np.asarray(Y) - self.ty) / self.k
        return c * X + s * Y, -s * X + c * Y

    def depth_axis(self):
        return np.array([1.0, 0, 0]) if self.lateral else np.array([0, 1.0, 0])


# ----------------------------------------------------------------------------------------
# volume grid and projection
# ----------------------------------------------------------------------------------------
class Volume:
    def __init__(self, person, geom, h_in=2.5, h_dep=7.0):
        p = person
        self.g = geom
        self.h_in, self.h_dep = h_in, h_dep
        xr = p.W + (p.arm_r * 2 + 20 if (p.arms and not geom.lateral) else 30)
        self.x = np.arange(-xr, xr + 1e-6, h_dep if geom.lateral else h_in, dtype=F32)
        self.y = np.arange(-p.D - (p.breast_r + 10 if p.breasts else 15), p.D + 15,
                           h_in if geom.lateral else h_dep, dtype=F32)
        self.z = np.arange(-130, p.H + 160, h_in, dtype=F32)
        if geom.lateral:
            self.dep, self.acr = self.x, self.y
        else:
            self.dep, self.acr = self.y, self.x
        self.shape = (len(self.z), len(self.dep), len(self.acr))
        self.vol = np.zeros(self.shape, F32)

    def box(self, lo, hi):
        """Slices and broadcast coordinates (X, Y, Z) for an (x, y, z) mm box."""
        def rng_(arr, a, b):
            i0 = int(np.searchsorted(arr, a, side="left"))
            i1 = int(np.searchsorted(arr, b, side="right"))
            i0 = max(0, min(i0 - 1, len(arr) - 1))
            i1 = max(i0 + 2, min(i1 + 1, len(arr)))
            return slice(i0, i1)
        sx = rng_(self.x, lo[0], hi[0])
        sy = rng_(self.y, lo[1], hi[1])
        sz = rng_(self.z, lo[2], hi[2])
        Z = self.z[sz][:, None, None]
        if self.g.lateral:
            X = self.x[sx][None, :, None]
            Y = self.y[sy][None, None, :]
            sl = (sz, sx, sy)
        else:
            X = self.x[sx][None, None, :]
            Y = self.y[sy][None, :, None]
            sl = (sz, sy, sx)
        return sl, X, Y, Z

    def full(self):
        return self.box((self.x[0], self.y[0], self.z[0]), (self.x[-1], self.y[-1], self.z[-1]))

    def project(self, vol, grid):
        """Ray sum of vol onto the coarse detector grid (nv, nu) given by grid=(X0, Y0, hc, nv, nu)."""
        X0, Y0, hc, nv, nu = grid
        g = self.g
        out = np.zeros((nv, nu), F32)
        a0, z0 = float(self.acr[0]), float(self.z[0])
        ha, hz = self.h_in, self.h_in
        for j, dep in enumerate(self.dep):
            sl = vol[:, j, :]
            if not sl.any():
                continue
            m = float(g.mag(float(dep)))

            def idx(iv, iu):
                X = X0 + (iu + 0.5) * hc
                Y = Y0 + (iv + 0.5) * hc
                u, v = g.inv_uv(X, Y)
                a = u / m - dep * g.tr
                z = v / m + g.zc - dep * g.tp
                return np.array([(z - z0) / hz, (a - a0) / ha])
            o = idx(0, 0)
            mat = np.stack([idx(1, 0) - o, idx(0, 1) - o], axis=1)
            out += ndimage.affine_transform(sl, mat, offset=o, output_shape=(nv, nu), order=1,
                                            mode="constant", cval=0.0, prefilter=False)
        return out * F32(self.h_dep)


# ----------------------------------------------------------------------------------------
# fine (analytic) projection layer
# ----------------------------------------------------------------------------------------
class Fine:
    def __init__(self, X0, Y0, h, ny, nx):
        self.X0, self.Y0, self.h, self.ny, self.nx = X0, Y0, h, ny, nx
        self.buf = np.zeros((ny, nx), F32)

    def _bbox(self, xmin, xmax, ymin, ymax):
        c0 = int(math.floor((xmin - self.X0) / self.h - 0.5))
        c1 = int(math.ceil((xmax - self.X0) / self.h - 0.5)) + 1
        r0 = int(math.floor((ymin - self.Y0) / self.h - 0.5))
        r1 = int(math.ceil((ymax - self.Y0) / self.h - 0.5)) + 1
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, self.nx), min(r1, self.ny)
        if c1 <= c0 or r1 <= r0:
            return None
        xs = (self.X0 + (np.arange(c0, c1) + 0.5) * self.h).astype(F32)[None, :]
        ys = (self.Y0 + (np.arange(r0, r1) + 0.5) * self.h).astype(F32)[:, None]
        return (slice(r0, r1), slice(c0, c1)), xs, ys

    def segments(self, geom, A3, B3, r3, dmu, combine="add", fac_cap=3.5, target=None, sign=1.0,
                 flat=False):
        """Tubes between 3-D points A3[i] -> B3[i], radius r3[i] (mm, physical)."""
        A3 = np.atleast_2d(A3)
        B3 = np.atleast_2d(B3)
        r3 = np.broadcast_to(np.asarray(r3, float), (len(A3),))
        dmu = np.broadcast_to(np.asarray(dmu, float), (len(A3),))
        ax, ay, am = geom.proj(A3)
        bx, by, bm = geom.proj(B3)
        d3 = _unit(B3 - A3)
        cosd = np.abs(d3 @ geom.depth_axis())
        fac = np.minimum(1.0 / np.sqrt(np.maximum(1 - cosd ** 2, 1e-6)), fac_cap)
        mm = 0.5 * (am + bm)
        R = r3 * mm
        if target is None:
            target = self.buf
        if combine == "max":
            xmin, xmax = min(ax.min(), bx.min()) - R.max(), max(ax.max(), bx.max()) + R.max()
            ymin, ymax = min(ay.min(), by.min()) - R.max(), max(ay.max(), by.max()) + R.max()
            bb = self._bbox(xmin, xmax, ymin, ymax)
            if bb is None:
                return
            sl, _, _ = bb
            local = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), F32)
            sub = Fine(self.X0 + sl[1].start * self.h, self.Y0 + sl[0].start * self.h, self.h,
                       local.shape[0], local.shape[1])
            sub.buf = local
            for i in range(len(A3)):
                sub._seg(ax[i], ay[i], bx[i], by[i], R[i], abs(dmu[i]) * fac[i] / mm[i], "max")
            sgn = sign * (1.0 if dmu[0] >= 0 else -1.0)
            target[sl] += F32(sgn) * local
            return
        for i in range(len(A3)):
            self._seg(ax[i], ay[i], bx[i], by[i], R[i], dmu[i] * fac[i] / mm[i], "add", target, flat)

    def _seg(self, ax, ay, bx, by, R, val, mode, target=None, flat=False):
        bb = self._bbox(min(ax, bx) - R, max(ax, bx) + R, min(ay, by) - R, max(ay, by) + R)
        if bb is None:
            return
        sl, xs, ys = bb
        dx, dy = bx - ax, by - ay
        L2 = dx * dx + dy * dy
        px, py = xs - ax, ys - ay
        if L2 > 1e-9:
            t0 = (px * dx + py * dy) / L2
            t = np.clip(t0, 0, 1)
            ex, ey = px - t * dx, py - t * dy
            if flat:   # no end caps: joints of a tree do not double up
                ex = np.where((t0 < 0) | (t0 > 1), F32(1e6), ex)
        else:
            ex, ey = px + 0 * py, py + 0 * px
        d2 = ex * ex + ey * ey
        ch = np.sqrt(np.maximum(R * R - d2, 0)) * F32(2 * val)
        tgt = self.buf if target is None else target
        if mode == "max":
            np.maximum(tgt[sl], ch, out=tgt[sl])
        else:
            tgt[sl] += ch

    def polyline(self, geom, P3, r, dmu, inner=None, dmu_inner=0.0, fac_cap=3.5):
        """One continuous tube (max-combined along its length); optional hollow/cortex core."""
        P3 = np.asarray(P3, float)
        r = np.broadcast_to(np.asarray(r, float), (len(P3),))
        A, B = P3[:-1], P3[1:]
        self.segments(geom, A, B, 0.5 * (r[:-1] + r[1:]), dmu, combine="max", fac_cap=fac_cap)
        if inner is not None:
            ri = np.broadcast_to(np.asarray(inner, float), (len(P3),))
            self.segments(geom, A, B, 0.5 * (ri[:-1] + ri[1:]), dmu_inner, combine="max",
                          fac_cap=fac_cap, sign=-1.0)

    def sphere(self, geom, c3, r, dmu):
        X, Y, m = geom.proj(np.asarray(c3, float)[None])
        X, Y, m = float(X[0]), float(Y[0]), float(m[0])
        R = r * m
        bb = self._bbox(X - R, X + R, Y - R, Y + R)
        if bb is None:
            return
        sl, xs, ys = bb
        d2 = (xs - X) ** 2 + (ys - Y) ** 2
        self.buf[sl] += np.sqrt(np.maximum(R * R - d2, 0)) * F32(2 * dmu / m)

    def disc(self, geom, c3, r, value, ring=0.0):
        X, Y, m = geom.proj(np.asarray(c3, float)[None])
        X, Y, m = float(X[0]), float(Y[0]), float(m[0])
        R = r * m
        bb = self._bbox(X - R - 1, X + R + 1, Y - R - 1, Y + R + 1)
        if bb is None:
            return
        sl, xs, ys = bb
        d = np.sqrt((xs - X) ** 2 + (ys - Y) ** 2)
        v = np.clip(R - d + 0.5, 0, 1) * value
        if ring:
            v += np.clip(1.2 - np.abs(d - R * 0.8), 0, 1) * ring
        self.buf[sl] += v.astype(F32)


# ----------------------------------------------------------------------------------------
# lesions and devices (3-D parametric descriptions, neutral coordinates)
# ----------------------------------------------------------------------------------------
ZONES = ("upper", "middle", "lower")


def _lesion_point(person, rng, s, zone, radius):
    """A centre inside lung s, centred in the requested third (frac margin 0.08)."""
    k = ZONES.index(zone)
    lo, hi = k / 3 + 0.08, (k + 1) / 3 - 0.08
    if k == 0:
        lo = 0.14
    x_cp, z_cp = person.lateral_cp(s)
    for _ in range(200):
        f = rng.uniform(lo, hi)
        zn = f * z_cp
        xc, A, B = person.lung_frame(zn, s)
        x = float(xc + s * A * rng.uniform(-0.45, 0.55))
        y = float(person.yc + B * rng.uniform(-0.5, 0.5))
        P = np.array([x, y, zn])
        if person.inside_lung(P, s, margin=min(radius, 25) + 4):
            return P
    # fallback: the lung's centre line at that height
    zn = 0.5 * (lo + hi) * z_cp
    xc, A, B = person.lung_frame(zn, s)
    return np.array([float(xc), person.yc, zn])


def make_lesion(person, rng, ftype, side, zone=None):
    s = 1 if side == "left" else -1
    L = {"type": ftype, "side": side, "s": s, "seed": int(rng.integers(0, 2**31 - 1))}
    if ftype in ("nodule", "mass"):
        zone = zone or ZONES[rng.integers(0, 3)]
        L["zone"] = zone
        L["lobes"] = 1 if (ftype == "nodule" and rng.random() < 0.7) else int(rng.integers(2, 5))
        L["spic"] = ftype == "mass" and rng.random() < 0.5
        L["c"] = _lesion_point(person, rng, s, zone, 20 if ftype == "nodule" else 35)
    elif ftype == "consolidation":
        zone = zone or ZONES[rng.integers(0, 3)]
        L["zone"] = zone
        L["c"] = _lesion_point(person, rng, s, zone, 25)
        L["fissure"] = (s < 0 and zone == "upper" and rng.random() < 0.6)
        L["aspect"] = (rng.uniform(0.75, 1.0), rng.uniform(1.4, 2.2), rng.uniform(0.75, 1.15))
        L["density"] = rng.uniform(0.85, 1.0)
    elif ftype == "effusion":
        L["zone"] = "lower"
    elif ftype == "pneumothorax":
        L["zone"] = "upper"
    return L


def lesion_size_range(ftype):
    # true (physical) sizes; image sizes add ~3-18 % magnification
    return {"nodule": (8.0, 24.0), "mass": (36.0, 68.0), "consolidation": (32.0, 100.0),
            "effusion": (16.0, 125.0), "pneumothorax": (6.0, 34.0)}[ftype]


DEVICE_KINDS = ("ett", "ngt", "cvc", "drain", "ecg")


def make_device(person, rng, kind):
    d = {"kind": kind, "seed": int(rng.integers(0, 2**31 - 1))}
    H = person.H
    if kind == "ett":
        d["tip"] = rng.uniform(0.20, 0.30) * H
    elif kind == "ngt":
        d["tip_x"] = rng.uniform(40, 75)
    elif kind == "cvc":
        d["s"] = -1 if rng.random() < 0.75 else 1
        d["tip"] = rng.uniform(0.36, 0.48) * H
    elif kind == "drain":
        d["s"] = -1 if rng.random() < 0.5 else 1
        d["tip"] = rng.uniform(0.12, 0.3) * H
    elif kind == "ecg":
        d["n"] = int(rng.integers(3, 6))
    return d


def device_side_zone(person, d):
    if d["kind"] in ("cvc", "drain"):
        side = "left" if d["s"] > 0 else "right"
        f = d["tip"] / person.H
    else:
        side = "bilateral"
        f = {"ett": 0.1, "ngt": 0.9, "ecg": 0.5}[d["kind"]]
        if d["kind"] == "ett":
            f = d["tip"] / person.H
    zone = ZONES[min(2, int(f * 3))]
    return side, zone


DEVICE_NAMES = {"ett": "endotracheal_tube", "ngt": "nasogastric_tube", "cvc": "central_line",
                "drain": "chest_drain", "ecg": "ecg_leads"}


# ----------------------------------------------------------------------------------------
# rendering one image
# ----------------------------------------------------------------------------------------
def _noise_lattice(seed, shape=(16, 16, 16)):
    r = np.random.default_rng(seed)
    return ndimage.spline_filter(r.normal(0, 1, shape).astype(F32), order=3)


def render_line_integral(person: Person, state: dict, geom: Geometry, grid_fine):
    """Return the total line-integral map on the 0.5 mm detector-aligned grid, and label info."""
    p = person
    X0, Y0, hf, nyf, nxf = grid_fine
    hc = hf * 5
    coarse = (X0, Y0, hc, nyf // 5, nxf // 5)
    sf = 1.0 + state["insp"] / p.H                  # craniocaudal stretch of the thorax
    vol = Volume(p, geom)
    V = vol.vol
    info = {}

    # --- trunk, arms, breasts ---
    sl, X, Y, Z = vol.full()
    H, W, D = p.H, p.W, p.D
    _trunk(p, geom, vol, V, X, Y, Z, H, W, D)

    # --- lungs and their lesions ---
    lesions = [l for l in state["lesions"]]
    lung_proj = _lungs(p, vol, V, lesions, coarse, sf, H, W, D)

    _axial_bones_bubble(p, geom, vol, V, sf, H, W, D)

    P_coarse = vol.project(V, coarse)
    del V, vol
    nyc, nxc = nyf // 5, nxf // 5
    pr = (np.arange(nyf) + 0.5) / 5 - 0.5
    pc = (np.arange(nxf) + 0.5) / 5 - 0.5
    Pc_up = _upsample_linear(P_coarse, (nyf, nxf), pr, pc)

    # --- fine analytic layer ---
    fine = Fine(X0, Y0, hf, nyf, nxf)
    _render_ribs(fine, geom, p, sf)
    _render_bones_airways(fine, geom, p, sf)
    _render_vessels(fine, geom, p, sf, state)
    for l in lesions:
        if l["type"] in ("nodule", "mass"):
            _render_nodule(fine, geom, p, sf, l)
        if l["type"] == "consolidation":
            _render_bronchograms(fine, geom, p, sf, l)
    for d in state.get("devices", []):
        _render_device(fine, geom, p, sf, d)
    total = Pc_up + fine.buf
    _pleural_line(total, lung_proj, nyf, nxf, pr, pc)
    # lesion projections (coarse) for labels
    for l in lesions:
        if "_proj" in l:
            l["_proj_grid"] = coarse
    return total


def _pleural_line(total, lung_proj, nyf, nxf, pr, pc):
    """The visceral pleural line of a pneumothorax (edge of the retracted lung next to pleural air) into total."""
    # visceral pleural line
    if "ret" in lung_proj:
        ret = _upsample_linear(lung_proj["ret"], (nyf, nxf), pr, pc)
        air = _upsample_linear(lung_proj["air"], (nyf, nxf), pr, pc)
        mask = (ret > 6.0).astype(F32)
        g = ndimage.gaussian_filter(mask, 0.9)
        edge = 4 * g * (1 - g)
        near_air = ndimage.maximum_filter(air, size=9) > 20.0
        total += F32(0.32) * edge * near_air


def _axial_bones_bubble(p, geom, vol, V, sf, H, W, D):
    """Vertebrae (discs, pedicles, spinous processes), sternum, scapulae (over the lungs on AP) and the gastric bubble into V."""
    # --- spine, sternum, scapulae, stomach bubble ---
    sl2, X2, Y2, Z2 = vol.box((-40, p.y_sp - 30, -130), (40, p.y_sp + 60, H + 160))
    Fvb = np.sqrt((X2 / p.r_vb) ** 2 + ((Y2 - p.y_sp) / (0.85 * p.r_vb)) ** 2) * p.r_vb - p.r_vb
    ph = np.mod(Z2 - p.vb_off, p.vb_len) / p.vb_len
    disc = np.clip((np.abs(ph - 0.5) - 0.36) / 0.08, 0, 1).astype(F32)   # disc spaces (soft)
    V[sl2] += F32(MU_VB - MU_ST) * _soft(Fvb.astype(F32)) * (1 - 0.22 * disc)
    for s in (-1, 1):   # pedicles: short in z
        Fp = np.sqrt(((X2 - s * 0.72 * p.r_vb) / 5.5) ** 2 + ((Y2 - p.y_sp - p.r_vb) / 9) ** 2) * 5.5 - 5.5
        ped = np.clip((0.24 - np.abs(ph - 0.42)) / 0.08, 0, 1).astype(F32)
        V[sl2] += F32(0.030 - MU_ST) * _soft(Fp.astype(F32)) * ped
    Fsp = np.sqrt((X2 / 5) ** 2 + ((Y2 - p.y_sp - p.r_vb - 26) / 16) ** 2) * 5 - 5
    V[sl2] += F32(0.025 - MU_ST) * _soft(Fsp.astype(F32)) * np.clip((0.32 - np.abs(ph - 0.5)) / 0.1, 0, 1)
    # sternum
    sl2, X2, Y2, Z2 = vol.box((-25, -D - 5, 0.10 * H), (25, -D + 25, 0.62 * H))
    Fs = np.maximum(np.abs(X2) - (17 - 5 * (Z2 > 0.25 * H)), np.abs(Y2 - (-D + 10)) - 5)
    Fs = np.maximum(Fs, np.maximum(0.12 * H - Z2, Z2 - 0.60 * H))
    V[sl2] += F32(0.030 - MU_ST) * _soft(Fs.astype(F32))
    # scapulae: protracted out of the lungs on PA, over the lungs on AP
    med = (0.48 if geom.view == "AP" else 0.72) * W
    for s in (-1, 1):
        sl2, X2, Y2, Z2 = vol.box((min(s * med, s * (W + 15)) - 5, D - 40, -20),
                                  (max(s * med, s * (W + 15)) + 5, D + 5, 0.55 * H))
        ax_ = s * X2
        # triangle: medial border vertical from z=-5 to 0.5H, lateral border slanting
        zz = (Z2 + 5) / (0.52 * H)
        lat_edge = W + 12 - (W + 12 - med) * np.clip(zz, 0, 1)
        Ft = np.maximum(np.maximum(med - ax_, ax_ - lat_edge), np.maximum(-5 - Z2, Z2 - 0.5 * H))
        Fy = np.abs(Y2 - (D - 18)) - 5 - 3 * np.clip((ax_ - lat_edge + 18) / 18, 0, 1)
        V[sl2] += F32(MU_SCAP - MU_ST) * _soft(np.maximum(Ft, Fy).astype(F32))
    # gastric bubble under the left dome
    bx_, by_, br = p.bubble
    bz = p.zdia(bx_, p.yc, 1) * sf + 0.6 * br + 4
    sl2, X2, Y2, Z2 = vol.box((bx_ - 2 * br, by_ - 2 * br, bz - 2 * br), (bx_ + 2 * br, by_ + 2 * br, bz + 2 * br))
    Fg = np.sqrt(((X2 - bx_) / (1.1 * br)) ** 2 + ((Y2 - by_) / br) ** 2 + ((Z2 - bz) / (0.85 * br)) ** 2) * br - br
    Fg = np.maximum(Fg, Z2 - (bz + 0.2 * br))         # gas above a flat fluid level           # flat gas-fluid level below
    V[sl2] += F32(-MU_ST * 0.95) * _soft(Fg.astype(F32))


def _lungs(p, vol, V, lesions, coarse, sf, H, W, D):
    """Each lung into V with its pneumothorax (retracted lung, pleural air), effusion (meniscus) and consolidations; the projections the pleural line and labels need."""
    lung_proj = {}
    for s in (-1, 1):
        ptx = next((l for l in lesions if l["type"] == "pneumothorax" and l["s"] == s), None)
        eff = next((l for l in lesions if l["type"] == "effusion" and l["s"] == s), None)
        cons = [l for l in lesions if l["type"] == "consolidation" and l["s"] == s]
        x_lo, x_hi = (0, W) if s > 0 else (-W, 0)
        sl2, X2, Y2, Z2 = vol.box((x_lo, -D, -5), (x_hi, D, (H + 60) * sf))
        Zn = Z2 / F32(sf)
        Fl = p.lung_F(X2, Y2, Zn, s).astype(F32)
        Lorig = _soft(Fl)
        if ptx is not None:
            Fr = p.lung_F(X2, Y2, Zn, s, ptx_d=ptx["size"], ptx_top=ptx["size"]).astype(F32)
            Lung = _soft(Fr)
            air = np.clip(Lorig - Lung, 0, 1)
            V[sl2] += F32(-MU_ST) * air
            # projections of the retracted lung and of the pleural air for the pleural line
            tmp = np.zeros(vol.shape, F32)
            tmp[sl2] = Lung
            lung_proj["ret"] = vol.project(tmp, coarse)
            tmp[sl2] = air
            lung_proj["air"] = vol.project(tmp, coarse)
            del tmp
        else:
            Lung = Lorig
        V[sl2] += F32(MU_LUNG - MU_ST) * Lung
        if eff is not None:
            ztop = eff["ztop"]
            h = p.z_cp(s) - ztop
            zf = _meniscus(p, s, X2, Y2, Zn, ztop, h)
            S = _soft((zf - Zn).astype(F32))
            fluid = Lung * S
            V[sl2] += F32(MU_FLUID - MU_LUNG) * fluid
            Lung = Lung * (1 - S)
        for c in cons:
            sl3, cons_occ = _cons_occupancy(p, c, vol, sf)
            V[sl3] += F32(MU_ST - MU_LUNG) * cons_occ
            tmp = np.zeros(vol.shape, F32)
            tmp[sl3] = cons_occ
            c["_proj"] = vol.project(tmp, coarse)
            del tmp
        del Fl, Lorig, Lung
    return lung_proj


def _trunk(p, geom, vol, V, X, Y, Z, H, W, D):
    """Trunk soft tissue (and the arms on a frontal) and breast fat into the volume V."""
    wz = np.interp(Z, [-300, -75, -38, 0, 40, H, H + 60, H + 300],
                   [56, 60, W + 20, W + 12, W, W * 1.04, W, W * 0.97]).astype(F32)
    dz = np.interp(Z, [-300, -75, -20, 40, H + 300], [56, 60, D * 0.86, D, D * 1.03]).astype(F32)
    Fb = (np.sqrt((X / wz) ** 2 + ((Y - 5) / dz) ** 2) - 1) * np.minimum(wz, dz)
    body = _soft(Fb.astype(F32))
    del Fb
    if p.arms and not geom.lateral:
        for s in (-1, 1):
            xa = s * (W + p.arm_r + 4)
            sl2, X2, Y2, Z2 = vol.box((xa - p.arm_r - 8, -p.arm_r - 8, -70),
                                      (xa + p.arm_r + 8, p.arm_r + 8, H + 160))
            zz = np.clip(Z2, -10, None)
            Fa = np.sqrt((X2 - xa) ** 2 + (Y2 - 5) ** 2 + (Z2 - zz) ** 2) - p.arm_r
            np.maximum(body[sl2], _soft(Fa.astype(F32)), out=body[sl2])
    V += F32(MU_ST) * body
    if p.breasts:
        for s in (-1, 1):
            c = np.array([s * 0.5 * W, -D * 0.85, 0.74 * H])
            r = p.breast_r
            sl2, X2, Y2, Z2 = vol.box(c - r - 6, c + r + 6)
            Fr = (np.sqrt(((X2 - c[0]) / (1.25 * r)) ** 2 + ((Y2 - c[1]) / r) ** 2 +
                          ((Z2 - c[2]) / (1.0 * r)) ** 2) - 1) * r
            V[sl2] += F32(MU_FAT) * _soft(Fr.astype(F32)) * (1 - body[sl2])
    del body


def _cons_occupancy(p, c, vol, sf):
    """Consolidated-lung occupancy of consolidation c on a box of vol: lumpy ellipsoid with
    fuzzy margins (smooth 3-D noise), optionally cut by the minor fissure, inside the lung."""
    s = c["s"]
    cc = np.asarray(c["c"], float)
    rad = 0.5 * c["size"] * np.array(c["aspect"]) / 1.25
    lo = np.array([cc[0] - rad[0] * 1.5, cc[1] - rad[1] * 1.5, (cc[2] - rad[2] * 1.5) * sf])
    hi = np.array([cc[0] + rad[0] * 1.5, cc[1] + rad[1] * 1.5, (cc[2] + rad[2] * 1.5) * sf])
    sl3, X3, Y3, Z3 = vol.box(lo, hi)
    Zn3 = Z3 / F32(sf)
    dxn = (X3 - cc[0]) / rad[0]
    dyn = (Y3 - cc[1]) / rad[1]
    dzn = (Zn3 - cc[2]) / rad[2]
    q = np.sqrt(dxn ** 2 + dyn ** 2 + dzn ** 2)
    lat3 = _noise_lattice(c["seed"])
    crd = np.stack(np.broadcast_arrays((dzn * 5 + 8), (dyn * 5 + 8), (dxn * 5 + 8)))
    nz = ndimage.map_coordinates(lat3, crd.reshape(3, -1), order=3, mode="nearest",
                                 prefilter=False).reshape(q.shape)
    Fc = (q - 1 + 0.22 * nz) * rad.min()
    if c.get("fissure"):
        Fc = np.maximum(Fc, Zn3 - (0.40 * p.H + 4))
    C = _soft(Fc.astype(F32), fuzz=4.0) * F32(c["density"])
    L3 = _soft(p.lung_F(X3, Y3, Zn3, s).astype(F32))
    return sl3, C * L3


def _proj_extent(P, grid, geom, thr=12.0):
    """Weighted centre v (frontal frame) and longest extent (mm, detector) of a projected map."""
    X0, Y0, hc, nv, nu = grid
    w = np.where(P > thr, P, 0)
    if not w.any():
        w = np.where(P >= 0.5 * P.max(), P, 0)
    if not w.any():
        return None, 0.0
    rr, cc = np.nonzero(w)
    ww = w[rr, cc]
    u, v = geom.inv_uv(X0 + (cc + 0.5) * hc, Y0 + (rr + 0.5) * hc)
    vc = float((v * ww).sum() / ww.sum())
    ext = 0.0
    for ang in np.linspace(0, np.pi, 8, endpoint=False):
        pr = u * math.cos(ang) + v * math.sin(ang)
        ext = max(ext, float(pr.max() - pr.min()) + hc)
    return vc, ext * geom.k


def _cons_extent(person, l, size):
    """Visible extent of consolidation l at this size on a plain PA (magnification included)."""
    g = Geometry("PA", person, sid=1800, roll=0, pitch=0, theta=0, k=1.0, tx=0, ty=0,
                 zc=0.5 * person.H)
    vol = Volume(person, g)
    c = dict(l, size=size)
    sl3, occ = _cons_occupancy(person, c, vol, 1.0)
    tmp = np.zeros(vol.shape, F32)
    tmp[sl3] = occ
    grid = (-250.0, -250.0, 2.5, 200, 200)
    return _proj_extent(vol.project(tmp, grid), grid, g)[1]


def _meniscus(p, s, x, y, zn, ztop, h):
    """Upper surface of an upright effusion: level medially, rising towards the lateral,
    anterior and posterior chest wall (meniscus); ztop = its top at the lateral wall."""
    xc, A, B = p.lung_frame(zn, s)
    lx = np.clip(s * (x - xc) / np.maximum(A, 1.0), 0, 1.2)
    ly = np.clip((y - p.yc) / p.Bmid, -1.2, 1.2)
    rho2 = np.clip(lx * lx + 0.6 * ly * ly, 0, 1)
    return ztop + 0.6 * h * (1 - rho2) ** 1.5


def _rib_points(p, s, i, sf):
    """3-D centreline of rib i (0-based) on side s (neutral -> stretched)."""
    H = p.H
    z0 = p.rib_z0 + i * p.rib_sp * (0.80 + 0.025 * i) + p.rib_jit[(s > 0) * 1, i]
    phi_end = (2.55 - 0.02 * i) if i < 10 else 1.45
    phis = np.linspace(0.16, phi_end, 24)
    zz = np.clip(z0 + 0.5 * p.rib_sp, 0, None)
    Wr = float(p.Wc(zz)) + 6 - (30 if i == 0 else 0) * 0 - max(0, 3 - i) * 14
    Dr = p.D - p.tw * 0.6
    x = s * Wr * np.sin(phis)
    y = p.y_sp * 0.3 + (Dr) * np.cos(phis) * 1.0
    y = np.where(phis < np.pi / 2, p.yc + (Dr - p.yc) * np.cos(phis), p.yc + (Dr + p.yc) * np.cos(phis))
    t = (phis - phis[0]) / (phis[-1] - phis[0])
    u1 = np.clip((phis - 0.16) / (np.pi / 2 - 0.16), 0, 1) ** 1.4
    u2 = np.clip((phis - np.pi / 2) / max(phi_end - np.pi / 2, 0.1), 0, 1) ** 1.15
    z = (z0 - 4 * np.sin(np.pi * np.clip(t * 2.2, 0, 1)) + p.rib_sp * 0.9 * u1
         + p.rib_sp * p.rib_drop * 1.5 * u2)
    return np.stack([x, y, z * sf], axis=1)


def _render_ribs(fine, geom, p, sf):
    for s in (-1, 1):
        for i in range(12):
            P = _rib_points(p, s, i, sf)
            n = len(P)
            t = np.linspace(0, 1, n)
            r = p.rib_r * (1.0 - 0.3 * t) * (0.8 if i == 0 else 1.0) * (0.85 if i >= 10 else 1.0)
            # bony rib ends anteriorly (costal cartilage ~ soft tissue)
            cut = int(n * (0.95 if i < 7 else 0.88))
            P, r = P[:cut], r[:cut]
            # one continuous tube (no internal end caps); anterior part thinner and fainter
            tt = np.linspace(0, 1, len(P) - 1)
            scale = 0.8 - 0.3 * np.clip((tt - 0.45) / 0.25, 0, 1)
            fine.polyline(geom, P, r, scale * (MU_CORT - MU_ST), inner=np.maximum(r - 1.1, 0.5),
                          dmu_inner=scale * (MU_CORT - MU_MARROW), fac_cap=2.0)


def _render_bones_airways(fine, geom, p, sf):
    W, D, H = p.W, p.D, p.H
    for s in (-1, 1):
        zm, zl = p.clav
        t = np.linspace(0, 1, 12)
        x = s * (16 + (W - 4 - 16) * t)
        y = -D + 14 + (D * 0.9) * t ** 1.5
        z = (zm + 42) + (zl + 6 - zm - 42) * t + 5 * np.sin(2 * np.pi * t)
        if geom.view == "AP":
            z = z - 14
        P = np.stack([x, y, z], 1)
        r = 6.5 - 1.5 * np.sin(np.pi * t)
        fine.polyline(geom, P, r, MU_CORT - MU_ST, inner=r - 1.6, dmu_inner=MU_CORT - MU_MARROW)
        if p.arms and not geom.lateral:
            xa = s * (W + p.arm_r + 4)
            head = np.array([s * (W + 16), 6.0, 14.0])
            fine.sphere(geom, head, 23, MU_CORT * 0.55 - MU_ST * 0.5)
            P = np.array([head, [xa * 0.98, 6, 80], [xa, 6, H + 150]])
            fine.polyline(geom, P, [12, 10, 10], MU_CORT - MU_ST, inner=[9, 6, 6],
                          dmu_inner=MU_CORT - MU_MARROW)
    # trachea and main bronchi (air in the mediastinum)
    car = np.array([2.0, p.yc - 8, 0.36 * H * sf])
    P = np.array([[0, -10, -200], [0, -5, -40], [1.0, p.yc - 10, 0.15 * H * sf], car])
    A, B, R = list(P[:-1]), list(P[1:]), [8.5] * 3
    for s, ang in ((-1, 0.55), (1, 0.85)):
        L = 18 if s < 0 else 26
        A.append(car)
        B.append(car + L * np.array([s * math.sin(ang), 0.1, math.cos(ang)]))
        R.append(6.5)
    # one max-combined air tree: no extra-dark overlap at the carina
    fine.segments(geom, np.array(A), np.array(B), np.array(R), -MU_ST * 1.3, combine="max")


def _vessel_transform(p, s, pts, state, sf):
    ptx = next((l for l in state["lesions"] if l["type"] == "pneumothorax" and l["s"] == s), None)
    out = pts.copy()
    if ptx is not None:
        d = ptx["size"]
        zcp = p.z_cp(s)
        zn = out[:, 2]
        xc, A, B = p.lung_frame(zn, s)
        zn2 = d + zn * (zcp - d) / zcp
        xc2, A2, B2 = p.lung_frame(zn2, s, ptx_d=d, ptx_top=d)
        out[:, 0] = xc2 + (out[:, 0] - xc) * A2 / np.maximum(A, 1)
        out[:, 1] = p.yc + (out[:, 1] - p.yc) * B2 / np.maximum(B, 1)
        out[:, 2] = zn2
    out[:, 2] *= sf
    return out


def _render_vessels(fine, geom, p, sf, state):
    for s in (-1, 1):
        A, B, r = p.vessels[s]
        keep = np.ones(len(A), bool)
        mid = 0.5 * (A + B)
        eff = next((l for l in state["lesions"] if l["type"] == "effusion" and l["s"] == s), None)
        if eff is not None:
            h = p.z_cp(s) - eff["ztop"]
            zf = _meniscus(p, s, mid[:, 0], mid[:, 1], mid[:, 2], eff["ztop"], h)
            keep &= mid[:, 2] < zf - r
        for c in state["lesions"]:
            if c["type"] == "consolidation" and c["s"] == s:
                rad = 0.5 * c["size"] * np.array(c["aspect"]) / 1.25
                q = np.sqrt((((mid - c["c"]) / rad) ** 2).sum(1))
                keep &= q > 0.85
        A2 = _vessel_transform(p, s, A[keep], state, sf)
        B2 = _vessel_transform(p, s, B[keep], state, sf)
        # max-combined per lung: smooth joints (no beads), thin vessels boosted a little
        boost = 1.15 + 0.7 * np.clip((3.0 - r[keep]) / 2.5, 0, 1)
        fine.segments(geom, A2, B2, r[keep], boost * (MU_ST - MU_LUNG), fac_cap=1.8, combine="max")


def _render_nodule(fine, geom, p, sf, l):
    rng = np.random.default_rng(l["seed"])
    c = l["c"].copy()
    c[2] *= sf
    R = 0.5 * l["size"]
    dmu = MU_ST - MU_LUNG
    if l["lobes"] == 1:
        fine.sphere(geom, c, R, dmu)
        return
    # lobulated: main sphere plus offset lobes, combined by max (union-like)
    tmp = Fine(fine.X0, fine.Y0, fine.h, fine.ny, fine.nx)
    tmp.buf = np.zeros_like(fine.buf)
    sub = Fine(fine.X0, fine.Y0, fine.h, fine.ny, fine.nx)
    sub.buf = np.zeros_like(fine.buf)
    sub.sphere(geom, c, R * 0.82, dmu)
    np.maximum(tmp.buf, sub.buf, out=tmp.buf)
    for _ in range(l["lobes"]):
        d = _unit(rng.normal(0, 1, 3))
        d[1] *= 0.5
        sub.buf[:] = 0
        sub.sphere(geom, c + d * R * 0.42, R * rng.uniform(0.5, 0.62), dmu)
        np.maximum(tmp.buf, sub.buf, out=tmp.buf)
    fine.buf += tmp.buf
    if l.get("spic"):
        for _ in range(int(rng.integers(6, 12))):
            d = _unit(rng.normal(0, 1, 3))
            a = c + d * R * 0.75
            b = c + d * R * rng.uniform(1.2, 1.6)
            fine.segments(geom, a[None], b[None], [rng.uniform(0.6, 1.1)], dmu)


def _render_bronchograms(fine, geom, p, sf, l):
    rng = np.random.default_rng(l["seed"] + 7)
    c = l["c"].copy()
    rad = 0.5 * l["size"] * np.array(l["aspect"]) / 1.25
    hil = np.array([l["s"] * 45.0, p.yc, 0.42 * p.H])
    d0 = _unit(c - hil)
    start = c - d0 * rad.min() * 0.6
    segs = []
    stack = [(start, d0, 2.4, 0)]
    while stack:
        a, d, r, g = stack.pop()
        b = a + d * rad.min() * rng.uniform(0.35, 0.55)
        q = np.sqrt((((b - c) / rad) ** 2).sum())
        if q > 0.8:
            continue
        segs.append((a, b, r))
        if g < 3:
            for _ in range(2):
                stack.append((b, _unit(d + 0.7 * _unit(rng.normal(0, 1, 3))), r * 0.78, g + 1))
    if not segs:
        return
    A = np.array([s[0] for s in segs])
    B = np.array([s[1] for s in segs])
    r = np.array([s[2] for s in segs])
    A[:, 2] *= sf
    B[:, 2] *= sf
    fine.segments(geom, A, B, r, -(MU_ST - MU_LUNG) * l["density"] * 0.9, fac_cap=2.0)


def _render_device(fine, geom, p, sf, d):
    rng = np.random.default_rng(d["seed"])
    H, W, D = p.H, p.W, p.D
    k = d["kind"]
    if k == "ett":
        tip = d["tip"] * sf
        P = np.array([[0, -30, -260], [0, -14, -60], [1, p.yc - 10, 0.12 * H * sf], [1.5, p.yc - 9, tip]])
        fine.polyline(geom, P, 5.0, 0.004)                       # plastic wall (faint)
        fine.polyline(geom, P + [2.5, -1.5, 0], 0.7, 0.20)       # radiopaque stripe
    elif k == "ngt":
        bz = float(p.zdia(d["tip_x"], p.yc, 1)) * sf
        P = np.array([[-2, 5, -260], [4, 30, -40], [8, 35, 0.3 * H], [14, 40, 0.7 * H * sf],
                      [25, 30, bz + 10], [d["tip_x"], 5, bz + 35], [d["tip_x"] - 18, 0, bz + 48]])
        t = np.linspace(0, 1, 40)
        Pi = np.stack([np.interp(t, np.linspace(0, 1, len(P)), P[:, j]) for j in range(3)], 1)
        fine.polyline(geom, Pi, 2.0, 0.05, inner=1.2, dmu_inner=0.05)
        fine.polyline(geom, Pi + [1.2, 0, 0], 0.45, 0.18)
    elif k == "cvc":
        s = d["s"]
        tip = d["tip"] * sf
        P = np.array([[s * (W - 20), -D + 30, -15], [s * (W * 0.5), -D * 0.6, 8], [s * 30, -18, 0.12 * H],
                      [s * 18, -10, 0.25 * H], [s * 14, -6, tip]])
        t = np.linspace(0, 1, 30)
        Pi = np.stack([np.interp(t, np.linspace(0, 1, len(P)), P[:, j]) for j in range(3)], 1)
        fine.polyline(geom, Pi, 1.1, 0.12)
    elif k == "drain":
        s = d["s"]
        ent = np.array([s * (W - 6), 5, 0.68 * H * sf])
        mid = np.array([s * (p.Wc(0.4 * H) - 18), 15, 0.40 * H * sf])
        tip = np.array([s * 0.5 * W, 20, d["tip"] * sf])
        P = np.array([ent + [s * 60, -20, 30], ent, mid, tip])
        t = np.linspace(0, 1, 40)
        Pi = np.stack([np.interp(t, np.linspace(0, 1, len(P)), P[:, j]) for j in range(3)], 1)
        fine.polyline(geom, Pi, 4.0, 0.035, inner=2.8, dmu_inner=0.035)
        fine.polyline(geom, Pi + [0, -3.5, 0], 0.6, 0.22)
    elif k == "ecg":
        for j in range(d["n"]):
            x = rng.uniform(-0.7, 0.9) * W
            z = rng.uniform(0.0, 1.1) * H
            c = np.array([x, -D - 4, z])
            fine.disc(geom, c, 4.0, 0.7, ring=0.35)
            fine.disc(geom, c, 11.0, 0.04)
            # lead wire running off towards the top / side
            e = c + np.array([rng.uniform(-1, 1) * 150, -10, -rng.uniform(150, 300)])
            mids = c + (e - c) * np.array([[0.3], [0.6]]) + rng.normal(0, 25, (2, 3)) * [1, 0, 1]
            P = np.vstack([c, mids, e])
            t = np.linspace(0, 1, 24)
            Pi = np.stack([np.interp(t, np.linspace(0, 1, 4), P[:, jj]) for jj in range(3)], 1)
            fine.polyline(geom, Pi, 0.5, 0.35)


# ----------------------------------------------------------------------------------------
# labels measured on the projection
# ----------------------------------------------------------------------------------------
def _label_geom(person, geom):
    if not geom.lateral:
        return geom
    return Geometry("PA", person, sid=1800, roll=0, pitch=0, theta=0, k=geom.k, tx=0, ty=0,
                    zc=geom.zc)


def measure_lesion(person, state, geom, l):
    """(zone, size_mm) of lesion l as seen on this image (frontal frame)."""
    p = person
    sf = 1.0 + state["insp"] / p.H
    g = _label_geom(p, geom)
    s = l["s"]
    xa = float(p.lung_frame(0.5, s)[0])
    x_cp, zn_cp = p.lateral_cp(s)
    _, v_ap, _ = g.uv(np.array([xa, p.yc, 0.0]))
    _, v_cp, _ = g.uv(np.array([x_cp, p.yc, zn_cp * sf]))
    t = l["type"]
    if t in ("nodule", "mass"):
        c = l["c"] * [1, 1, sf]
        _, v, m = g.uv(c)
        zone = ZONES[int(np.clip((v - v_ap) / (v_cp - v_ap) * 3, 0, 2))]
        return zone, float(l["size"] * m * g.k), None
    if t == "consolidation":
        if "_proj" in l and not geom.lateral:
            vc, ext = _proj_extent(l["_proj"], l["_proj_grid"], geom)
            zone = ZONES[int(np.clip((vc - v_ap) / (v_cp - v_ap) * 3, 0, 2))]
            return zone, ext, None
        c = l["c"] * [1, 1, sf]
        _, v, m = g.uv(c)
        zone = ZONES[int(np.clip((v - v_ap) / (v_cp - v_ap) * 3, 0, 2))]
        return zone, float(_cons_extent(person, l, l["size"]) * g.k), None
    if t == "effusion":
        ztop = l["ztop"]
        xc, A, B = p.lung_frame(ztop, s)
        _, v_top, _ = g.uv(np.array([float(xc + s * A), p.yc, ztop * sf]))
        size = float((v_cp - v_top) * g.k)
        large = (v_cp - v_top) / (v_cp - v_ap) >= 1.0 / 3.0
        return "lower", size, bool(large)
    if t == "pneumothorax":
        xc, A, B = p.lung_frame(0.3 * p.H, s)
        _, _, m = g.uv(np.array([float(xc + s * A), p.yc, 0.3 * p.H * sf]))
        return "upper", float(l["size"] * m * g.k), None
    raise ValueError(t)


# ----------------------------------------------------------------------------------------
# acquisition, detector model, burned-in text
# ----------------------------------------------------------------------------------------
_FONT = {
    "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111", "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001", "I": "01110 00100 00100 00100 00100 00100 01110",
    "L": "10000 10000 10000 10000 10000 10000 11111", "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 11001 10101 10011 10001 10001 10001", "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000", "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
    "X": "10001 10001 01010 00100 01010 10001 10001", "Y": "10001 10001 01010 00100 00100 00100 00100",
    "0": "01110 10011 10101 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00110 01000 10000 11111", "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    "-": "00000 00000 00000 11111 00000 00000 00000", ":": "00000 01100 01100 00000 01100 01100 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100", "/": "00001 00010 00010 00100 01000 01000 10000",
    " ": "00000 00000 00000 00000 00000 00000 00000",
}


def _burn_text(img, text, r0, c0, scale, value, backing=True):
    if backing:   # dark box behind the text, as scanners annotate
        img[max(r0 - scale, 0):r0 + 8 * scale, max(c0 - scale, 0):c0 + 6 * scale * len(text)] = 0
    for i, ch in enumerate(text.upper()):
        rows = _FONT.get(ch, _FONT[" "]).split()
        bm = np.array([[c == "1" for c in row] for row in rows], bool)
        bm = np.kron(bm, np.ones((scale, scale), bool))
        rr, cc = r0, c0 + i * 6 * scale
        h = min(bm.shape[0], img.shape[0] - rr)
        w = min(bm.shape[1], img.shape[1] - cc)
        if h <= 0 or w <= 0 or rr < 0 or cc < 0:
            continue
        sub = img[rr:rr + h, cc:cc + w]
        sub[bm[:h, :w]] = value


def _burn_marker(img, letter, r0, c0, scale, value):
    """Lead side marker: letter in a box."""
    bw = 7 * scale
    h = 9 * scale
    img[r0:r0 + h, c0:c0 + bw] = value * 0.35
    img[r0:r0 + scale, c0:c0 + bw] = value
    img[r0 + h - scale:r0 + h, c0:c0 + bw] = value
    img[r0:r0 + h, c0:c0 + scale] = value
    img[r0:r0 + h, c0 + bw - scale:c0 + bw] = value
    _burn_text(img, letter, r0 + scale, c0 + scale, scale, value, backing=False)


SPACINGS_DR = (0.125, 0.139, 0.143, 0.148, 0.150, 0.160, 0.168, 0.175, 0.194, 0.200)
SPACINGS_CR = (0.115, 0.150, 0.175, 0.200)


def make_acq(rng, person, *, view="PA", theta=None, mirror=False):
    a = {"view": view, "mirror": mirror}
    portable = view == "AP"
    a["detector"] = "CR" if rng.random() < (0.5 if portable else 0.3) else "DR"
    W, H = person.W, person.H
    fov_w = float(np.clip(2 * W + rng.uniform(25, 95), 320, 440))
    fov_h = float(np.clip(H + rng.uniform(120, 175), 350, 440))
    if view == "LL":
        fov_w = float(np.clip(2 * person.D + rng.uniform(90, 150), 300, 420))
    sp = SPACINGS_CR if a["detector"] == "CR" else SPACINGS_DR
    s = float(sp[rng.integers(0, len(sp))])
    cols = int(np.clip(round(fov_w / s), 1700, 3000))
    rows = int(np.clip(round(fov_h / s), 1700, 3000))
    a.update(spacing=s, rows=rows, cols=cols)
    a["roll"] = rng.uniform(-4, 4)
    a["pitch"] = rng.uniform(-2.5, 2.5) + (rng.uniform(3, 8) if portable else 0)
    a["theta"] = rng.uniform(-2.5, 2.5) if theta is None else theta
    a["k"] = rng.uniform(0.96, 1.04)
    a["tx"], a["ty"] = rng.uniform(-14, 14), rng.uniform(-14, 14)
    a["insp"] = rng.uniform(-12, -2) if portable else rng.uniform(-12, 12)
    a["sid"] = rng.uniform(950, 1100) if portable else (1800.0 if rng.random() < 0.8 else 1500.0)
    a["grid"] = rng.random() < (0.3 if portable else 0.9)
    a["spr"] = rng.uniform(0.2, 0.45) if a["grid"] else rng.uniform(0.7, 1.3)
    a["grid_lines"] = bool(a["grid"] and rng.random() < 0.6)
    a["grid_period"] = rng.uniform(2.1, 5.5)
    a["grid_amp"] = rng.uniform(0.004, 0.014)
    a["grid_rows"] = rng.random() < 0.3
    a["dose"] = rng.uniform(1.5e4, 5e4) if portable else rng.uniform(4e4, 2e5)
    a["gamma"] = rng.uniform(0.8, 1.3)
    a["contrast"] = rng.uniform(2.0, 4.5)
    a["headroom"] = rng.uniform(1.02, 1.15)
    a["toe"] = rng.uniform(0.18, 0.38)
    a["usm"] = rng.uniform(0.0, 1.4)
    a["usm_sigma"] = rng.uniform(1.0, 5.0)
    a["eq"] = rng.uniform(0.15, 0.6)
    a["heel"] = rng.uniform(-0.08, 0.08)
    a["colli"] = [rng.uniform(0, 0.06) if rng.random() < 0.7 else -1.0 for _ in range(4)]
    a["mono1"] = rng.random() < 0.3
    a["rle"] = rng.random() < 0.3
    a["bits"] = int(rng.choice([12, 14, 15] if a["detector"] == "DR" else [12, 12, 14]))
    a["marker"] = rng.random() < 0.75
    a["text"] = portable or rng.random() < 0.3
    a["fine_noise"] = rng.uniform(0.004, 0.012) * (1.6 if portable else 1.0)
    a["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    a["zc"] = 0.5 * H + rng.uniform(0, 15)
    return a


def make_geom(person, a):
    return Geometry(a["view"], person, sid=a["sid"], roll=a["roll"], pitch=a["pitch"],
                    theta=a["theta"], k=a["k"], tx=a["tx"], ty=a["ty"], zc=a["zc"])


def render_image(person, state, a):
    """Full image: returns (uint16 pixels, geometry)."""
    geom = make_geom(person, a)
    s = a["spacing"]
    rows, cols = a["rows"], a["cols"]
    hf = 0.5
    nxf = 5 * int(math.ceil(cols * s / (5 * hf))) + 10
    nyf = 5 * int(math.ceil(rows * s / (5 * hf))) + 10
    X0, Y0 = -nxf * hf / 2, -nyf * hf / 2
    total = render_line_integral(person, state, geom, (X0, Y0, hf, nyf, nxf))
    rng = np.random.default_rng(a["noise_seed"])
    Xc = (X0 + (np.arange(nxf) + 0.5) * hf).astype(F32)
    Yc = (Y0 + (np.arange(nyf) + 0.5) * hf).astype(F32)
    prim = np.exp(-total).astype(F32)
    prim *= (1 + a["heel"] * Yc / 200.0)[:, None]
    scat = _blur(prim, 40.0 / hf) * F32(a["spr"])
    I = prim + scat
    # collimation (soft rectangle, in detector mm)
    half_w, half_h = cols * s / 2, rows * s / 2
    cm = np.ones((nyf, nxf), F32)
    lims = []
    for j, (frac, half) in enumerate(zip(a["colli"], (half_w, half_w, half_h, half_h))):
        lims.append(half * (1 - 2 * frac) if frac > 0 else half + 50)
    fx = np.clip((lims[0] + Xc) / 1.5, 0, 1) * np.clip((lims[1] - Xc) / 1.5, 0, 1)
    fy = np.clip((lims[2] + Yc) / 1.5, 0, 1) * np.clip((lims[3] - Yc) / 1.5, 0, 1)
    cm = fy[:, None] * fx[None, :]
    I = I * (0.012 + 0.988 * cm)
    # quantum noise at 0.5 mm
    n_ph = a["dose"] * hf * hf
    L = -np.log(np.maximum(I, 1e-6))
    L += rng.standard_normal(L.shape, dtype=F32) / np.sqrt(n_ph * np.maximum(I, 1e-4)).astype(F32)
    if a["detector"] == "CR":
        L = ndimage.gaussian_filter(L, 0.6)
    inside = cm > 0.5
    med = float(np.median(L[inside]))
    if a["eq"] > 0:
        Lb = _blur(L, 22.0 / hf)
        L = L - F32(a["eq"]) * (Lb - F32(med))
    if a["usm"] > 0:
        Lu = _blur(L, a["usm_sigma"] / hf)
        L = L + F32(a["usm"]) * (L - Lu)
    vals = L[inside]
    body = vals[vals > 0.8]          # window on the patient, not on the open-field air
    if body.size < 1000:
        body = vals
    hi = float(np.percentile(vals, 99.7))
    lo = float(np.percentile(body, 0.5))
    lo = lo - a["toe"] * (hi - lo)
    v = np.clip((L - lo) / max((hi - lo) * a["headroom"], 1e-3), 0, 1.0) ** F32(a["gamma"])
    c = a["contrast"]
    v = (1 / (1 + np.exp(-c * (v - 0.5))) - 1 / (1 + math.exp(c * 0.5))) / \
        (1 / (1 + math.exp(-c * 0.5)) - 1 / (1 + math.exp(c * 0.5)))
    v = v.astype(F32)
    # to detector matrix
    pr = ((-rows * s / 2 + (np.arange(rows) + 0.5) * s) - Y0) / hf - 0.5
    pc = ((-cols * s / 2 + (np.arange(cols) + 0.5) * s) - X0) / hf - 0.5
    img = _upsample_linear(v, (rows, cols), pr, pc)
    noise = rng.standard_normal((rows, cols), dtype=F32)
    img += noise * (F32(a["fine_noise"]) * (F32(0.4) + img))
    del noise
    if a["grid_lines"]:
        if a["grid_rows"]:
            img += (a["grid_amp"] * np.sin(2 * np.pi * np.arange(rows) / a["grid_period"])).astype(F32)[:, None]
        else:
            img += (a["grid_amp"] * np.sin(2 * np.pi * np.arange(cols) / a["grid_period"])).astype(F32)[None, :]
    np.clip(img, 0, 1, out=img)
    maxv = (1 << a["bits"]) - 1
    out = (img * F32(maxv) + F32(0.5)).astype(np.uint16)
    del img
    out = _burn_and_store(out, a, geom, rows, cols, s, maxv)
    return out, geom


def _burn_and_store(out, a, geom, rows, cols, s, maxv):
    """The lead marker, mirrored storage, burned-in text and MONOCHROME1 inversion of the stored pixels."""
    sc = max(2, int(round(1.3 / s)))                      # ~9 mm glyphs
    if a["marker"] and not geom.lateral:
        # lead marker on the patient's left (image right in standard orientation)
        r0 = int(rows * 0.08)
        c0 = int(cols * 0.86)
        _burn_marker(out, "L", r0, c0, sc, maxv)
    elif a["marker"]:
        _burn_marker(out, "L", int(rows * 0.08), int(cols * 0.08), sc, maxv)
    if a["mirror"]:
        out = out[:, ::-1].copy()
    if a["text"]:
        txt = "PORTABLE AP" if a["view"] == "AP" else ("LAT" if geom.lateral else "PA ERECT")
        _burn_text(out, txt, int(rows * 0.03), int(cols * 0.04), sc, maxv)
        if a["view"] == "AP":
            _burn_text(out, "SEMI-ERECT", int(rows * 0.03) + 9 * sc, int(cols * 0.04), sc, maxv)
    if a["mono1"]:
        out = (maxv - out).astype(np.uint16)
    return out


# ----------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------
def _rle_segment(plane: np.ndarray) -> bytes:
    """PackBits (DICOM RLE) of one byte plane, rows encoded separately; vectorised.

    Runs of >= 6 equal bytes become replicate runs, everything else literal runs (<= 128)."""
    R, C = plane.shape
    b = np.ascontiguousarray(plane).reshape(-1)
    n = b.size
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(b[1:], b[:-1], out=change[1:])
    change[::C] = True
    starts = np.flatnonzero(change)
    lens = np.diff(np.append(starts, n))
    longm = lens >= 6
    ls, ll = starts[longm], lens[longm]
    bnd = np.unique(np.concatenate([np.arange(0, n, C), ls, ls + ll, [n]]))
    ist, ien = bnd[:-1], bnd[1:]
    is_rep = np.zeros(len(ist), bool)
    is_rep[np.searchsorted(ist, ls)] = True
    ilen = ien - ist
    k = (ilen + 127) // 128
    first = np.cumsum(k) - k
    tk_s = np.repeat(ist, k) + 128 * (np.arange(int(k.sum())) - np.repeat(first, k))
    tk_l = np.minimum(np.repeat(ien, k) - tk_s, 128)
    tk_rep = np.repeat(is_rep, k) & (tk_l >= 2)
    size = np.where(tk_rep, 2, 1 + tk_l)
    pos = np.cumsum(size) - size
    total = int(size.sum())
    out = np.zeros(total + (total & 1), np.uint8)
    rp = pos[tk_rep]
    out[rp] = (257 - tk_l[tk_rep]).astype(np.uint8)
    out[rp + 1] = b[tk_s[tk_rep]]
    lit = ~tk_rep
    lp, lsrc, lln = pos[lit], tk_s[lit], tk_l[lit]
    out[lp] = (lln - 1).astype(np.uint8)
    cnt = int(lln.sum())
    if cnt:
        within = np.arange(cnt) - np.repeat(np.cumsum(lln) - lln, lln)
        out[np.repeat(lp + 1, lln) + within] = b[np.repeat(lsrc, lln) + within]
    return out.tobytes()


def _rle_literal(plane: np.ndarray) -> bytes:
    """PackBits with literal runs only (for noise-like byte planes): fast and still valid."""
    R, C = plane.shape
    k = (C + 127) // 128
    lens = np.full(k, 128)
    lens[-1] = C - 128 * (k - 1)
    src = np.empty(C + k, np.int64)
    is_hdr = np.zeros(C + k, bool)
    pos = 0
    for j in range(k):
        is_hdr[pos] = True
        src[pos] = 0
        src[pos + 1:pos + 1 + lens[j]] = np.arange(128 * j, 128 * j + lens[j])
        pos += 1 + lens[j]
    out = plane[:, src]
    out[:, is_hdr] = (lens - 1).astype(np.uint8)[None, :]
    b = out.tobytes()
    return b + (b"\0" if len(b) & 1 else b"")


def rle_encode_u16(arr: np.ndarray) -> bytes:
    hi = (arr >> 8).astype(np.uint8)
    lo = (arr & 0xFF).astype(np.uint8)
    segs = [_rle_segment(hi), _rle_literal(lo)]
    header = np.zeros(16, "<u4")
    header[0] = 2
    header[1] = 64
    header[2] = 64 + len(segs[0])
    return header.tobytes() + segs[0] + segs[1]


def write_dicom(path, pixels, a, meta):
    cr = a["detector"] == "CR"
    ds = Dataset()
    sop_class = CR_SOP if cr else DX_SOP
    uid = lambda kind: generate_uid(entropy_srcs=[GENERATOR, meta["uid_key"], kind])
    sop_uid = uid("sop")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = RLELossless if a["rle"] else ExplicitVRLittleEndian
    fm.ImplementationClassUID = generate_uid(entropy_srcs=[GENERATOR, "impl"])
    fm.ImplementationVersionName = "THORAX3D_1"
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""] if cr else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = meta["date"]
    ds.SeriesDate = meta["date"]
    ds.ContentDate = meta["date"]
    ds.StudyTime = meta["time"]
    ds.SeriesTime = meta["time"]
    ds.ContentTime = meta["time"]
    ds.AccessionNumber = meta["accession"]
    ds.Modality = "CR" if cr else "DX"
    ds.Manufacturer = "THORAX3D SYNTHETIC"
    ds.InstitutionName = meta["site"]
    ds.ReferringPhysicianName = ""
    ds.StationName = "PORTABLE1" if a["view"] == "AP" else "CHESTROOM"
    ds.StudyDescription = "CHEST " + ("PORTABLE AP" if a["view"] == "AP" else
                                      ("LATERAL" if a["view"] == "LL" else "PA"))
    ds.SeriesDescription = ds.StudyDescription
    ds.ManufacturerModelName = "T3D-" + a["detector"]
    ds.PatientName = meta["name"]
    ds.PatientID = meta["pid"]
    ds.PatientBirthDate = meta["birth"]
    ds.PatientSex = meta["sex"]
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 110 if a["view"] != "AP" else 90
    ds.DistanceSourceToDetector = round(a["sid"], 1)
    ds.ExposureInuAs = int(a["dose"] / 50)
    ds.ViewPosition = a["view"]
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = meta["accession"][-6:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if a["view"] == "LL":
        po = ["P", "F"]
    else:
        po = ["R" if a["mirror"] else "L", "F"]
    ds.PatientOrientation = po
    ds.ImageLaterality = "U"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if a["mono1"] else "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    sp = f"{a['spacing']:.4f}".rstrip("0")
    ds.ImagerPixelSpacing = [sp, sp]
    ds.PixelSpacing = [sp, sp]
    ds.BitsAllocated = 16
    ds.BitsStored = a["bits"]
    ds.HighBit = a["bits"] - 1
    ds.PixelRepresentation = 0
    maxv = (1 << a["bits"]) - 1
    ds.WindowCenter = str(int(maxv // 2 + 1))
    ds.WindowWidth = str(int(maxv + 1))
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.BurnedInAnnotation = "YES" if (a["text"] or a["marker"]) else "NO"
    ds.LossyImageCompression = "00"
    _dx_attrs(ds, a, cr)
    if a["rle"]:
        ds.PixelData = encapsulate([rle_encode_u16(pixels)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def _dx_attrs(ds, a, cr):
    """The DX image module's attributes (presentation intent and LUT, detector, anatomic region and view codes); a CR has none of these."""
    if not cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if a["mono1"] else 1
        ds.PresentationLUTShape = "INVERSE" if a["mono1"] else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
        ds.AcquisitionContextSequence = Sequence([])
        ds.PositionerType = "NONE"
        ar = Dataset()
        ar.CodeValue = "43799004"
        ar.CodingSchemeDesignator = "SCT"
        ar.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = Sequence([ar])
        vc = Dataset()
        if a["view"] == "LL":
            vc.CodeValue, vc.CodeMeaning = "399067008", "lateral"
        elif a["view"] == "AP":
            vc.CodeValue, vc.CodeMeaning = "399348003", "antero-posterior"
        else:
            vc.CodeValue, vc.CodeMeaning = "399300004", "postero-anterior"
        vc.CodingSchemeDesignator = "SCT"
        vc.ViewModifierCodeSequence = Sequence([])
        ds.ViewCodeSequence = Sequence([vc])


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------
FTYPES = ("nodule", "mass", "consolidation", "effusion", "pneumothorax")
FT_W = (0.20, 0.12, 0.22, 0.22, 0.24)
CHANGES = ("new", "worsened", "improved", "resolved")
CH_W = (0.4, 0.2, 0.2, 0.2)


def _sizes(rng, person, ftype, change):
    lo, hi = lesion_size_range(ftype)
    if ftype == "effusion":   # keep clear of the 'large' threshold (1/3 of the lung height)
        thr = person.H / 3.0
        def draw(a, b):
            for _ in range(100):
                x = rng.uniform(a, b)
                if not (0.75 * thr < x < 1.3 * thr):
                    return x
            return a
    else:
        draw = rng.uniform
    if change == "new":
        return None, draw(lo, hi)
    if change == "resolved":
        return draw(lo, hi), None
    if change == "stable":
        v = draw(lo, hi)
        return v, v
    big = draw(lo * 1.6, hi)
    small = max(lo, big / rng.uniform(1.45, 2.1))
    if ftype == "effusion" and 0.75 * person.H / 3 < small < 1.3 * person.H / 3:
        small = 0.7 * person.H / 3
    return (small, big) if change == "worsened" else (big, small)


def _pick_findings(rng, person, n_changed, n_stable, force=None):
    """List of (lesion template, change, size_prior, size_current)."""
    out = []
    used = set()
    want = [("chg", force)] if force else []
    want += [("chg", None)] * (n_changed - len(want)) + [("stb", None)] * n_stable
    for kind, forced in want:
        for _ in range(50):
            if forced:
                ftype, change = forced
            else:
                ftype = FTYPES[rng.choice(len(FTYPES), p=FT_W)]
                change = "stable" if kind == "stb" else CHANGES[rng.choice(4, p=CH_W)]
            side = "left" if rng.random() < 0.5 else "right"
            tmpl = make_lesion(person, rng, ftype, side)
            key = (side, tmpl["zone"])
            if key in used:
                continue
            if ftype == "pneumothorax" and any(o[0]["type"] == "pneumothorax" for o in out):
                continue
            if ftype in ("pneumothorax", "effusion") and any(
                    o[0]["type"] in ("pneumothorax", "effusion") and o[0]["side"] == side for o in out):
                continue
            # a pneumothorax retracts the lung: keep other lesions out of that hemithorax
            if any(o[0]["side"] == side and "pneumothorax" in (o[0]["type"], ftype) for o in out):
                continue
            sp, sc = _sizes(rng, person, ftype, change)
            if ftype == "consolidation":
                ext = [_cons_extent(person, tmpl, v) if v is not None else None for v in (sp, sc)]
                if any(e is not None and not (33.0 <= e <= 112.0) for e in ext):
                    continue
                if None not in ext and change != "stable" and max(ext) < 1.3 * min(ext):
                    continue
            used.add(key)
            out.append((tmpl, change, sp, sc))
            break
    return out


def _state(person, insp, findings, which, devices=()):
    les = []
    for tmpl, change, sp, sc in findings:
        size = sp if which == "prior" else sc
        if size is None:
            continue
        l = dict(tmpl)
        l["size"] = float(size)
        if l["type"] == "effusion":   # fluid height in mm is fixed whatever the inspiration
            l["ztop"] = person.z_cp(l["s"]) - size / (1.0 + insp / person.H)
        les.append(l)
    return {"insp": insp, "lesions": les, "devices": list(devices)}


def _pair_plan(rng, case):
    """Decide persons, findings, devices and acquisitions for one pair."""
    person = Person(rng)
    prior_person = person
    findings, dev_p, dev_c, dev_labels = [], [], [], []
    notes = []
    view_p = view_c = "PA"
    theta_c = None
    mirror_p = mirror_c = False
    expect = "compare"
    if case in ("change", "mirrored", "rotated", "lateral", "ap_vs_pa", "other_person"):
        n_chg = 1 if rng.random() < 0.7 else 2
        n_stb = 1 if rng.random() < 0.35 else 0
        force = None
        if case == "ap_vs_pa" and rng.random() < 0.5:
            force = [("pneumothorax", "new"), ("pneumothorax", "worsened"),
                     ("effusion", "new")][rng.integers(0, 3)]
        findings = _pick_findings(rng, person, n_chg, n_stb, force)
        if force == ("effusion", "new"):   # make it large
            tmpl, ch, sp, sc = findings[0]
            findings[0] = (tmpl, ch, None, rng.uniform(1.2, 1.45) * person.H / 3)
    elif case == "stable":
        findings = _pick_findings(rng, person, 0, 1 if rng.random() < 0.6 else 2)
    elif case == "devices_only":
        findings = _pick_findings(rng, person, 0, 1) if rng.random() < 0.4 else []
    if case in ("change", "stable") and rng.random() < 0.15:
        d = make_device(person, rng, "ecg")
        dev_p = dev_c = [d]
        dev_labels.append((d, "stable", False))
    if case == "devices_only":
        dev_p, dev_c, op = _devices_only(rng, person, dev_labels)
        notes.append({"add": "devices added", "remove": "device removed", "move": "device moved"}[op])
    if case == "mirrored":
        mirror_c = True
        mirror_p = rng.random() < 0.3
        notes.append("current stored mirrored (R\\F)" + (", prior too" if mirror_p else ""))
    if case == "rotated":
        theta_c = float(rng.choice([-1, 1]) * rng.uniform(8, 12))
        notes.append(f"current rotated {theta_c:+.1f} deg in plane")
    if case == "lateral":
        view_p = view_c = "LL"
        expect = "not_compared"
        notes.append("both lateral views")
    if case == "ap_vs_pa":
        view_c = "AP"
        notes.append("current AP portable vs PA prior")
    if case == "other_person":
        expect = "not_compared"
        same_sex = rng.random() < 0.6
        prior_person = Person(rng, sex=person.sex if same_sex else None)
        notes.append("prior is a different body under the same PatientID")
        # the prior body's own findings are not modelled: the pair is not comparable
    a_p = make_acq(rng, prior_person, view=view_p, mirror=mirror_p)
    a_c = make_acq(rng, person, view=view_c, theta=theta_c, mirror=mirror_c)
    return dict(person=person, prior_person=prior_person, findings=findings, dev_p=dev_p,
                dev_c=dev_c, dev_labels=dev_labels, a_p=a_p, a_c=a_c, expect=expect, notes=notes)


def _devices_only(rng, person, dev_labels):
    """A devices_only pair's devices: some before, then devices added, one removed or one moved; labels into dev_labels."""
    kinds = list(rng.permutation(DEVICE_KINDS))
    n_before = int(rng.integers(0, 3))
    before = [make_device(person, rng, k) for k in kinds[:n_before]]
    after = list(before)
    op = rng.choice(["add", "remove", "move"] if before else ["add"])
    if op == "add":
        for kk in kinds[n_before:n_before + int(rng.integers(1, 3))]:
            d = make_device(person, rng, kk)
            after.append(d)
            dev_labels.append((d, "new", False))
        for d in before:
            dev_labels.append((d, "stable", False))
    elif op == "remove":
        gone = before[0]
        after = before[1:]
        dev_labels.append((gone, "resolved", False))
        for d in after:
            dev_labels.append((d, "stable", False))
    else:
        mv = dict(before[0])
        if "tip" in mv:
            mv["tip"] = mv["tip"] + rng.choice([-1, 1]) * rng.uniform(20, 35)
        else:
            mv["seed"] = int(rng.integers(0, 2**31 - 1))
        after = [mv] + before[1:]
        dev_labels.append((mv, "stable", True))
        for d in before[1:]:
            dev_labels.append((d, "stable", False))
    dev_p, dev_c = before, after
    return dev_p, dev_c, op


def _acq_note(a):
    bits = [a["view"], a["detector"], f"{a['spacing']:.3f} mm", f"{a['rows']}x{a['cols']}",
            "MONO1" if a["mono1"] else "MONO2", "RLE" if a["rle"] else "native",
            f"{a['bits']} bit", "grid lines" if a["grid_lines"] else ("grid" if a["grid"] else "no grid"),
            f"insp {a['insp']:+.0f} mm", f"roll {a['roll']:+.1f}", f"rot {a['theta']:+.1f}"]
    if a["mirror"]:
        bits.append("mirrored R\\F")
    if a["text"]:
        bits.append("burned-in text")
    return ", ".join(bits)


def _case_list(rng, n_pairs, cases):
    lst = []
    if cases:
        for k, v in cases.items():
            if k not in ("change", "stable", "normal") + SAFETY:
                raise ValueError(f"unknown case {k!r}")
            lst += [k] * int(v)
    rest = max(0, n_pairs - len(lst))
    names = [c for c, _ in DEFAULT_MIX]
    w = np.array([x for _, x in DEFAULT_MIX])
    counts = np.floor(w * rest).astype(int)
    for i in np.argsort(-(w * rest - counts))[: rest - counts.sum()]:
        counts[i] += 1
    for c, n in zip(names, counts):
        lst += [c] * int(n)
    order = rng.permutation(len(lst))
    return [lst[i] for i in order]


def make_pair(out_dir: Path, seed: int, idx: int, case: str) -> dict:
    rng = np.random.default_rng([seed, idx, 0x7D3])
    pair_id = f"g-{idx:04d}"
    plan = _pair_plan(rng, case)
    person, pperson = plan["person"], plan["prior_person"]
    a_p, a_c = plan["a_p"], plan["a_c"]
    st_p = _state(person, a_p["insp"], plan["findings"], "prior", plan["dev_p"])
    st_c = _state(person, a_c["insp"], plan["findings"], "current", plan["dev_c"])
    if pperson is not person:
        st_p = {"insp": a_p["insp"], "lesions": [], "devices": []}
    pix_p, g_p = render_image(pperson, st_p, a_p)
    pix_c, g_c = render_image(person, st_c, a_c)
    # labels
    labels = []
    les_p = iter(st_p["lesions"])
    les_c = iter(st_c["lesions"])
    for tmpl, change, sp, sc in plan["findings"]:
        lp = next(les_p) if (sp is not None and pperson is person) else None
        lc = next(les_c) if sc is not None else None
        if pperson is not person and lc is None:
            continue                      # other person: only the current's findings exist
        zp = measure_lesion(person, st_p, g_p, lp) if lp is not None else None
        zc = measure_lesion(person, st_c, g_c, lc) if lc is not None else None
        zone = (zc or zp)[0]
        ch = "new" if pperson is not person else change
        urgent = False
        if tmpl["type"] == "pneumothorax" and ch in ("new", "worsened"):
            urgent = True
        if tmpl["type"] == "effusion" and ch == "new" and zc is not None and zc[2]:
            urgent = True
        if pperson is not person:      # other person: no real interval change
            urgent = False
        e = {"finding": tmpl["type"], "side": tmpl["side"], "zone": zone, "change": ch,
             "size_mm_prior": round(zp[1], 1) if zp else None,
             "size_mm_current": round(zc[1], 1) if zc else None, "urgent": urgent}
        if tmpl["type"] == "effusion":
            e["large_current"] = bool(zc[2]) if zc else None
            e["large_prior"] = bool(zp[2]) if zp else None
        labels.append(e)
    for d, change, moved in plan["dev_labels"]:
        side, zone = device_side_zone(person, d)
        e = {"finding": "support_device", "side": side, "zone": zone, "change": change,
             "size_mm_prior": None, "size_mm_current": None, "urgent": False,
             "device": DEVICE_NAMES[d["kind"]]}
        if moved:
            e["moved"] = True
        labels.append(e)
    # DICOM headers
    base = _dt.date(2016, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3400)))
    gap = int(rng.integers(30, 701))
    d_c, d_p = base, base - _dt.timedelta(days=gap)
    age = int(rng.integers(25, 90))
    birth = _dt.date(d_c.year - age, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    pid = f"T3D{seed % 100000:05d}{idx:05d}"
    common = dict(pid=pid, name=f"THORAX3D^{pair_id.upper()}^S{seed}", birth=birth.strftime("%Y%m%d"),
                  sex=person.sex, site="SITE " + "ABCDEFG"[int(rng.integers(0, 7))])
    pdir = out_dir / pair_id
    pdir.mkdir(parents=True, exist_ok=True)
    for role, pix, a, d in (("prior", pix_p, a_p, d_p), ("current", pix_c, a_c, d_c)):
        meta = dict(common, date=d.strftime("%Y%m%d"),
                    time=f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}00",
                    accession=f"A{seed % 1000:03d}{idx:05d}{0 if role == 'prior' else 1}",
                    uid_key=f"{seed}/{pair_id}/{role}")
        write_dicom(pdir / f"{role}.dcm", pix, a, meta)
    notes = plan["notes"] + [f"prior: {_acq_note(a_p)}", f"current: {_acq_note(a_c)}",
                             f"interval {gap} days"]
    return {"pair_id": pair_id, "generator": GENERATOR, "seed": seed, "case": case,
            "prior": f"{pair_id}/prior.dcm", "current": f"{pair_id}/current.dcm",
            "expect": plan["expect"], "findings": labels, "notes": "; ".join(notes)}


def generate(out_dir: Path, *, seed: int, n_pairs: int, cases: dict[str, int] | None = None) -> Path:
    """Write n_pairs (or sum(cases) if larger; the rest filled with the default mix) pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0xC0FFEE])
    lst = _case_list(rng, n_pairs, cases)
    with open(out_dir / "labels.jsonl", "w") as fh:
        for i, case in enumerate(lst):
            rec = make_pair(out_dir, seed, i, case)
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
    return out_dir


# ----------------------------------------------------------------------------------------
# series mode (issue 29): several studies of one patient over 1-4 years
# ----------------------------------------------------------------------------------------
# Written from /work/briefs/series.md by the series helper, who read none of comparison/,
# workers/, benchmarks/, modeldev/evaluate.py nor atlas2d's series code.  It reuses this
# module's own Person, lesions, acquisition (make_acq), rendering and measure_lesion.
SERIES_STUDIES = (3, 5)           # studies per patient (inclusive)
SERIES_SPAN_DAYS = (365, 1460)    # first to last study: 1-4 years
STABLE_SPAN_DAYS = 760            # a stable-nodule series covers > 2 years (25 months)
MIN_INTERVAL_DAYS = 30            # follow-up films closer than a month are rare outside the ward
PTX_FOLLOWUP_DAYS = (1, 12)       # a pneumothorax is re-imaged within days, not months
STEP_RATIO = (1.3, 1.7)           # true-size change per interval of a growing/shrinking lesion:
#                                   1.3 stays a clear direction after a +-8 % magnification change
STABLE_LABEL_RATIO = 1.15         # a stable lesion's labels may differ by magnification alone
STEP_LABEL_RATIO = 1.15           # a changing lesion's labels must still differ by this much
VDT_DAYS = (60.0, 400.0)          # volume doubling time of a growing (solid, malignant) nodule
NODULE_TRUE_MM = (7.0, 26.0)      # true diameters: image sizes stay within 8-30 mm
AP_STUDY_P = 0.15                 # share of follow-up studies taken AP portable
SERIES_QUOTA = (("stable_nodule", 0.30), ("recurrent", 0.15))     # at least these shares
SERIES_REST = (("growing_nodule", 0.11), ("resolving_consolidation", 0.09),
               ("growing_effusion", 0.09), ("pneumothorax", 0.09), ("none", 0.07),
               ("shrinking_mass", 0.05), ("appearing_nodule", 0.05))
SERIES_SECOND_P = 0.5             # share of series (with a lesion) that get a second lesion
SERIES_SECOND = (("nodule", "stable"), ("nodule", "appearing"), ("consolidation", "resolving"),
                 ("nodule", "growing"), ("mass", "shrinking"))
SERIES_ATTEMPTS = 12


class _SeriesRetry(Exception):
    """A drawn series missed a rule (zone changed, size out of range, direction unclear)."""


def _series_scenarios(seed: int, n: int) -> list[str]:
    """Primary scenario per series: the quota shares first (rounded up), the rest by largest remainder."""
    lst: list[str] = []
    for name, frac in SERIES_QUOTA:
        lst += [name] * math.ceil(frac * n)
    lst = lst[:n]
    rest = n - len(lst)
    w = np.array([x for _, x in SERIES_REST])
    w = w / w.sum() * rest
    counts = np.floor(w).astype(int)
    order = sorted(range(len(w)), key=lambda i: (-(w[i] - counts[i]), i))
    for i in order[: rest - int(counts.sum())]:
        counts[i] += 1
    for (name, _), c in zip(SERIES_REST, counts):
        lst += [name] * int(c)
    rng = np.random.default_rng([seed, 0x5E41E5])
    return [lst[i] for i in rng.permutation(len(lst))]


def _series_days(rng, m: int, min_span: float = SERIES_SPAN_DAYS[0]) -> np.ndarray:
    """Study days from the first (0), m studies, irregular (gamma) intervals over 1-4 years."""
    for _ in range(500):
        span = rng.uniform(max(min_span, SERIES_SPAN_DAYS[0]), SERIES_SPAN_DAYS[1])
        w = rng.gamma(2.0, 1.0, m - 1)
        iv = np.round(w / w.sum() * span)
        if iv.min() >= MIN_INTERVAL_DAYS:
            return np.concatenate([[0], np.cumsum(iv)]).astype(int)
    raise _SeriesRetry("no dates")


def _monotone(rng, n: int, lo: float, hi: float) -> list[float] | None:
    """n increasing true sizes in [lo, hi], each step a factor in STEP_RATIO (None if impossible)."""
    r = rng.uniform(*STEP_RATIO, n - 1)
    tot = float(np.prod(r))
    if tot > hi / lo:
        return None
    s0 = rng.uniform(lo, hi / tot)
    return [float(x) for x in s0 * np.concatenate([[1.0], np.cumprod(r)])]


def _series_range(ftype: str) -> tuple[float, float]:
    return NODULE_TRUE_MM if ftype == "nodule" else lesion_size_range(ftype)


def _vdt_sizes(rng, days) -> tuple[list[float], float] | None:
    """A growing nodule: d(t) = d0 * 2**(t / (3 VDT)) (volume doubles every VDT days)."""
    d0 = rng.uniform(NODULE_TRUE_MM[0], 11.0)
    t = np.asarray(days, float) - days[0]
    lo = max(VDT_DAYS[0], t[-1] / (3 * math.log2(NODULE_TRUE_MM[1] / d0)))
    hi = min(VDT_DAYS[1], np.diff(t).min() / (3 * math.log2(STEP_RATIO[0])))
    if lo > hi:
        return None
    vdt = rng.uniform(lo, hi)
    return [float(x) for x in d0 * 2 ** (t / (3 * vdt))], float(vdt)


def _series_sizes(rng, ftype: str, kind: str, days) -> tuple[list, float | None] | None:
    """True sizes per study (None = absent) for one lesion of this kind, or None if it cannot fit."""
    m = len(days)
    lo, hi = _series_range(ftype)
    if kind == "stable":
        return [float(rng.uniform(lo, hi))] * m, None
    if kind == "growing" and ftype == "nodule":
        r = _vdt_sizes(rng, days)
        return (r[0], r[1]) if r else None
    if kind in ("growing", "shrinking"):
        s = _monotone(rng, m, lo, hi)
        if s is None:
            return None
        return (s if kind == "growing" else s[::-1]), None
    if kind == "resolving":
        j = int(rng.integers(1, m))                   # present in the first j studies
        s = _monotone(rng, j, lo, hi)
        return (s[::-1] + [None] * (m - j), None) if s else None
    if kind == "appearing":
        j = int(rng.integers(1, m))                   # absent in the first j studies
        if ftype in ("effusion", "pneumothorax") or rng.random() < 0.5:
            s = _monotone(rng, m - j, lo, hi)
        else:
            s = [float(rng.uniform(lo, hi))] * (m - j)
        return ([None] * j + s, None) if s else None
    if kind == "recurrent":                           # present, absent, present again
        a = int(rng.integers(1, m - 1))
        b = int(rng.integers(1, m - a))
        s1 = float(rng.uniform(lo, hi))
        s2 = float(np.clip(s1 * rng.uniform(0.85, 1.25), lo, hi)) if ftype == "nodule" else float(rng.uniform(lo, hi))
        return [s1] * a + [None] * b + [s2] * (m - a - b), None
    raise ValueError(kind)


_PRIMARY = {"stable_nodule": ("nodule", "stable"), "growing_nodule": ("nodule", "growing"),
            "resolving_consolidation": ("consolidation", "resolving"),
            "growing_effusion": ("effusion", "growing"), "shrinking_mass": ("mass", "shrinking"),
            "appearing_nodule": ("nodule", "appearing")}
_RECURRENT_TYPES = (("nodule", 0.35), ("consolidation", 0.35), ("effusion", 0.15), ("pneumothorax", 0.15))


def _series_primary(rng, scenario: str):
    """Days of the studies and the primary lesion (ftype, kind, true sizes, VDT) of a scenario."""
    if scenario == "none":
        m = int(rng.integers(SERIES_STUDIES[0], SERIES_STUDIES[1] + 1))
        return _series_days(rng, m), None
    if scenario == "pneumothorax":     # absent for years, then grows across consecutive films
        m = int(rng.integers(SERIES_STUDIES[0], SERIES_STUDIES[1] + 1))
        n_ptx = int(rng.integers(2, min(3, m - 1) + 1))
        days = _series_days(rng, m - n_ptx + 1)
        short = np.cumsum(rng.integers(PTX_FOLLOWUP_DAYS[0], PTX_FOLLOWUP_DAYS[1] + 1, n_ptx - 1))
        days = np.concatenate([days, days[-1] + short])
        s = _monotone(rng, n_ptx, *_series_range("pneumothorax"))
        if s is None:
            raise _SeriesRetry("pneumothorax sizes")
        return days, ("pneumothorax", "appearing", [None] * (m - n_ptx) + s, None)
    if scenario == "recurrent":
        names = [t for t, _ in _RECURRENT_TYPES]
        ftype, kind = names[rng.choice(len(names), p=[w for _, w in _RECURRENT_TYPES])], "recurrent"
    else:
        ftype, kind = _PRIMARY[scenario]
    for _ in range(60):
        m = 3 if scenario == "shrinking_mass" else int(rng.integers(SERIES_STUDIES[0], SERIES_STUDIES[1] + 1))
        days = _series_days(rng, m, STABLE_SPAN_DAYS if scenario == "stable_nodule" else 0)
        r = _series_sizes(rng, ftype, kind, days)
        if r is not None:
            return days, (ftype, kind, r[0], r[1])
    raise _SeriesRetry("primary sizes")


def _series_side_ok(ftype: str, side: str, placed: list[dict]) -> bool:
    """A pleural collection (effusion, pneumothorax) owns its hemithorax: nothing else on that side."""
    same = [p for p in placed if p["tmpl"]["side"] == side]
    if not same:
        return True
    if ftype in ("effusion", "pneumothorax"):
        return False
    return not any(p["tmpl"]["type"] in ("effusion", "pneumothorax") for p in same)


def _series_place(rng, person, ftype: str, sizes: list, placed: list[dict]) -> dict | None:
    """A lesion template on a free side/zone; consolidations pre-checked on a plain PA so their
    projected extent stays 33-112 mm and each change of size is a factor >= 1.3 in extent."""
    for _ in range(20):
        side = "left" if rng.random() < 0.5 else "right"
        if not _series_side_ok(ftype, side, placed):
            continue
        tmpl = make_lesion(person, rng, ftype, side)
        if any(p["tmpl"]["side"] == side and p["tmpl"]["zone"] == tmpl["zone"] for p in placed):
            continue
        if ftype == "consolidation":
            present = [v for v in sizes if v is not None]
            ext = {v: _cons_extent(person, tmpl, v) for v in set(present)}
            if any(not (33.0 <= e <= 112.0) for e in ext.values()):
                continue
            steps = [(ext[a], ext[b]) for a, b in zip(sizes, sizes[1:])
                     if a is not None and b is not None and a != b]
            if any(max(x, y) < 1.3 * min(x, y) for x, y in steps):
                continue
        return tmpl
    return None


def _series_lesions(rng, person, primary) -> list[dict]:
    """The primary lesion of the scenario and, for some series, a second one."""
    placed: list[dict] = []
    days_, prim = primary
    if prim is not None:
        ftype, kind, sizes, vdt = prim
        tmpl = _series_place(rng, person, ftype, sizes, placed)
        if tmpl is None:
            raise _SeriesRetry("no place")
        placed.append(dict(tmpl=tmpl, kind=kind, sizes=sizes, vdt=vdt))
        if rng.random() < SERIES_SECOND_P:
            ftype, kind = SERIES_SECOND[int(rng.integers(0, len(SERIES_SECOND)))]
            r = _series_sizes(rng, ftype, kind, days_)
            if r is not None:
                tmpl = _series_place(rng, person, ftype, r[0], placed)
                if tmpl is not None:
                    placed.append(dict(tmpl=tmpl, kind=kind, sizes=r[0], vdt=r[1]))
    return placed


def _series_state(person, insp: float, lesions: list[dict], k: int, drop: int | None = None) -> dict:
    """The render state of study k: each present lesion at its true size (drop: leave one out)."""
    les = []
    for j, L in enumerate(lesions):
        size = L["sizes"][k]
        if size is None or j == drop:
            continue
        l = dict(L["tmpl"], size=float(size), _j=j)
        if l["type"] == "effusion":   # fluid height in mm is fixed whatever the inspiration
            l["ztop"] = person.z_cp(l["s"]) - size / (1.0 + insp / person.H)
        les.append(l)
    return {"insp": insp, "lesions": les, "devices": []}


SERIES_LABEL_RANGE = {"nodule": (6.0, 30.0), "mass": (31.0, 80.0), "consolidation": (30.0, 120.0),
                      "effusion": (14.0, 150.0), "pneumothorax": (4.8, 40.0)}   # the brief's ranges, in labels
SERIES_CONS_REL = 0.15          # consolidation extent: where its projected path is >= 15 % of its maximum


def _lobe_extent(l: dict) -> float:
    """Longest in-plane extent (true mm) of a lobulated nodule/mass as _render_nodule draws it
    (union of the main sphere and its lobes; spicules are thin and not part of the size)."""
    R = 0.5 * l["size"]
    if l["lobes"] == 1:
        return 2 * R
    rng = np.random.default_rng(l["seed"])
    cen, rad = [np.zeros(2)], [R * 0.82]
    for _ in range(l["lobes"]):
        d = _unit(rng.normal(0, 1, 3))
        d[1] *= 0.5
        cen.append(np.array([d[0], d[2]]) * R * 0.42)
        rad.append(R * rng.uniform(0.5, 0.62))
    cen, rad = np.array(cen), np.array(rad)
    best = 0.0
    for ang in np.linspace(0, np.pi, 90, endpoint=False):
        pr = cen @ np.array([math.cos(ang), math.sin(ang)])
        best = max(best, float((pr + rad).max() - (pr - rad).min()))
    return best


def _series_label(person, state: dict, geom, l: dict) -> tuple[str, float]:
    """(zone, size in detector mm) of a series lesion as drawn: nodule/mass longest diameter
    (lobes included), consolidation extent at SERIES_CONS_REL of its path, effusion height at the
    lateral wall, pneumothorax lateral rim depth (measure_lesion: the lung's retraction x magnification)."""
    zone, size, _ = measure_lesion(person, state, geom, l)
    t = l["type"]
    if t in ("nodule", "mass"):
        size *= _lobe_extent(l) / l["size"]
    elif t == "consolidation":
        P = l["_proj"]
        size = _proj_extent(P, l["_proj_grid"], geom, thr=SERIES_CONS_REL * float(P.max()))[1]
    return zone, float(size)


def _series_check_labels(L: dict, labels: list, zones: list) -> None:
    """Raise _SeriesRetry unless the measured labels keep the planned zone, range and directions."""
    present = [z for z in zones if z is not None]
    if len(set(present)) > 1:
        raise _SeriesRetry("zone changed")
    ft = L["tmpl"]["type"]
    lo, hi = SERIES_LABEL_RANGE[ft]
    if any(v is not None and not lo <= v <= hi for v in labels):
        raise _SeriesRetry("size out of range")
    t = L["sizes"]
    run: list[float] = []
    for k in range(len(t)):
        if t[k] is None:
            run = []
            continue
        if k > 0 and t[k - 1] is not None and t[k] != t[k - 1]:
            ratio = labels[k] / labels[k - 1]
            if (t[k] > t[k - 1] and ratio < STEP_LABEL_RATIO) or (t[k] < t[k - 1] and ratio > 1 / STEP_LABEL_RATIO):
                raise _SeriesRetry("direction unclear")
            run = []
        run.append(labels[k])
        if max(run) > STABLE_LABEL_RATIO * min(run):
            raise _SeriesRetry("stable not stable")


def _series_acqs(rng, person, days) -> list[dict]:
    """One acquisition per study (detector, processing, inspiration, roll, scale; some AP portable)."""
    acqs = []
    for k in range(len(days)):
        quick = k > 0 and days[k] - days[k - 1] <= PTX_FOLLOWUP_DAYS[1]
        p_ap = 0.5 if quick else AP_STUDY_P
        view = "AP" if (k > 0 and rng.random() < p_ap) else "PA"
        acqs.append(make_acq(rng, person, view=view))
    return acqs


def _series_try(seed: int, idx: int, scenario: str, attempt: int) -> dict:
    """Plan, render and label one series (raises _SeriesRetry when a rule is missed)."""
    rng = np.random.default_rng([seed, idx, attempt, 0x5E41E5])
    person = Person(rng)
    primary = _series_primary(rng, scenario)
    lesions = _series_lesions(rng, person, primary)
    days = primary[0]
    acqs = _series_acqs(rng, person, days)
    pix, labels = [], [[None] * len(days) for _ in lesions]
    zones = [[None] * len(days) for _ in lesions]
    for k, a in enumerate(acqs):
        st = _series_state(person, a["insp"], lesions, k)
        img, g = render_image(person, st, a)
        pix.append(img)
        for l in st["lesions"]:
            zone, size = _series_label(person, st, g, l)
            labels[l["_j"]][k] = round(size, 1)
            zones[l["_j"]][k] = zone
    for L, lab, zs in zip(lesions, labels, zones):
        _series_check_labels(L, lab, zs)
    return dict(rng=rng, person=person, days=days, lesions=lesions, acqs=acqs, pix=pix,
                labels=labels, zones=zones)


def _series_draw(seed: int, idx: int, scenario: str) -> dict:
    """The first attempt of this series that keeps every rule (deterministic per seed and index)."""
    for attempt in range(SERIES_ATTEMPTS):
        try:
            return _series_try(seed, idx, scenario, attempt) | {"attempt": attempt}
        except _SeriesRetry:
            continue
    raise RuntimeError(f"series {idx}: no valid draw in {SERIES_ATTEMPTS} attempts")


def _feret_mm(mask: np.ndarray, spacing: float) -> float:
    """Longest extent of a pixel set (max over 36 directions), in mm."""
    rr, cc = np.nonzero(mask)
    best = 0.0
    for ang in np.linspace(0, np.pi, 36, endpoint=False):
        pr = rr * math.sin(ang) + cc * math.cos(ang)
        best = max(best, float(pr.max() - pr.min()) + 1.0)
    return best * spacing


def measure_drawn(diff: np.ndarray, spacing: float, finding: str, side: str) -> float:
    """Size (mm, detector) of a lesion segmented from the difference to a lesion-free render of
    the same study (standard display, MONOCHROME2 sense): the part above a fraction of the peak,
    largest component; nodule/mass/consolidation = longest extent, effusion = height at the
    lateral chest wall, pneumothorax = lateral rim depth (_rim_mm)."""
    d = ndimage.gaussian_filter(diff.astype(np.float32), 1.5)
    if finding == "pneumothorax":
        return _rim_mm(-d, spacing)
    frac = {"nodule": 0.2, "mass": 0.2, "consolidation": SERIES_CONS_REL, "effusion": 0.1,
            "pneumothorax": 0.3}[finding]
    lab, n = ndimage.label(d > frac * float(d.max()))
    if n == 0:
        return 0.0
    mask = lab == (1 + int(np.argmax(ndimage.sum_labels(np.ones_like(d), lab, range(1, n + 1)))))
    if finding in ("nodule", "mass", "consolidation"):
        return _feret_mm(mask, spacing)
    rr, cc = np.nonzero(mask)
    lateral = cc.min() if side == "right" else cc.max()     # standard display: right on the image's left
    if finding == "effusion":
        near = np.abs(cc - lateral) <= 0.1 * (cc.max() - cc.min() + 1)
        return float(rr[near].max() - rr[near].min() + 1) * spacing
    return _rim_mm(d, spacing)


def _rim_mm(d: np.ndarray, spacing: float) -> float:
    """Lateral rim depth of a pneumothorax on the darkening map d: a 3 mm grey opening removes the
    vessels the retracted lung took with it; twice the largest inscribed radius of the rim in the
    band 20-50 % down its height (below the apical cap, where the rim runs along the lateral wall)."""
    f = 4
    h, w = d.shape
    d = d[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean((1, 3))
    sp = spacing * f
    d = ndimage.grey_opening(d, size=(max(3, round(3.0 / sp)),) * 2)
    lab, n = ndimage.label(d > 0.3 * float(d.max()))
    if n == 0:
        return 0.0
    mask = lab == (1 + int(np.argmax(ndimage.sum_labels(np.ones_like(d), lab, range(1, n + 1)))))
    rr = np.nonzero(mask)[0]
    top, bot = int(rr.min()), int(rr.max())
    e = ndimage.distance_transform_edt(mask)[int(top + 0.2 * (bot - top)): int(top + 0.5 * (bot - top)) + 1]
    return float(2 * e.max() * sp)


def series_size_check(seed: int, n_series: int) -> list[dict]:
    """Re-render every study with each lesion left out and measure the lesion on the difference;
    one row per (series, study, lesion): label, measured, finding."""
    rows = []
    for i, scenario in enumerate(_series_scenarios(seed, n_series)):
        s = _series_draw(seed, i, scenario)
        person = s["person"]
        for k, a in enumerate(s["acqs"]):
            for j, L in enumerate(s["lesions"]):
                if L["sizes"][k] is None:
                    continue
                st0 = _series_state(person, a["insp"], s["lesions"], k, drop=j)
                img0, _ = render_image(person, st0, a)
                diff = s["pix"][k].astype(np.float32) - img0.astype(np.float32)
                if a["mono1"]:
                    diff = -diff
                got = measure_drawn(diff, a["spacing"], L["tmpl"]["type"], L["tmpl"]["side"])
                rows.append({"series": i, "study": k, "finding": L["tmpl"]["type"],
                             "label": s["labels"][j][k], "measured": round(got, 1)})
    return rows

def size_check_summary(rows: list[dict]) -> dict:
    """Per finding: count, median |measured/label - 1|, share within 10 % and within 20 % or 3 mm."""
    out = {}
    for ft in sorted({r["finding"] for r in rows}) + ["all"]:
        sel = [r for r in rows if ft in ("all", r["finding"])]
        err = np.array([r["measured"] / r["label"] - 1 for r in sel])
        ok = [abs(r["measured"] - r["label"]) <= max(0.2 * r["label"], 3.0) for r in sel]
        out[ft] = {"n": len(sel), "median_abs_rel_err": round(float(np.median(np.abs(err))), 3),
                   "median_rel_err": round(float(np.median(err)), 3),
                   "within_10pct": round(float(np.mean(np.abs(err) <= 0.10)), 3),
                   "within_20pct_or_3mm": round(float(np.mean(ok)), 3)}
    return out


def make_series(out_dir: Path, seed: int, idx: int, scenario: str) -> dict:
    """Write one patient's studies DIR/<series_id>/<k>.dcm (oldest first); return its series.jsonl record."""
    s = _series_draw(seed, idx, scenario)
    rng, person = s["rng"], s["person"]
    series_id = f"t3s-{idx:04d}"
    first = _dt.date(2014, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3200)))
    age = int(rng.integers(35, 86))
    birth = _dt.date(first.year - age, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    common = dict(pid=f"T3S{seed % 100000:05d}{idx:05d}", name=f"THORAX3D^SERIES{idx:04d}^S{seed}",
                  birth=birth.strftime("%Y%m%d"), sex=person.sex,
                  site="SITE " + "ABCDEFG"[int(rng.integers(0, 7))])
    sdir = out_dir / series_id
    sdir.mkdir(parents=True, exist_ok=True)
    studies = []
    for k, (a, img) in enumerate(zip(s["acqs"], s["pix"])):
        d = first + _dt.timedelta(days=int(s["days"][k]))
        meta = dict(common, date=d.strftime("%Y%m%d"),
                    time=f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}00",
                    accession=f"S{seed % 1000:03d}{idx:05d}{k}", uid_key=f"{seed}/{series_id}/{k}")
        path = sdir / f"{k}.dcm"
        write_dicom(path, img, a, meta)
        uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
        studies.append({"index": k, "study_uid": str(uid), "date": d.isoformat(), "view": a["view"]})
    lesions = []
    for j, (L, lab, zs) in enumerate(zip(s["lesions"], s["labels"], s["zones"])):
        rec = {"lesion_id": f"{series_id}-L{j}", "finding": L["tmpl"]["type"], "side": L["tmpl"]["side"],
               "zone": next(z for z in zs if z is not None), "sizes_mm": lab, "kind": L["kind"]}
        if L["vdt"] is not None:
            rec["vdt_days"] = round(L["vdt"], 1)
        lesions.append(rec)
    return {"series_id": series_id, "generator": GENERATOR, "seed": seed, "scenario": scenario,
            "studies": studies, "lesions": lesions}


def generate_series(out_dir: Path, *, seed: int, n_series: int) -> Path:
    """Write n_series patients' histories and DIR/series.jsonl (deterministic per seed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "series.jsonl", "w") as fh:
        for i, scenario in enumerate(_series_scenarios(seed, n_series)):
            fh.write(json.dumps(make_series(out_dir, seed, i, scenario)) + "\n")
            fh.flush()
    return out_dir


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
    ap = argparse.ArgumentParser(prog="python -m modeldev.generators.thorax3d",
                                 description="projected 3-D thorax chest-radiograph pair generator")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", type=str, default=None,
                    help="e.g. mirrored=5,lateral=5 (rest of --n filled 60/20/20 change/stable/normal)")
    ap.add_argument("--series", action="store_true",
                    help="write --n patients' histories (3-5 studies each) and series.jsonl instead of pairs")
    ap.add_argument("--check", action="store_true",
                    help="with --series: measure each lesion on the difference to a lesion-free render "
                         "and write DIR/size_check.json (label vs measured) instead of the studies")
    args = ap.parse_args(argv)
    if args.series and args.check:
        rows = series_size_check(args.seed, args.n)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "size_check.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(size_check_summary(rows), indent=1))
        return
    if args.series:
        print(generate_series(args.out, seed=args.seed, n_series=args.n))
        return
    p = generate(args.out, seed=args.seed, n_pairs=args.n, cases=_parse_cases(args.cases))
    print(p)


if __name__ == "__main__":
    main()
