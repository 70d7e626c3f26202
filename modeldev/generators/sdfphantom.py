"""sdfphantom: longitudinal chest-radiograph pairs from a 3-D signed-distance phantom.

Independence statement: written from BRIEF.md by helper H2 (session 3 of 2026-12-07), who
read none of comparison/, benchmarks/, workers/, tests/ or the other generators (atlas2d,
thorax3d, slabs, ssmfield, cxrpairs_export were neither opened nor imported). Only numpy,
scipy and pydicom are used; the interval-change engine was never run while writing it.

Faithful summary of BRIEF.md (the specification this module follows)
--------------------------------------------------------------------
* Output: ``generate(out_dir, *, seed, n_pairs, cases=None) -> Path`` and a CLI
  ``python -m modeldev.generators.sdfphantom --seed S --n N --out DIR [--cases mirrored=5,...]``.
  Default mix when ``cases`` is None: 60 % change, 20 % stable, 20 % normal; deterministic per
  seed. Writes ``DIR/<pair_id>/prior.dcm``, ``DIR/<pair_id>/current.dcm`` and ``DIR/labels.jsonl``
  (pair_id, generator, seed, case, prior, current, expect = compare | not_compared, findings
  [finding, side, zone, change, size_mm_prior, size_mm_current, urgent], notes).
* Frontal display: brightness rises with attenuation; patient's right on the image's left;
  PatientOrientation ``L\\F`` (``R\\F`` when mirrored); ViewPosition PA/AP/LL.  AP portable:
  heart magnified 10-20 %, scapulae over the lungs, clavicles higher, lower volumes, more noise,
  burned-in "PORTABLE"/"AP"; compared with a PA prior, never refused.  Lateral views are never
  compared as frontals.
* Findings: nodule (<= 30 mm), mass (> 30 mm), consolidation (30-120 mm, fluffy, fissure edge,
  air bronchograms), effusion (dependent, meniscus rising laterally; size = fluid height; large =
  at least 1/3 of that lung's height), pneumothorax (visceral line, no markings beyond; size = rim
  depth), support devices (never disease).  Zone = third of the lung's craniocaudal height from
  apex to the lowest point of its costophrenic angle containing the lesion's centre.
  Urgent = new or worsened pneumothorax, or new large effusion; nothing else.
* Acquisition varies like real sites: CR vs DR, pixel spacing 0.10-0.20 mm, matrix 1700-3000,
  LUT/gamma, unsharp masking, equalisation, exposure/noise, grid lines, inspiration +-12 mm,
  roll <= 4 deg, in-plane rotation, magnification +-5 %, shift, collimation, burned-in text and
  markers, MONOCHROME1/2, native or RLE Lossless (through pydicom's ``compress``).  The two
  images of a pair are the same body except in ``other_person``.
* Cases: change, stable (size within +-10 %), normal, and safety cases mirrored, lateral,
  other_person, devices_only, ap_vs_pa, rotated (8-12 deg in plane).
* DICOM: Part-10, DX For Presentation or CR storage, 16-bit unsigned, BitsStored 12-15, patient
  and study tags, one study per image, prior 30-700 days before current, ImagerPixelSpacing and
  PixelSpacing, Window tags.  Each pair a fresh PatientID.  ~3 s per pair on one core.

How the images are made (differs on purpose from a 2-D atlas)
------------------------------------------------------------
Anatomy is a 3-D procedural phantom: body, pleural cavities, mediastinum, heart, diaphragm domes
are signed distance functions combined with smooth min/max; a cone beam is ray-marched through
them on a coarse detector grid (path lengths per material).  Fine structures are 3-D primitives
projected analytically at a finer grid: ribs are swept tubes along parametric arcs with a
cortical shell and marrow, vessel trees are grown by constrained branching with Murray's law
radii, vertebral bodies are flat-capped cylinders, pedicles/humeral heads/breasts/nodules are
ellipsoids (exact ray chords), devices are thin
dense tubes and discs.  A polyenergetic sum over four energy bins (water, bone, metal
attenuation per bin), heel effect, a broad scatter kernel, detector blur, multi-scale contrast
equalisation and a site LUT follow; the processed image is upsampled to the stored matrix where
detector noise, grid stripes, collimation and burned-in text are added.

Cost: about 1.6 s of CPU per pair (seed 5, 40 pairs with every safety case: 64.0 s user+sys on
this machine's shared cores).  The render is 0.85 mm; detector noise is added at the stored matrix
from a cached standard-normal field (fixed seed) cut at a random window and flip per image, so
noise is full size without drawing 9 M normals per image.

Label conventions chosen here: ``lateral`` pairs list their true findings and changes (urgent by the
rule) although ``expect`` is ``not_compared``; ``other_person`` pairs have no findings.
PixelSpacing is ImagerPixelSpacing divided by the magnification at
the mid-chest plane (EstimatedRadiographicMagnificationFactor says it), so label sizes are
patient millimetres.  Sizes are measured on the phantom after it is built (effusion height from
the lowest point of the costophrenic angle to the top of the fluid's frontal projection,
pneumothorax rim from the frontal projections of cavity and lung).  Devices are listed as
``support_device`` with the side/zone of their tip (``bilateral`` for a midline tip), size null.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from scipy import ndimage as ndi

GENERATOR = "sdfphantom"
F32 = np.float32

# ----------------------------------------------------------------------------------------------
# Tunables (all in one place; each line says why)
# ----------------------------------------------------------------------------------------------
RENDER_MM = 0.6           # detector-plane pixel of the analytic render: resolves 1 mm vessels and rib cortex, ~0.8 s CPU/image
ORGAN_MM = 3.2            # detector pixel of the SDF ray march: organ borders are smooth, linear upsampling keeps them sharp
DEPTH_STEP_MM = 10.0      # spacing of SDF samples along each ray; soft occupancy below keeps path lengths continuous
SOFT_MM = 10.0            # width of the SDF -> occupancy ramp (anti-aliasing of the ray march)
CONS_SOFT_MM = 9.0        # wider ramp for consolidation: "ill-defined fluffy margins"
MIN_SPLAT_PX = 0.75       # thinner tubes are widened to this radius with mass conserved (no aliasing of 0.5 mm vessels)
ENERGIES_KEV = np.array([40.0, 55.0, 70.0, 90.0])           # four bins: enough for beam hardening / kVp contrast
MU_WATER = np.array([0.0268, 0.0215, 0.0193, 0.0176])       # 1/mm, NIST water at the bin energies
MU_BONE = np.array([0.1278, 0.0690, 0.0500, 0.0386])        # 1/mm, ICRU cortical bone (1.92 g/cc)
MU_METAL = np.array([2.856, 1.220, 0.680, 0.360])           # 1/mm, iron: devices, wires, lead marker (scaled thickness)
ETA_DR = np.array([0.95, 0.80, 0.60, 0.45])                 # CsI absorption efficiency per bin
ETA_CR = np.array([0.85, 0.60, 0.45, 0.30])                 # BaFBr storage phosphor: lower, so CR is noisier
AL_FILTER_T = np.array([0.68, 0.82, 0.86, 0.85])            # transmission of 2.5 mm Al inherent filtration
TEXTURE_AMP = 0.06        # +-6 % lung density texture: grain in the lung fields (not nodular); absent in a pleural gap
TEXTURE_MM = 1.3          # texture grid step in body mm (260 steps cover 338 mm of lungs; reflected beyond)
PLACE_MIN_LUNG_MM = 60.0  # a lesion centre projects onto at least this much aerated lung (not hidden behind dome/heart)
LUNG_DENSITY = (0.20, 0.30)  # g/cc of aerated lung, full to poor inspiration
VESSEL_LEN_PER_R = 5.0    # segment length / radius of the branching vessel model (fills a lung with ~300 segments)
VESSEL_R_MIN = 0.6        # mm; smaller twigs are invisible on a radiograph
VESSEL_BUDGET = 650       # segments per arterial tree (veins 70 %): markings reach the outer third, splat stays ~0.2 s
VISIBLE_LUNG_MM = 25.0    # lung path (mm) that shows on a film: zones use the visible apex / costophrenic angle
MARGIN_ZONE = 0.09        # lesion centres avoid this fraction of lung height around zone borders (labels stay robust)
URGENT_LARGE_FRAC = 1.0 / 3.0   # BRIEF: large effusion reaches >= 1/3 of the lung height
EFF_LARGE_AVOID = (0.28, 0.40)  # new effusions are drawn outside this band of height/lung height: no borderline "large"
NOISE_BANK = 3100         # side of the cached standard-normal field windows are cut from (fast full-size noise)
NOISE_BANK_SEED = 20261207  # fixed: the bank is part of the generator, identical on every run
RLE_FRACTION = 0.18       # share of images stored RLE Lossless
MONO1_FRACTION = 0.3      # share of images stored MONOCHROME1
DEFAULT_MIX = (("change", 0.6), ("stable", 0.2), ("normal", 0.2))
SAFETY_CASES = ("mirrored", "lateral", "other_person", "devices_only", "ap_vs_pa", "rotated")
SIZE_RANGES = {"nodule": (8.0, 30.0), "mass": (35.0, 80.0), "consolidation": (30.0, 120.0),
               "effusion": (15.0, 150.0), "pneumothorax": (5.0, 40.0)}


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union of two SDFs)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (smooth intersection)."""
    return -_smin(-a, -b, k)


def _occ(d: np.ndarray, soft: float = SOFT_MM) -> np.ndarray:
    """SDF -> occupancy in [0, 1] with a linear ramp of width ``soft``."""
    return np.clip(0.5 - d * (1.0 / soft), 0.0, 1.0)


def _ell_sdf(X, Y, Z, c, r) -> np.ndarray:
    """Approximate SDF of an axis-aligned ellipsoid (Quilez bound)."""
    x, y, z = (X - c[0]) / r[0], (Y - c[1]) / r[1], (Z - c[2]) / r[2]
    k0 = np.sqrt(x * x + y * y + z * z)
    k1 = np.sqrt(x * x / r[0] ** 2 + y * y / r[1] ** 2 + z * z / r[2] ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _ell2_sdf(X, Y, a, b):
    """Near-exact distance to an ellipse of half-axes a, b (value / gradient norm)."""
    xx, yy = X / a, Y / b
    r = np.sqrt(xx * xx + yy * yy)
    g = np.sqrt(xx * xx / (a * a) + yy * yy / (b * b))
    return (r - 1.0) * r / np.maximum(g, 1e-6)


def _zone(frac: float) -> str:
    """Zone from the fraction of lung height below the apex."""
    return "upper" if frac < 1 / 3 else ("middle" if frac < 2 / 3 else "lower")


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t ** 2 * np.asarray(p2)


# 5x7 bitmap font for burned-in text and lead markers
_FONT_ROWS = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#", "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.", "D": "###..|#..#.|#...#|#...#|#...#|#..#.|###..",
    "E": "#####|#....|#....|####.|#....|#....|#####", "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####", "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.", "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####", "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#", "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....", "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.", "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.", "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#", "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.", "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####", "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.", "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.", "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.", "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    "-": ".....|.....|.....|#####|.....|.....|.....", ":": ".....|..#..|..#..|.....|..#..|..#..|.....",
    "/": "....#|....#|...#.|..#..|.#...|#....|#....", ".": ".....|.....|.....|.....|.....|.##..|.##..",
    " ": ".....|.....|.....|.....|.....|.....|.....",
}


def _text_bitmap(text: str) -> np.ndarray:
    """Boolean bitmap (7 x 6n) of ``text`` in the 5x7 font."""
    cols = []
    for ch in text.upper():
        rows = _FONT_ROWS.get(ch, _FONT_ROWS[" "]).split("|")
        g = np.array([[c == "#" for c in r] for r in rows], bool)
        cols.append(np.pad(g, ((0, 0), (0, 1))))
    return np.concatenate(cols, axis=1)


# ----------------------------------------------------------------------------------------------
# RLE Lossless encoder plugin for pydicom's compress (vectorised PackBits; pydicom's own is slow)
# ----------------------------------------------------------------------------------------------
ENCODER_DEPENDENCIES = {RLELossless: ()}


def is_available(uid: str) -> bool:
    """pydicom plugin protocol: this module encodes RLE Lossless only."""
    return uid == RLELossless


def _packbits_plane(plane: np.ndarray) -> np.ndarray:
    """PackBits-encode a (rows, cols) uint8 byte plane, each row separately (DICOM PS3.5 G).

    Rows are cut into 128-byte blocks; a constant block becomes one replicate run, any other
    block one literal run.  Valid RLE, not optimal, and fast enough for 3000 x 3000 frames.
    """
    R, C = plane.shape
    nb = -(-C // 128)
    pad = nb * 128 - C
    P = np.pad(plane, ((0, 0), (0, pad)), mode="edge").reshape(R, nb, 128)
    lens = np.full(nb, 128)
    lens[-1] = 128 - pad
    const = P.min(axis=2) == P.max(axis=2)
    const[:, lens < 2] = False
    L = np.broadcast_to(lens, (R, nb))
    size = np.where(const, 2, 1 + L).ravel()
    off = (np.cumsum(size) - size).reshape(R, nb)
    out = np.empty(int(size.sum()) + 1, np.uint8)
    out[off] = np.where(const, 257 - L, L - 1).astype(np.uint8)
    out[off[const] + 1] = P[..., 0][const]
    lit = ~const
    full = lit.copy()
    full[:, -1] = lit[:, -1] & (lens[-1] == 128)
    dest = off[full][:, None] + 1 + np.arange(128)
    out[dest] = P[full]
    if lens[-1] < 128:
        tail = lit[:, -1]
        dest = off[tail, -1][:, None] + 1 + np.arange(lens[-1])
        out[dest] = P[tail, -1, : lens[-1]]
    n = int(size.sum())
    return out[: n + (n % 2)] if n % 2 == 0 else np.append(out[:n], np.uint8(0))


def _rle_encode_frame(src: bytes, runner: Any) -> bytes:
    """pydicom encoder plugin: one 16-bit single-sample frame -> RLE Lossless frame."""
    if runner.bits_allocated != 16 or runner.samples_per_pixel != 1:
        raise ValueError("sdfphantom RLE plugin handles 16-bit single-sample frames only")
    a = np.frombuffer(src, "<u2").reshape(runner.rows, runner.columns)
    hi = _packbits_plane((a >> 8).astype(np.uint8))
    lo = _packbits_plane((a & 0xFF).astype(np.uint8))
    header = np.zeros(16, "<u4")
    header[0], header[1], header[2] = 2, 64, 64 + hi.size
    return header.tobytes() + hi.tobytes() + lo.tobytes()


def _register_rle() -> None:
    from pydicom.pixels.encoders.base import RLELosslessEncoder
    if "sdfphantom" not in RLELosslessEncoder._available:  # noqa: SLF001 (plugin table has no public lookup)
        RLELosslessEncoder.add_plugin("sdfphantom", (__name__, "_rle_encode_frame"))


# ----------------------------------------------------------------------------------------------
# The person (3-D phantom) in the body reference frame: x patient-left, y posterior, z cranial (mm)
# ----------------------------------------------------------------------------------------------
@dataclass
class Person:
    sex: str
    age: int
    k: float
    a_ch: float
    b_ch: float
    a_sh: float
    t_w: float
    A: float
    B: float
    z_ap: float
    z_dome: dict
    kx: float
    ky: float
    xc: float
    yc: float
    heart_c: np.ndarray
    heart_r: np.ndarray
    heart_ang: float
    ra_c: np.ndarray
    ra_r: float
    knob_c: np.ndarray
    knob_r: float
    breast: float
    lung_bias: float
    z_hil: float = 0.0
    prof: dict = field(default_factory=dict)
    caps: dict = field(default_factory=dict)      # name -> (A, B, r, w3)
    ells: dict = field(default_factory=dict)      # name -> (C, R, w3, zcut)
    z_top: dict = field(default_factory=dict)     # side -> apex z of the lung's frontal silhouette
    z_bot: dict = field(default_factory=dict)     # side -> lowest point of the costophrenic angle
    x_lat: dict = field(default_factory=dict)     # side -> lateral extent near the base

    def body_sdf(self, X, Y, Z):
        a = np.interp(Z, *self.prof["a"]).astype(F32)
        b = np.interp(Z, *self.prof["b"]).astype(F32)
        return _ell2_sdf(X, Y, a, b)

    def heart_sdf(self, X, Y, Z):
        c, r = self.heart_c, self.heart_r
        ca, sa = math.cos(self.heart_ang), math.sin(self.heart_ang)
        dx, dz = X - c[0], Z - c[2]
        xr = ca * dx + sa * dz
        zr = -sa * dx + ca * dz
        lv = _ell_sdf(xr, Y - c[1], zr, (0, 0, 0), r)
        ra = _ell_sdf(X, Y, Z, self.ra_c, (self.ra_r, 0.7 * self.B, self.ra_r * 1.1))
        return _smin(lv, ra, 18.0)

    def cage_prof(self, Z):
        """Cage half-width, half-depth and mediastinal half-width at heights Z (shared by both sides)."""
        return tuple(np.interp(Z, *self.prof[k]).astype(F32) for k in ("cA", "cB", "m"))

    def cavity_sdf(self, X, Y, Z, s: int, heart=None, prof=None):
        """Pleural cavity of side s (+1 left, -1 right): cage ellipse, mediastinum, dome, heart."""
        xs = s * X
        if prof is None:
            prof = self.cage_prof(Z)
        A, B, m = prof
        d = _ell2_sdf(X, Y - F32(self.B * 0.08), A, B)
        d = _smax(d, m - xs, 12.0)
        dx, dy = xs - self.xc, Y - self.yc
        zd = self.z_dome[s] - self.kx * dx * dx - self.ky * dy * dy
        d_dome = (zd - Z) / np.sqrt(1.0 + (2 * self.kx * dx) ** 2 + (2 * self.ky * dy) ** 2)
        d = _smax(d, d_dome, 4.0)
        if heart is None:
            heart = self.heart_sdf(X, Y, Z)
        d = _smax(d, -heart, 6.0)
        if s > 0:
            kn = _ell_sdf(X, Y, Z, self.knob_c, (self.knob_r, 0.6 * self.B, self.knob_r))
            d = _smax(d, -kn, 5.0)
        return d


def _make_person(rng: np.random.Generator, sex: str | None = None) -> Person:
    """Draw body habitus, build SDF profiles, ribs, spine, clavicles, scapulae and vessel trees."""
    sex = sex or ("F" if rng.random() < 0.5 else "M")
    k = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1)) * (0.95 if sex == "F" else 1.0)
    a_ch = 165 * k * rng.uniform(0.95, 1.06)
    b_ch = 105 * k * rng.uniform(0.92, 1.18)
    t_w = rng.uniform(14, 26)
    A, B = a_ch - t_w, b_ch - t_w - 4
    z_ap = 150 * k
    z_dr = -105 * k + rng.uniform(-10, 10)
    z_dl = z_dr - rng.uniform(8, 24)
    xc = 0.45 * A
    kx = rng.uniform(38, 55) * k / (A - xc) ** 2
    ky = rng.uniform(10, 20) / B ** 2
    ang = math.radians(rng.uniform(-42, -30))
    heart_c = np.array([rng.uniform(24, 34) * k, -0.12 * B, z_dr + 52 * k])
    heart_r = np.array([rng.uniform(66, 76) * k, rng.uniform(0.8, 0.88) * B, rng.uniform(48, 56) * k])
    p = Person(sex=sex, age=int(rng.integers(30, 89)), k=k, a_ch=a_ch, b_ch=b_ch,
               a_sh=a_ch * rng.uniform(1.12, 1.22), t_w=t_w, A=A, B=B, z_ap=z_ap,
               z_dome={-1: z_dr, 1: z_dl}, kx=kx, ky=ky, xc=xc, yc=-0.2 * B,
               heart_c=heart_c, heart_r=heart_r, heart_ang=ang,
               ra_c=np.array([-22 * k, -0.1 * B, z_dr + 42 * k]), ra_r=rng.uniform(34, 40) * k,
               knob_c=np.array([30 * k, 0.05 * B, z_ap - 85 * k]), knob_r=rng.uniform(15, 20) * k,
               breast=(rng.uniform(0.7, 1.3) if sex == "F" else 0.0), lung_bias=rng.uniform(-0.02, 0.02))
    p.tex_seed = int(rng.integers(1 << 30))
    p.z_hil = z_dr + 105 * k
    zb = min(z_dr, z_dl) - 60
    p.prof["a"] = (np.array([-700, zb, z_ap - 60, z_ap - 10, z_ap + 25, z_ap + 55, z_ap + 85, 900.0]),
                   np.array([a_ch * 0.97, a_ch, a_ch, p.a_sh * 0.95, p.a_sh, p.a_sh * 0.78, 62 * k, 60 * k]))
    p.prof["b"] = (np.array([-700, zb, z_ap - 40, z_ap + 30, z_ap + 85, 900.0]),
                   np.array([b_ch * 1.05, b_ch, b_ch * 0.95, b_ch * 0.85, 60 * k, 58 * k]))
    p.prof["cA"] = (np.array([-700, z_dr + 40, z_dr + 100, z_ap - 90, z_ap - 45, z_ap - 15, z_ap + 5, z_ap + 40]),
                    np.array([A, A, A * 0.99, A * 0.9, A * 0.74, A * 0.52, A * 0.3, 1.0]))
    p.prof["cB"] = (np.array([-700, z_ap - 90, z_ap - 40, z_ap + 10]), np.array([B, B, B * 0.8, B * 0.5]))
    p.prof["m"] = (np.array([-700, z_dr + 60, z_dr + 120, z_ap - 60, z_ap - 10, z_ap + 40]),
                   np.array([14, 14, 24, 30, 38, 46.0]) * k)
    _lung_frame(p)
    _build_bones(p, rng)
    _build_vessels(p, rng)
    return p


def _frontal_grid(x0, x1, z0, z1, y0, y1, dx=3.0, dy=6.0):
    xs = np.arange(x0, x1, dx, dtype=F32)
    zs = np.arange(z1, z0, -dx, dtype=F32)
    ys = np.arange(y0, y1, dy, dtype=F32)
    Y, Z, X = np.meshgrid(ys, zs, xs, indexing="ij")
    return X, Y, Z, xs, zs, dy


def _lung_frame(p: Person) -> None:
    """Apex and lowest costophrenic point of each lung's frontal silhouette (zone frame)."""
    for s in (-1, 1):
        X, Y, Z, xs, zs, dy = _frontal_grid(0, p.A + 12, min(p.z_dome.values()) - 90, p.z_ap + 40, -p.B - 10, p.B + 20)
        X = s * X
        L = (_occ(p.cavity_sdf(X, Y, Z, s)) * dy).sum(axis=0)
        mask = L >= VISIBLE_LUNG_MM
        rows = np.flatnonzero(mask.any(axis=1))
        p.z_top[s] = float(zs[rows[0]])
        p.prof[("L", s)] = (xs, zs, L)
        # costophrenic angle: lowest visible lung point in the lateral quarter of the lung
        cor = mask
        cols = np.flatnonzero(cor.any(axis=0))
        lateral = cols[xs[cols] >= 0.75 * xs[cols[-1]]]
        p.z_bot[s] = float(zs[np.flatnonzero(cor[:, lateral].any(axis=1))[-1]])
        low = np.flatnonzero(cor.any(axis=1) & (zs <= p.z_bot[s] + 30))
        p.x_lat[s] = float(xs[np.flatnonzero(cor[low].any(axis=0))[-1]])


def _add_caps(p: Person, name: str, pts: np.ndarray, r: np.ndarray, w3, chain: bool = True) -> None:
    """Append a polyline tube (segments pts[i]->pts[i+1], radius r[i]) to a capsule group."""
    A, Bp = pts[:-1], pts[1:]
    rr = np.broadcast_to(np.asarray(r, float), (len(pts),))[:-1]
    w3 = np.asarray(w3, float)
    w = np.broadcast_to(w3[:-1] if w3.ndim == 2 else w3, (len(A), 3))
    old = p.caps.get(name)
    cid = -1 if not chain else (0 if old is None else int(old[4].max()) + 1)
    new = (A, Bp, rr, w, np.full(len(A), cid))
    if old is not None:
        new = tuple(np.concatenate([o, n]) for o, n in zip(old, new))
    p.caps[name] = new


def _add_ell(p: Person, name: str, c, r, w3, zcut: float = np.nan) -> None:
    """Append an ellipsoid; zcut > 0 keeps only body z above it (gas over a fluid level), zcut < 0
    fades the upper part over -zcut mm (breasts blend into the chest wall)."""
    old = p.ells.get(name)
    new = (np.asarray(c, float)[None], np.asarray(r, float)[None], np.asarray(w3, float)[None], np.array([zcut]))
    if old is not None:
        new = tuple(np.concatenate([o, n]) for o, n in zip(old, new))
    p.ells[name] = new


def _cage(p: Person, z: np.ndarray):
    return np.interp(z, *p.prof["cA"]), np.interp(z, *p.prof["cB"])


def _build_bones(p: Person, rng: np.random.Generator) -> None:
    """Ribs (swept tubes, cortex + marrow), spine, clavicles, scapulae, humeral heads, soft tissue."""
    k = p.k
    gap = 23.5 * k * rng.uniform(0.94, 1.06)
    z1 = p.z_ap - 8
    for s in (-1, 1):
        for i in range(12):
            zi = z1 - i * gap
            th_e = math.pi * (0.70 if i == 0 else (0.80 if i < 9 else 0.62 - 0.12 * (i - 9)))
            th = np.linspace(0.18, th_e, 44)
            post = np.clip(th / (math.pi / 2), 0, 1)
            ant = np.clip((th - math.pi / 2) / (th_e - math.pi / 2 + 1e-6), 0, 1)
            xf = np.sin(th)
            z = zi + 12 * xf * (th < math.pi / 2) - 42 * xf ** 2 * (th < math.pi / 2) - 30 * (th >= math.pi / 2) \
                - (30 + 3.0 * i) * k * ant ** 1.3
            Acg, Bcg = _cage(p, z)
            ro = np.where(th < math.pi / 2, 5.6, 4.6) * k * (0.8 if i == 0 else 1.0)
            x = s * (Acg + ro + 1.5) * np.sin(th)
            y = p.B * 0.08 + (Bcg + ro + 1.5) * np.cos(th)
            pts = np.stack([x, y, z], 1)
            cort = np.where(th < math.pi / 2, 1.1, 0.8)
            # circular tubes stand in for flat ribs: the bone weight scales the path to a ~6 mm thick rib
            flat = np.where(th < math.pi / 2, 0.6, 0.45)[:, None]
            _add_caps(p, "bone_o", pts, ro, flat * [0, 1, 0])
            _add_caps(p, "bone_i", pts, ro - cort, flat * [0.85, -0.85, 0])
        # clavicle: S-curve from the sternal notch to the acromion
        zc = p.z_ap - 22 * k
        pts = _bezier((s * 18 * k, -p.b_ch * 0.62, zc), (s * 85 * k, -p.b_ch * 0.85, zc - 12),
                      (s * p.a_sh * 0.86, p.b_ch * 0.05, zc + 18), 16)
        _add_caps(p, "clav_o", pts, 8.5 * k, (0, 1, 0))
        _add_caps(p, "clav_i", pts, 6.7 * k, (0.85, -0.85, 0))
        # humeral head (ellipsoid with cortex)
        hc = (s * p.a_sh * 1.0, 0.15 * p.b_ch, p.z_ap + 2)
        _add_ell(p, "bone", hc, (25 * k,) * 3, (0, 1, 0))
        _add_ell(p, "bone", hc, (22.5 * k,) * 3, (0.75, -0.75, 0))
        if p.breast > 0:
            _add_ell(p, "soft", (s * 92 * k, -(p.b_ch + 5), p.z_dome[-1] + 20),
                     np.array([72, 48, 62]) * k * p.breast, (0.85, 0, 0), zcut=-60.0)
    # spine: vertebral bodies, pedicles, spinous processes
    yv = 0.42 * p.b_ch
    for i in range(15):
        zv = z1 + 4 - i * gap * 1.02
        rx, rz = (16 + 0.9 * i) * k, gap * 0.5 - 2.5
        body = np.array([[0, yv, zv + rz], [0, yv, zv - rz]])
        _add_caps(p, "spine", body, rx, (0, 0.32, 0), chain=False)        # flat-capped cylinder: box-like body
        _add_caps(p, "spine", body, rx - 1.3, (0.28, -0.28, 0), chain=False)
        for s in (-1, 1):
            _add_ell(p, "bone", (s * (rx - 3), yv + 14 * k + 6, zv + 2), (4.5, 8, 6.5), (0, 0.5, 0))
            _add_ell(p, "bone", (s * (rx - 3), yv + 14 * k + 6, zv + 2), (3.3, 6.8, 5.3), (0.45, -0.45, 0))
        _add_ell(p, "bone", (0, yv + 14 * k + 30, zv - 10), (4, 15, 7), (0, 0.3, 0))
    # trachea and main bronchi (air inside the mediastinum: negative water)
    car = np.array([-3.0, 0.05 * p.B, p.z_hil + 35])
    _add_caps(p, "air", np.array([[-1.0, 0.0, p.z_ap + 90], [-2.0, 0.03 * p.B, p.z_ap], car]), 8.5 * k, (-1, 0, 0))
    _add_caps(p, "air", np.array([car, [-40 * k, 0.05 * p.B, p.z_hil + 12]]), 6 * k, (-0.9, 0, 0))
    _add_caps(p, "air", np.array([car, [20 * k, 0.05 * p.B, p.z_hil + 22], [42 * k, 0.05 * p.B, p.z_hil + 4]]),
              5.5 * k, (-0.9, 0, 0))
    # gastric air bubble under the left dome, air-fluid level at its centre
    sb = (70 * k, -0.1 * p.B, p.z_dome[1] - 30)
    if rng.random() < 0.75:
        _add_ell(p, "gas", sb, np.array([26, 22, 18]) * k * rng.uniform(0.6, 1.15), (-0.9, 0, 0), zcut=sb[2] - 3)


def _scapulae(p: Person, ap: bool) -> tuple:
    """Scapular blades: lateral in PA (arms rotated forward), over the lungs in AP."""
    C, R, W = [], [], []
    caps = []
    for s in (-1, 1):
        cx = s * (p.A - 18 if ap else p.A + 22)
        c = np.array([cx, 0.85 * p.b_ch, p.z_ap - 75 * p.k])
        C += [c]
        R += [np.array([42, 7, 78]) * p.k]
        W += [(0, 0.45, 0)]
        border = _bezier(c + [s * 38 * p.k, 0, 60 * p.k], c + [s * 48 * p.k, 0, 0], c + [s * 10 * p.k, 0, -80 * p.k], 8)
        caps.append(border)
    return np.array(C), np.array(R), np.array(W, float), np.full(2, np.nan), caps


def _grow_tree(p: Person, rng, s: int, root, dirs, r0: float, budget: int):
    """Constrained branching in the cavity with Murray's law radii (r0^3 = r1^3 + r2^3)."""
    P = np.repeat(np.asarray(root, float)[None], len(dirs), 0)
    D = np.asarray(dirs, float)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    R = np.full(len(dirs), r0)
    segA, segB, segR = [], [], []
    n = 0
    root = np.asarray(root, float)
    for _ in range(40):
        if len(P) == 0 or n >= budget:
            break
        L = np.clip(VESSEL_LEN_PER_R * R * rng.uniform(0.8, 1.25, len(R)), 3.0, 32.0)
        E = P + D * L[:, None]
        d = p.cavity_sdf(E[:, 0].astype(F32), E[:, 1].astype(F32), E[:, 2].astype(F32), s)
        ok = d < -2.0
        # a tip that would leave the lung is shortened once before it dies
        E2 = P + D * (0.5 * L)[:, None]
        d2 = p.cavity_sdf(E2[:, 0].astype(F32), E2[:, 1].astype(F32), E2[:, 2].astype(F32), s)
        short = ~ok & (d2 < -2.0)
        E = np.where(short[:, None], E2, E)
        keep = ok | short
        segA.append(P[keep]); segB.append(E[keep]); segR.append(R[keep])
        n += int(keep.sum())
        grow = ok
        P, D, R = E[grow], D[grow], R[grow]
        m = len(P)
        if m == 0:
            break
        f = rng.uniform(0.55, 0.82, m)
        r1, r2 = R * f ** (1 / 3), R * (1 - f) ** (1 / 3)
        helper = np.where(np.abs(D[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 0, 1.0]])
        e1 = np.cross(D, helper)
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(D, e1)
        phi = rng.uniform(0, 2 * np.pi, m)[:, None]
        perp = np.cos(phi) * e1 + np.sin(phi) * e2
        t1 = np.radians(rng.uniform(8, 22, m))[:, None]
        t2 = np.radians(rng.uniform(32, 60, m))[:, None]
        out = P - root
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        D1 = np.cos(t1) * D + np.sin(t1) * perp + 0.25 * out
        D2 = np.cos(t2) * D - np.sin(t2) * perp + 0.25 * out
        P = np.concatenate([P, P]); D = np.concatenate([D1, D2]); R = np.concatenate([r1, r2])
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        alive = R >= VESSEL_R_MIN
        P, D, R = P[alive], D[alive], R[alive]
        room = budget - n
        if len(R) > room:
            order = np.argsort(-R, kind="stable")[:max(room, 0)]
            P, D, R = P[order], D[order], R[order]
    if not segA:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(segA), np.concatenate(segB), np.concatenate(segR)


def _build_vessels(p: Person, rng) -> None:
    """Pulmonary arteries from the hila and veins towards the left atrium, per lung."""
    A_, B_, R_ = [], [], []
    for s in (-1, 1):
        mx = float(np.interp(p.z_hil, *p.prof["m"]))
        art_root = np.array([s * (mx + 22 * p.k), 0.0, p.z_hil + 6])
        dirs = [(s * 0.45, 0.0, 0.9), (s * 0.95, -0.25, 0.1), (s * 0.55, 0.25, -0.8), (s * 0.35, 0.7, -0.6)]
        a, b, r = _grow_tree(p, rng, s, art_root, dirs, 6.8 * p.k, VESSEL_BUDGET)
        A_ += [a]; B_ += [b]; R_ += [r]
        vein_root = np.array([s * (mx + 18 * p.k), -0.1 * p.B, p.z_hil - 38 * p.k])
        a, b, r = _grow_tree(p, rng, s, vein_root, [(s * 0.9, 0.0, 0.4), (s * 0.85, 0.15, -0.45)],
                             4.6 * p.k, int(VESSEL_BUDGET * 0.7))
        A_ += [a]; B_ += [b]; R_ += [r]
    A = np.concatenate([np.atleast_2d(x) for x in A_])
    Bv = np.concatenate([np.atleast_2d(x) for x in B_])
    R = np.concatenate([np.atleast_1d(x) for x in R_])
    p.caps["vessel"] = (A, Bv, R, np.tile([0.8, 0, 0], (len(A), 1)), np.concatenate(
        [np.full(len(np.atleast_1d(x)), i) for i, x in enumerate(R_)]))


# ----------------------------------------------------------------------------------------------
# Findings (lesion state at one time point) and devices
# ----------------------------------------------------------------------------------------------
@dataclass
class Lesion:
    kind: str
    side: int
    center: np.ndarray
    sizes: tuple                  # (prior param, current param); None = absent
    change: str
    extra: dict = field(default_factory=dict)
    measured: list = field(default_factory=lambda: [None, None])
    zone: str = ""


def _noise3(X, Y, Z, ph, amp):
    """Low-frequency 3-D perturbation of an SDF (irregular, non-round outlines)."""
    return amp * (np.sin(X * 0.07 + ph[0]) * np.sin(Y * 0.05 + ph[1])
                  + np.sin(Z * 0.06 + ph[2]) * np.sin(X * 0.045 + ph[3]))


def _cons_sdf(les: Lesion, scale: float, X, Y, Z):
    c = les.center
    d = None
    for off, r in zip(les.extra["offs"], les.extra["radii"]):
        e = _ell_sdf(X, Y, Z, c + scale * off, scale * r)
        d = e if d is None else _smin(d, e, 12.0)
    return d + _noise3(X, Y, Z, les.extra["ph"], 4.0)


def _fluid_level(p: Person, les: Lesion, H: float, X):
    """Meniscus: fluid surface rises towards the lateral chest wall."""
    s = les.side
    w = np.exp(-np.clip(p.x_lat[s] - s * X, 0, None) / les.extra["lam"])
    return p.z_bot[s] + H * (les.extra["base"] + (1 - les.extra["base"]) * w)


def _ptx_gap(p: Person, les: Lesion, D: float, X, Z):
    """Inset of the lung from the chest wall: full apically/laterally, none at base/medially."""
    s = les.side
    LH = p.z_top[s] - p.z_bot[s]
    t = np.clip((Z - (p.z_bot[s] + les.extra["low"] * LH)) / (0.3 * LH), 0, 1)
    m = np.clip((s * X - 25.0) / 45.0, 0, 1)
    return D * t * t * (3 - 2 * t) * np.maximum(m, np.clip((Z - p.z_top[s] + 0.25 * LH) / (0.2 * LH), 0, 1))


def _tissue(p: Person, lesions: list, t: int, X, Y, Z):
    """Density (water-equivalent, g/cc) and per-side cavity/lung occupancy at body-ref points."""
    heart = p.heart_sdf(X, Y, Z)
    dens = _occ(p.body_sdf(X, Y, Z))
    rho = np.float32(p.extra_rho)
    cav, lung = {}, {}
    prof = p.cage_prof(Z)
    for s in (-1, 1):
        dc = p.cavity_sdf(X, Y, Z, s, heart, prof)
        oc = _occ(dc)
        ol = oc
        fl = None
        cons = None
        for les in lesions:
            if les.side != s or les.sizes[t] is None:
                continue
            v = les.sizes[t]
            if les.kind == "pneumothorax":
                ol = _occ(dc + _ptx_gap(p, les, v, X, Z))
            elif les.kind == "effusion":
                fl = _occ(Z - _fluid_level(p, les, v, X), 3.0)
            elif les.kind == "consolidation":
                dcs = _cons_sdf(les, v, X, Y, Z)
                o = _occ(dcs, CONS_SOFT_MM)
                if les.extra.get("fissure") is not None:
                    o = o * _occ(les.extra["fissure"] - Z, 2.0)
                cons = o if cons is None else np.maximum(cons, o)
        fluid = oc * fl if fl is not None else 0.0
        aer = np.minimum(ol, oc - fluid) if fl is not None else ol
        contents = fluid + aer * (rho + (1 - rho) * cons if cons is not None else rho)
        dens = dens - oc + contents
        cav[s], lung[s] = oc, aer
    return dens, cav, lung


@dataclass
class Device:
    kind: str
    pts: np.ndarray
    r: float
    w3: tuple
    tube_r: float = 0.0
    discs: list = field(default_factory=list)   # (center, radius, thickness, w3)

    @property
    def tip(self) -> np.ndarray:
        return self.pts[-1]


# ----------------------------------------------------------------------------------------------
# Acquisition geometry and rendering
# ----------------------------------------------------------------------------------------------
@dataclass
class Acq:
    view: str = "PA"
    modality: str = "DX"
    spacing: float = 0.15
    rows: int = 2800
    cols: int = 2800
    sid: float = 1800.0
    gap: float = 30.0
    roll: float = 0.0
    inplane: float = 0.0
    tilt: float = 0.0
    shift: tuple = (0.0, 0.0)
    insp: float = 0.0
    kvp: float = 120.0
    grid: bool = True
    grid_period: float = 4.0
    grid_amp: float = 0.006
    grid_dir: int = 1
    spr: float = 0.4
    heel: float = 0.06
    sigma0: float = 0.004
    c_base: float = 0.6
    c_band: float = 1.1
    c_det: float = 1.4
    lut: str = "sigmoid"
    lut_k: float = 6.0
    bits: int = 12
    mono1: bool = False
    rle: bool = False
    mirrored: bool = False
    texts: list = field(default_factory=list)
    marker: str = "L"
    coll: tuple = (0.0, 0.0, 0.0, 0.0)
    site: str = "DR 1"


class Geo:
    """Cone-beam geometry: body-ref -> world -> detector pixels (render grid)."""

    def __init__(self, p: Person, acq: Acq):
        self.p, self.acq = p, acq
        self.Fw, self.Fh = acq.cols * acq.spacing, acq.rows * acq.spacing
        self.nj, self.ni = int(round(self.Fw / RENDER_MM)), int(round(self.Fh / RENDER_MM))
        self.d = self.Fw / self.nj
        self.dv = self.Fh / self.ni
        base = -90.0 if acq.view == "LL" else 0.0
        self.R = _rot("y", acq.inplane) @ _rot("z", base + acq.roll) @ _rot("x", acq.tilt)
        self.t = np.array([acq.shift[0], 0.0, acq.shift[1]])
        half = (p.a_ch if acq.view == "LL" else p.b_ch)
        if acq.view == "AP":
            self.ydet = half + acq.gap
            self.ys = self.ydet - acq.sid
        else:
            self.ydet = -(half + acq.gap)
            self.ys = self.ydet + acq.sid
        self.zc = 0.5 * (max(p.z_top.values()) + min(p.z_bot.values())) + (25.0 if acq.view == "AP" else 10.0)
        self.zp = max(p.z_top.values()) + 5.0
        self.s = 1.0 + acq.insp / (self.zp - min(p.z_bot.values()))
        self.M_mid = (self.ydet - self.ys) / (0.0 - self.ys)

    def warp(self, P: np.ndarray) -> np.ndarray:
        Q = np.array(P, float, copy=True)
        z = Q[..., 2]
        Q[..., 2] = np.where(z < self.zp, self.zp - (self.zp - z) * self.s, z)
        return Q

    def unwarp_z(self, Z):
        return np.where(Z < self.zp, self.zp - (self.zp - Z) / self.s, Z).astype(F32)

    def project(self, P: np.ndarray):
        W = self.warp(P) @ self.R.T + self.t
        f = (W[:, 1] - self.ys) / (self.ydet - self.ys)
        u, w = W[:, 0] / f, (self.zc - W[:, 2]) / f
        return (w + self.Fh / 2) / self.dv - 0.5, (u + self.Fw / 2) / self.d - 0.5, 1.0 / f

    def world_to_ref(self, X, Y, Z):
        Rt = self.R.T
        x, y, z = X - self.t[0], Y - self.t[1], Z - self.t[2]
        Xb = Rt[0, 0] * x + Rt[0, 1] * y + Rt[0, 2] * z
        Yb = Rt[1, 0] * x + Rt[1, 1] * y + Rt[1, 2] * z
        Zb = Rt[2, 0] * x + Rt[2, 1] * y + Rt[2, 2] * z
        return Xb.astype(F32), Yb.astype(F32), self.unwarp_z(Zb)


def _organ_maps(geo: Geo, p: Person, lesions: list, t: int):
    """Ray-march the SDF organs: water-equivalent path (mm) and lung/cavity paths per side."""
    acq = geo.acq
    nj, ni = max(int(round(geo.Fw / ORGAN_MM)), 8), max(int(round(geo.Fh / ORGAN_MM)), 8)
    u = (-geo.Fw / 2 + (np.arange(nj) + 0.5) * geo.Fw / nj).astype(F32)
    w = (-geo.Fh / 2 + (np.arange(ni) + 0.5) * geo.Fh / ni).astype(F32)
    half = (p.a_sh + 20) if acq.view == "LL" else (p.b_ch * 1.05 + 25)
    ys = np.arange(-half, half, DEPTH_STEP_MM, dtype=F32) + DEPTH_STEP_MM / 2
    f = ((ys - geo.ys) / (geo.ydet - geo.ys)).astype(F32)[:, None, None]
    Xw = f * u[None, None, :] + np.zeros((1, ni, 1), F32)
    Zw = geo.zc - f * w[None, :, None] + np.zeros((1, 1, nj), F32)
    Yw = np.broadcast_to(ys[:, None, None], Xw.shape).astype(F32)
    X, Y, Z = geo.world_to_ref(Xw, Yw, Zw)
    dens, cav, lung = _tissue(p, lesions, t, X, Y, Z)
    obl = np.sqrt(1 + (u[None, :] ** 2 + w[:, None] ** 2) / acq.sid ** 2).astype(F32) * DEPTH_STEP_MM
    out = {"W": dens.sum(axis=0) * obl}
    for s in (-1, 1):
        out[("cav", s)] = cav[s].sum(axis=0) * obl
        out[("lung", s)] = lung[s].sum(axis=0) * obl
    zoom = (geo.ni / ni, geo.nj / nj)
    return {key: ndi.zoom(v, zoom, order=1, grid_mode=True, mode="nearest") for key, v in out.items()}


def _texture(geo: Geo, p: Person) -> np.ndarray:
    """Zero-mean reticular texture sampled at each render pixel's body (x, z) at mid depth."""
    if "tex" not in p.prof:
        rng = np.random.default_rng(p.tex_seed)
        f = ndi.gaussian_filter(rng.standard_normal((260, 260)), 0.9)
        f -= ndi.gaussian_filter(f, 4.0)
        p.prof["tex"] = (f / f.std()).astype(F32)
    u = -geo.Fw / 2 + (np.arange(geo.nj) + 0.5) * geo.d
    w = -geo.Fh / 2 + (np.arange(geo.ni) + 0.5) * geo.dv
    f0 = (0.0 - geo.ys) / (geo.ydet - geo.ys)
    U, Wd = np.meshgrid(u, w)
    X, _, Z = geo.world_to_ref(f0 * U, np.zeros_like(U), geo.zc - f0 * Wd)
    ci, cj = (260 - 1) / 2 - Z / TEXTURE_MM, (260 - 1) / 2 + X / TEXTURE_MM
    return ndi.map_coordinates(p.prof["tex"], [ci, cj], order=1, mode="reflect").astype(F32)


def _candidates(i0, i1, j0, j1):
    cnt = (i1 - i0 + 1) * (j1 - j0 + 1)
    seg = np.repeat(np.arange(len(cnt)), cnt)
    k = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    wj = (j1 - j0 + 1)[seg]
    return seg, i0[seg] + k // wj, j0[seg] + k % wj


def _splat_caps(acc: np.ndarray, geo: Geo, A, B, r, w3, chain=None) -> None:
    """Exact-chord projection of 3-D tubes into the channel maps.

    Without ``chain`` each segment is a flat-capped cylinder and contributions add (vertebral
    bodies).  With ``chain`` segments have round caps and, within one chain, a pixel keeps the
    largest chord, so a bent tube has no seams at its joints; separate chains add.
    """
    if len(A) == 0:
        return
    H, W = acc.shape[1:]
    ia, ja, Ma = geo.project(A)
    ib, jb, Mb = geo.project(B)
    M = 0.5 * (Ma + Mb)
    rpx = r * M / geo.d
    re = np.maximum(rpx, MIN_SPLAT_PX)
    ell = np.linalg.norm(B - A, axis=1)
    di, dj = ib - ia, jb - ja
    lp = np.hypot(di, dj)
    sin_t = np.clip(lp * geo.d / M / np.maximum(ell, 1e-6), 0.25, 1.0)
    i0 = np.floor(np.minimum(ia, ib) - re - 1).astype(int).clip(0, H - 1)
    i1 = np.ceil(np.maximum(ia, ib) + re + 1).astype(int).clip(0, H - 1)
    j0 = np.floor(np.minimum(ja, jb) - re - 1).astype(int).clip(0, W - 1)
    j1 = np.ceil(np.maximum(ja, jb) + re + 1).astype(int).clip(0, W - 1)
    vis = ((np.maximum(ia, ib) + re >= 0) & (np.minimum(ia, ib) - re < H)
           & (np.maximum(ja, jb) + re >= 0) & (np.minimum(ja, jb) - re < W))
    sel = np.flatnonzero(vis)
    if sel.size == 0:
        return
    seg, ii, jj = _candidates(i0[sel], i1[sel], j0[sel], j1[sel])
    seg = sel[seg]
    pi, pj = ii - ia[seg], jj - ja[seg]
    L = np.maximum(lp[seg], 1e-6)
    ui, uj = di[seg] / L, dj[seg] / L
    tt = (pi * ui + pj * uj) / L
    if chain is None:
        d = np.abs(pi * uj - pj * ui)
        inside = (tt >= 0) & (tt < 1)
    else:
        tc = np.clip(tt, 0, 1)
        d = np.hypot(pi - tc * di[seg], pj - tc * dj[seg])
        inside = np.ones(len(seg), bool)
    rs = re[seg]
    valid = (d < rs) & inside
    q = (rpx[seg] / rs) ** 2
    root = np.sqrt(np.clip(rs * rs - d * d, 0, None))
    chord = np.minimum(2 * root * (geo.d / M[seg]) * q / sin_t[seg], ell[seg] + 2 * r[seg])
    flat = (ii * W + jj)[valid]
    chord = chord[valid]
    seg = seg[valid]
    if flat.size == 0:
        return
    if chain is not None:
        key = chain[seg].astype(np.int64) * (H * W) + flat
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        flat = ks[starts] % (H * W)
        for c in range(3):
            wc = w3[seg, c]
            if np.any(wc != 0):
                v = (chord * wc)[order]
                red = np.maximum.reduceat(v, starts) if np.all(wc >= 0) else np.minimum.reduceat(v, starts)
                acc[c] += np.bincount(flat, weights=red, minlength=H * W).reshape(H, W)
        return
    for c in range(3):
        wc = w3[seg, c]
        if np.any(wc != 0):
            acc[c] += np.bincount(flat, weights=chord * wc, minlength=H * W).reshape(H, W)


def _splat_ells(acc: np.ndarray, geo: Geo, C, R, w3, zcut) -> None:
    """Exact ray chords through ellipsoids (axis-aligned in the body frame)."""
    if len(C) == 0:
        return
    H, W = acc.shape[1:]
    ic, jc, M = geo.project(C)
    ext = R.max(axis=1) * M / min(geo.d, geo.dv) + 2
    i0 = np.floor(ic - ext).astype(int).clip(0, H - 1); i1 = np.ceil(ic + ext).astype(int).clip(0, H - 1)
    j0 = np.floor(jc - ext).astype(int).clip(0, W - 1); j1 = np.ceil(jc + ext).astype(int).clip(0, W - 1)
    vis = (ic + ext >= 0) & (ic - ext < H) & (jc + ext >= 0) & (jc - ext < W)
    sel = np.flatnonzero(vis)
    if sel.size == 0:
        return
    seg, ii, jj = _candidates(i0[sel], i1[sel], j0[sel], j1[sel])
    seg = sel[seg]
    Cw = geo.warp(C) @ geo.R.T + geo.t
    yc = Cw[seg, 1]
    f = (yc - geo.ys) / (geo.ydet - geo.ys)
    u = -geo.Fw / 2 + (jj + 0.5) * geo.d
    w = -geo.Fh / 2 + (ii + 0.5) * geo.dv
    Xb, Yb, Zb = geo.world_to_ref(f * u, yc, geo.zc - f * w)
    S = np.array([0.0, geo.ys, geo.zc])
    Dw = Cw - S
    Dw /= np.linalg.norm(Dw, axis=1, keepdims=True)
    Db = Dw @ geo.R
    Cb = C
    ox, oy, oz = Xb - Cb[seg, 0], Yb - Cb[seg, 1], Zb - Cb[seg, 2]
    rx, ry, rz = R[seg, 0], R[seg, 1], R[seg, 2]
    dx, dy, dz = Db[seg, 0], Db[seg, 1], Db[seg, 2]
    a = dx * dx / rx ** 2 + dy * dy / ry ** 2 + dz * dz / rz ** 2
    b = 2 * (dx * ox / rx ** 2 + dy * oy / ry ** 2 + dz * oz / rz ** 2)
    c0 = ox * ox / rx ** 2 + oy * oy / ry ** 2 + oz * oz / rz ** 2 - 1
    disc = b * b - 4 * a * c0
    zc = zcut[seg]
    valid = (disc > 0) & (np.isnan(zc) | (zc < 0) | (Zb > zc))
    chord = np.sqrt(np.clip(disc, 0, None)) / a
    fade = zc < 0
    if np.any(fade):
        ramp = np.clip(0.5 - (Zb - Cb[seg, 2]) / np.where(fade, -zc, 1.0), 0, 1)
        chord = np.where(fade, chord * ramp, chord)
    flat = (ii * W + jj)[valid]
    chord, seg = chord[valid], seg[valid]
    for c in range(3):
        wc = w3[seg, c]
        if np.any(wc != 0):
            acc[c] += np.bincount(flat, weights=chord * wc, minlength=H * W).reshape(H, W)


def _lesion_prims(p: Person, les: Lesion, t: int, rho: float):
    """Capsules and ellipsoids a lesion adds at time t (nodules, spicules, air bronchograms)."""
    caps, ells = [], []
    v = les.sizes[t]
    if v is None:
        return caps, ells
    if les.kind in ("nodule", "mass"):
        r = v / 2.0
        w = (1 - rho, 0, 0)
        ells.append((les.center, r * les.extra["axes"], w))
        for off, rb in les.extra["bumps"]:
            ells.append((les.center + off * r, rb * r * np.ones(3), (0.35 * (1 - rho), 0, 0)))
        for dvec, ln in les.extra["spic"]:
            a = les.center + dvec * r * 0.9
            caps.append((np.array([a, a + dvec * ln * (r / 10) ** 0.5]), 0.7, (1 - rho, 0, 0)))
    if les.kind == "consolidation":
        A, B, R = les.extra["bronchi"]
        sc = v
        c = les.center
        for a, b, r in zip(A, B, R):
            caps.append((np.array([c + (a - c) * sc, c + (b - c) * sc]), r, (-0.85, 0, 0)))
    return caps, ells


def _device_prims(dev: Device):
    caps = [(dev.pts, dev.r, dev.w3)]
    if dev.tube_r > 0:
        caps.append((dev.pts, dev.tube_r, (0.25, 0, 0)))
    ells = [(c, np.array([rad, th / 2, rad]), w) for c, rad, th, w in dev.discs]
    return caps, ells


def _spectrum(kvp: float, modality: str) -> np.ndarray:
    E = ENERGIES_KEV
    phi = np.clip(kvp - E, 0, None) / E * AL_FILTER_T
    w = phi * E * (ETA_CR if modality == "CR" else ETA_DR)
    return w / w.sum()


def _lowpass(img: np.ndarray, sigma_px: float, down: int = 8) -> np.ndarray:
    small = ndi.zoom(img, 1.0 / down, order=1, grid_mode=True, mode="nearest")
    small = ndi.gaussian_filter(small, sigma_px / down, mode="nearest")
    return ndi.zoom(small, (img.shape[0] / small.shape[0], img.shape[1] / small.shape[1]), order=1,
                    grid_mode=True, mode="nearest")


def _lut(acq: Acq, t: np.ndarray) -> np.ndarray:
    if acq.lut == "sigmoid":
        lo, hi = 1 / (1 + np.exp(acq.lut_k * 0.6)), 1 / (1 + np.exp(-acq.lut_k * 0.6))
        return (1 / (1 + np.exp(-acq.lut_k * (t - 0.5))) - lo) / (hi - lo)
    if acq.lut == "gamma":
        return np.clip(t, 0, 1) ** acq.lut_k
    return 0.04 + 0.92 * np.clip(t, 0, 1)


_BANK: dict = {}


def _noise_bank(correlated: bool) -> np.ndarray:
    """Cached full-size standard-normal field (fixed seed); CR version spatially correlated."""
    key = "cr" if correlated else "dr"
    if key not in _BANK:
        if "dr" not in _BANK:
            _BANK["dr"] = np.random.default_rng(NOISE_BANK_SEED).standard_normal((NOISE_BANK, NOISE_BANK), dtype=F32)
        if correlated:
            b = _BANK["dr"]
            c = (b + np.roll(b, 1, 0) + np.roll(b, 1, 1) + np.roll(b, (1, 1), (0, 1))) * F32(0.5)
            _BANK["cr"] = c
    return _BANK[key]


def _upsample(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """Separable linear upsampling (cell-centred) by gathers; faster than ndimage at 3000^2."""
    h, w = img.shape

    def axis(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.clip(np.floor(x).astype(int), 0, n_in - 1)
        i1 = np.clip(i0 + 1, 0, n_in - 1)
        a = np.clip(x - i0, 0, 1).astype(F32)
        return i0, i1, a

    i0, i1, a = axis(H, h)
    j0, j1, b = axis(W, w)
    tmp = img[i0] * (1 - a)[:, None] + img[i1] * a[:, None]
    return tmp[:, j0] * (1 - b)[None, :] + tmp[:, j1] * b[None, :]


def _nearest_up(img: np.ndarray, H: int, W: int) -> np.ndarray:
    h, w = img.shape
    ci = np.bincount(np.minimum(((np.arange(H) + 0.5) * h / H).astype(int), h - 1), minlength=h)
    cj = np.bincount(np.minimum(((np.arange(W) + 0.5) * w / W).astype(int), w - 1), minlength=w)
    return np.repeat(np.repeat(img, ci, axis=0), cj, axis=1)


def render(p: Person, lesions: list, devices: list, t: int, acq: Acq, rng) -> tuple[np.ndarray, dict]:
    """One radiograph of person p with the lesion state t (0 prior, 1 current) and devices."""
    geo = Geo(p, acq)
    rho = LUNG_DENSITY[0] + (LUNG_DENSITY[1] - LUNG_DENSITY[0]) * np.clip(0.5 - acq.insp / 24, 0, 1) + p.lung_bias
    p.extra_rho = float(rho)
    maps = _organ_maps(geo, p, lesions, t)
    acc = np.zeros((3, geo.ni, geo.nj), F32)
    acc[0] = maps["W"]
    # fine structures
    # lung parenchyma texture, fixed to the body (same person, same texture); absent where lung is
    tex = _texture(geo, p)
    acc[0] += tex * (maps[("lung", -1)] + maps[("lung", 1)]) * F32(rho * TEXTURE_AMP)
    for name, (A, B, r, w3, chain) in p.caps.items():
        _splat_caps(acc, geo, A, B, r, w3, None if chain[0] < 0 else chain)
    for name, (C, R, w3, zc) in p.ells.items():
        _splat_ells(acc, geo, C, R, w3, zc)
    C, R, W3, ZC, borders = _scapulae(p, acq.view == "AP")
    _splat_ells(acc, geo, C, R, W3, ZC)
    for bd in borders:
        _splat_caps(acc, geo, bd[:-1], bd[1:], np.full(len(bd) - 1, 5.0 * p.k), np.tile([0, 0.8, 0], (len(bd) - 1, 1)),
                    np.zeros(len(bd) - 1, int))
    prims_c, prims_e = [], []
    for les in lesions:
        c, e = _lesion_prims(p, les, t, rho)
        prims_c += c; prims_e += e
    for dev in devices:
        c, e = _device_prims(dev)
        prims_c += c; prims_e += e
    for pts, r, w in prims_c:
        n = len(pts) - 1
        _splat_caps(acc, geo, pts[:-1], pts[1:], np.full(n, float(r)), np.tile(np.asarray(w, float), (n, 1)),
                    np.zeros(n, int))
    if prims_e:
        _splat_ells(acc, geo, np.array([e[0] for e in prims_e]), np.array([e[1] for e in prims_e]),
                    np.array([e[2] for e in prims_e], float), np.full(len(prims_e), np.nan))
    # pneumothorax: thin visceral pleural line at the lung edge where the gap is
    for les in lesions:
        if les.kind == "pneumothorax" and les.sizes[t] is not None:
            s = les.side
            lungm = maps[("lung", s)] > 4.0
            gapm = (maps[("cav", s)] - maps[("lung", s)]) > 6.0
            edge = lungm & ~ndi.binary_erosion(lungm) & ndi.binary_dilation(gapm, iterations=3)
            acc[0] += ndi.gaussian_filter(edge.astype(F32), 0.5) * 14.0
    # lead marker (in the beam, so it mirrors with the image)
    if acq.marker:
        s = 1 if acq.marker == "L" else -1
        mi, mj, M = geo.project(np.array([[s * (p.a_ch * 0.9), -p.b_ch, p.z_ap - 5]]))
        bm = _text_bitmap(acq.marker)
        scale = max(int(round(2.0 / geo.d)), 1)
        bm = np.kron(bm, np.ones((scale, scale), bool))
        i0, j0 = int(mi[0]) - bm.shape[0] // 2, int(mj[0]) - bm.shape[1] // 2
        i0 = int(np.clip(i0, 2, geo.ni - bm.shape[0] - 2)); j0 = int(np.clip(j0, 2, geo.nj - bm.shape[1] - 2))
        acc[2, i0:i0 + bm.shape[0], j0:j0 + bm.shape[1]] += bm * 1.2
    # physics: polyenergetic primary, heel effect, scatter, detector blur
    wE = _spectrum(acq.kvp, acq.modality)
    Wm, Bm, Mm = np.maximum(acc[0], 0), np.maximum(acc[1], 0), np.maximum(acc[2], 0)
    P = np.zeros_like(Wm)
    for k in range(len(wE)):
        P += F32(wE[k]) * np.exp(-(F32(MU_WATER[k]) * Wm + F32(MU_BONE[k] - MU_WATER[k]) * Bm + F32(MU_METAL[k]) * Mm))
    heel = (1 + acq.heel * np.linspace(-1, 1, geo.ni, dtype=F32))[:, None]
    P *= heel
    S = acq.spr * _lowpass(P, 70.0 / geo.d) * F32(0.6)
    D = P + S
    sig_det = (0.35 if acq.modality == "CR" else 0.18) / geo.d
    D = ndi.gaussian_filter(D, max(sig_det, 0.3))
    q = -np.log(np.maximum(D / (1 + 0.6 * acq.spr), 1e-6))
    # site processing: multi-scale equalisation + unsharp masking + LUT
    base = _lowpass(q, 30.0 / geo.d, down=4)
    mid = ndi.gaussian_filter(q, 2.5 / geo.d)
    pl = acq.c_base * base + acq.c_band * (mid - base) + acq.c_det * (q - mid)
    body = q > 0.4
    sample = pl[body] if body.sum() > 100 else pl.ravel()
    lo, hi = np.percentile(sample, [0.5, 99.7])
    tt = (pl - lo) / max(hi - lo, 1e-6)
    disp = np.clip(_lut(acq, tt), 0, 1).astype(F32)
    slope = (np.clip(_lut(acq, tt + 0.01), 0, 1) - np.clip(_lut(acq, tt - 0.01), 0, 1)) / 0.02
    sig_q = acq.sigma0 * np.sqrt(np.maximum(1.0 / np.maximum(D, 1e-6), 1.0))
    std = (sig_q * acq.c_det * slope / max(hi - lo, 1e-6)).astype(F32)
    # full resolution: upsample, detector noise, grid, collimation, text
    Hf, Wf = acq.rows, acq.cols
    img = _upsample(disp, Hf, Wf)
    bank = _noise_bank(acq.modality == "CR")
    oi, oj = int(rng.integers(0, NOISE_BANK - Hf + 1)), int(rng.integers(0, NOISE_BANK - Wf + 1))
    nz = bank[oi:oi + Hf, oj:oj + Wf]
    fl = int(rng.integers(0, 4))
    nz = nz[::(-1 if fl & 1 else 1), ::(-1 if fl & 2 else 1)]
    img += nz * _nearest_up(std, Hf, Wf)
    if acq.grid:
        ph = rng.uniform(0, 2 * np.pi)
        n = Wf if acq.grid_dir else Hf
        g = (acq.grid_amp * np.sin(2 * np.pi * np.arange(n) / acq.grid_period + ph)).astype(F32)
        img += g[None, :] if acq.grid_dir else g[:, None]
    if acq.mirrored:
        img = img[:, ::-1]
    top, bot, left, right = (int(round(c / acq.spacing)) for c in acq.coll)
    cval = F32(0.97)
    if top:
        img[:top] = cval
    if bot:
        img[Hf - bot:] = cval
    if left:
        img[:, :left] = cval
    if right:
        img[:, Wf - right:] = cval
    scale = max(int(round(1.6 / acq.spacing)), 2)
    y = int(round(8 / acq.spacing)) + top
    for k, text in enumerate(acq.texts):
        bm = np.kron(_text_bitmap(text), np.ones((scale, scale), bool))
        margin = int(round(10 / acq.spacing))
        x = margin + left if k % 2 == 0 else Wf - right - bm.shape[1] - margin
        yy = y + (k // 2) * (bm.shape[0] + 3 * scale)
        region = img[yy:yy + bm.shape[0], x:x + bm.shape[1]]
        region[bm[:region.shape[0], :region.shape[1]]] = F32(1.0)
    maxv = (1 << acq.bits) - 1
    out = np.clip(img * maxv + 0.5, 0, maxv).astype(np.uint16)
    sub = out[top:Hf - bot:8, left:Wf - right:8]
    p2, p98 = np.percentile(sub, [2, 98])
    if acq.mono1:
        out = (maxv - out).astype(np.uint16)
        p2, p98 = maxv - p98, maxv - p2
    meta = {"M_mid": geo.M_mid, "wc": float(round((p2 + p98) / 2)), "ww": float(max(round((p98 - p2) * 1.15), 2))}
    return out, meta


# ----------------------------------------------------------------------------------------------
# Planning: cases, findings, devices, acquisitions
# ----------------------------------------------------------------------------------------------
def _zone_band(p: Person, s: int, zone: str) -> tuple[float, float]:
    i = ("upper", "middle", "lower").index(zone)
    top, LH = p.z_top[s], p.z_top[s] - p.z_bot[s]
    return top - (i + 1 - MARGIN_ZONE) * LH / 3, top - (i + MARGIN_ZONE) * LH / 3


def _zone_of(p: Person, s: int, z: float) -> str:
    return _zone((p.z_top[s] - z) / (p.z_top[s] - p.z_bot[s]))


def _place(p: Person, rng, s: int, zone: str, clearance: float):
    """A point deep enough inside side s's lung, with z inside the zone band."""
    z0, z1 = _zone_band(p, s, zone)
    n = 600
    X = (s * rng.uniform(15, p.A, n)).astype(F32)
    Y = rng.uniform(-p.B, p.B, n).astype(F32)
    Z = rng.uniform(z0, z1, n).astype(F32)
    d = p.cavity_sdf(X, Y, Z, s)
    xs, zs, L = p.prof[("L", s)]
    ci = np.clip(np.searchsorted(-zs, -Z), 0, len(zs) - 1)
    cj = np.clip(np.searchsorted(xs, s * X), 0, len(xs) - 1)
    ok = np.flatnonzero((d < -clearance) & (L[ci, cj] >= PLACE_MIN_LUNG_MM))
    if ok.size == 0:
        return None
    i = ok[int(rng.integers(ok.size))]
    return np.array([X[i], Y[i], Z[i]], float)


def _size_pair(rng, kind: str, change: str):
    lo, hi = SIZE_RANGES[kind]
    if change in ("new",):
        return None, rng.uniform(lo, hi)
    if change == "resolved":
        return rng.uniform(lo, hi), None
    if change == "stable":
        a = rng.uniform(lo, hi)
        # nodules/masses are measured exactly, so they may wobble a little; grid-measured findings
        # (2 mm steps) keep one geometry so "stable" cannot read as a >10 % change
        return a, (a * rng.uniform(0.96, 1.04) if kind in ("nodule", "mass") else a)
    if change == "worsened":
        a = rng.uniform(lo, lo + (hi - lo) * 0.45)
        return a, min(hi, a * rng.uniform(1.35, 2.0))
    a = rng.uniform(lo + (hi - lo) * 0.45, hi)
    return a, max(lo, a * rng.uniform(0.45, 0.72))


def _measure(p: Person, les: Lesion) -> None:
    """Measure each present state on the phantom (honest labels) and set the zone."""
    s = les.side
    LH = p.z_top[s] - p.z_bot[s]
    p.extra_rho = 0.2
    cent = None
    for t in (0, 1):
        v = les.sizes[t]
        if v is None:
            continue
        if les.kind in ("nodule", "mass"):
            les.measured[t] = float(v * float(np.mean(les.extra["axes"])))
            cent = les.center[2]
            continue
        X, Y, Z, xs, zs, dy = _frontal_grid(0, p.A + 14, p.z_bot[s] - 20, p.z_top[s] + 15, -p.B - 12, p.B + 20,
                                            dx=2.0, dy=8.0)
        X = s * X
        if les.kind == "consolidation":
            d = _cons_sdf(les, v, X, Y, Z)
            o = _occ(d, CONS_SOFT_MM) * _occ(p.cavity_sdf(X, Y, Z, s))
            if les.extra.get("fissure") is not None:
                o = o * _occ(les.extra["fissure"] - Z, 2.0)
            m = (o * dy).sum(0) >= 8.0
            ii, jj = np.nonzero(m)
            pts = np.stack([xs[jj], zs[ii]], 1)
            ang = np.linspace(0, np.pi, 12, endpoint=False)
            proj = pts @ np.stack([np.cos(ang), np.sin(ang)])
            les.measured[t] = float((proj.max(0) - proj.min(0)).max())
            cz = float(zs[ii].mean())
            les.extra.setdefault("centroid", {})[t] = (s * float(xs[jj].mean()), cz)
        else:
            dense = les.kind == "effusion"
            _, cav, lung = _tissue(p, [les] if not dense else [les], t, X, Y, Z)
            if dense:
                fl = _occ(Z - _fluid_level(p, les, v, X), 3.0) * cav[s]
                m = (fl * dy).sum(0) >= 5.0
                ii, jj = np.nonzero(m)
                les.measured[t] = float(zs[ii].max() - p.z_bot[s])
                cz = float(zs[ii].mean())
                les.extra.setdefault("centroid", {})[t] = (s * float(xs[jj].mean()), cz)
            else:
                cm = (cav[s] * dy).sum(0) >= 3.0
                lm = (lung[s] * dy).sum(0) >= 3.0
                rim = 0.0
                for i in range(len(zs)):
                    if zs[i] < p.z_bot[s] + 0.3 * LH or not cm[i].any():
                        continue
                    xl = xs[np.flatnonzero(lm[i])[-1]] if lm[i].any() else xs[np.flatnonzero(cm[i])[0]]
                    rim = max(rim, float(xs[np.flatnonzero(cm[i])[-1]] - xl))
                ctop = zs[np.flatnonzero(cm.any(1))[0]]
                ltop = zs[np.flatnonzero(lm.any(1))[0]] if lm.any() else p.z_bot[s]
                rim = max(rim, float(ctop - ltop))
                les.measured[t] = rim
                gm = cm & ~lm
                ii, jj = np.nonzero(gm)
                cz = float(zs[ii].mean()) if ii.size else float(p.z_top[s] - LH / 4)
                les.extra.setdefault("centroid", {})[t] = (s * float(xs[jj].mean()) if ii.size else s * p.x_lat[s], cz)
        cent = cz
    les.zone = _zone_of(p, s, cent)


def _make_lesion(p: Person, rng, kind: str, s: int, zone: str, change: str, urgent_large: bool | None = None):
    sizes = _size_pair(rng, kind, change)
    if kind in ("nodule", "mass"):
        mx = max(x for x in sizes if x is not None)
        c = _place(p, rng, s, zone, mx / 2 + 6)
        if c is None:
            return None
        axes = rng.uniform(0.9, 1.1, 3)
        axes /= axes.mean()
        nb = int(rng.integers(0, 3 if kind == "nodule" else 5))
        bumps = []
        for _ in range(nb):
            v = rng.normal(size=3); v /= np.linalg.norm(v)
            bumps.append((v * 0.55, rng.uniform(0.35, 0.5)))
        spic = []
        if rng.random() < (0.25 if kind == "nodule" else 0.5):
            for _ in range(int(rng.integers(5, 12))):
                v = rng.normal(size=3); v /= np.linalg.norm(v)
                spic.append((v, rng.uniform(4, 12)))
        return Lesion(kind, s, c, sizes, change, {"axes": axes, "bumps": bumps, "spic": spic})
    if kind == "consolidation":
        c = _place(p, rng, s, zone, 12)
        if c is None:
            return None
        n = int(rng.integers(2, 4))
        offs = [np.zeros(3)] + [rng.normal(0, 0.25, 3) * [1, 0.6, 1] for _ in range(n - 1)]
        radii = [np.array([rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.45), rng.uniform(0.35, 0.5)]) for _ in range(n)]
        fis = None
        if s < 0 and zone == "upper" and rng.random() < 0.6:
            fis = float(p.z_hil + rng.uniform(-5, 10))       # minor fissure: sharp inferior edge
            c[2] = max(c[2], fis + 15)
        les = Lesion(kind, s, c, (None, None), change, {"offs": [o * 1.0 for o in offs], "radii": radii,
                                                       "ph": rng.uniform(0, 6.28, 4), "fissure": fis})
        # scale (mm per unit) chosen so the measured extent lands on the drawn size
        target = _size_pair(rng, kind, change)
        unit = 100.0
        les.sizes = (unit if target[0] is not None else None, unit if target[1] is not None else None)
        _measure(p, les)
        ref = les.measured[0] if les.measured[0] is not None else les.measured[1]
        f = unit / max(ref, 1.0)
        les.sizes = tuple(None if x is None else x * f for x in target)
        br = _grow_bronchi(p, rng, les, max(x for x in les.sizes if x is not None))
        les.extra["bronchi"] = br
        return les
    if kind == "effusion":
        LH = p.z_top[s] - p.z_bot[s]
        lo, hi = SIZE_RANGES["effusion"]
        sz = list(sizes)
        if change == "new":
            if urgent_large is None:
                urgent_large = rng.random() < 0.45
            sz[1] = rng.uniform(EFF_LARGE_AVOID[1] * LH, min(hi, 0.55 * LH)) if urgent_large else \
                rng.uniform(lo, min(EFF_LARGE_AVOID[0] * LH, hi))
        les = Lesion(kind, s, np.array([s * p.A * 0.6, 0, p.z_bot[s]]), tuple(sz), change,
                     {"lam": rng.uniform(30, 50), "base": rng.uniform(0.4, 0.6)})
        return les
    if kind == "pneumothorax":
        les = Lesion(kind, s, np.array([s * p.A * 0.8, 0, p.z_top[s]]), sizes, change,
                     {"low": rng.uniform(0.1, 0.25)})
        target = les.sizes
        for _ in range(4):   # the SDF inset is not an exact distance: rescale until the rim lands on the draw
            _measure(p, les)
            if all(t is None or abs(m / t - 1) < 0.06 for t, m in zip(target, les.measured)):
                break
            les.sizes = tuple(None if v is None else v * t / max(m, 1.0)
                              for v, t, m in zip(les.sizes, target, les.measured))
        return les
    return None


def _grow_bronchi(p: Person, rng, les: Lesion, scale: float):
    """Air bronchograms: a small branching tree kept inside the consolidation (unit frame)."""
    c = les.center
    s = les.side
    hil = np.array([s * 40.0, 0.0, p.z_hil])
    d0 = c - hil
    d0 /= np.linalg.norm(d0)
    start = c - d0 * 0.25 * scale
    P, D, R = start[None], d0[None], np.array([2.2])
    A_, B_, R_ = [], [], []
    for _ in range(6):
        L = R * 7.0
        E = P + D * L[:, None]
        inside = _cons_sdf(les, scale, E[:, 0], E[:, 1], E[:, 2]) < -4
        A_ += list(P[inside]); B_ += list(E[inside]); R_ += list(R[inside])
        P, D, R = E[inside], D[inside], R[inside]
        if len(P) == 0:
            break
        ang = rng.uniform(0.3, 0.6, len(P))[:, None]
        perp = np.cross(D, rng.normal(size=(len(P), 3)))
        perp /= np.linalg.norm(perp, axis=1, keepdims=True)
        P = np.concatenate([P, P]); R = np.concatenate([R, R]) * 0.8
        D = np.concatenate([np.cos(ang) * D[: len(ang)] + np.sin(ang) * perp,
                            np.cos(ang) * D[: len(ang)] - np.sin(ang) * perp])
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        keep = R >= 0.7
        P, D, R = P[keep], D[keep], R[keep]
    # stored relative to the centre at unit scale so the tree scales with the consolidation
    A = np.array(A_) if A_ else np.zeros((0, 3))
    B = np.array(B_) if B_ else np.zeros((0, 3))
    return (c + (A - c) / scale, c + (B - c) / scale, np.array(R_)) if len(A) else (A, B, np.zeros(0))


def _finding_dict(les: Lesion) -> dict:
    m = les.measured
    urgent = (les.kind == "pneumothorax" and les.change in ("new", "worsened")) or \
        (les.kind == "effusion" and les.change == "new" and les._large)
    return {"finding": les.kind, "side": "left" if les.side > 0 else "right", "zone": les.zone,
            "change": les.change, "size_mm_prior": None if m[0] is None else round(m[0], 1),
            "size_mm_current": None if m[1] is None else round(m[1], 1), "urgent": bool(urgent)}


def _plan_findings(p: Person, rng, case: str) -> list:
    kinds = ["nodule", "mass", "consolidation", "effusion", "pneumothorax"]
    kw = np.array([0.22, 0.12, 0.2, 0.24, 0.22])
    ch_types = ["new", "worsened", "improved", "resolved"]
    cw = np.array([0.35, 0.25, 0.2, 0.2])
    plan = []
    if case in ("change", "mirrored", "lateral", "rotated", "ap_vs_pa"):
        n_ch = 1 if (rng.random() < 0.7 or case != "change") else 2
        for i in range(n_ch):
            if case == "ap_vs_pa" and i == 0 and rng.random() < 0.6:
                kind = "pneumothorax" if rng.random() < 0.5 else "effusion"
                plan.append((kind, "new" if kind == "effusion" else ("new" if rng.random() < 0.6 else "worsened"), True))
            else:
                plan.append((kinds[rng.choice(5, p=kw)], ch_types[rng.choice(4, p=cw)], None))
        if rng.random() < 0.3:
            plan.append((kinds[rng.choice(5, p=kw)], "stable", None))
    elif case == "stable":
        for _ in range(int(rng.integers(1, 3))):
            plan.append((kinds[rng.choice(5, p=kw)], "stable", None))
    elif case == "devices_only" and rng.random() < 0.4:
        plan.append((kinds[rng.choice(3, p=kw[:3] / kw[:3].sum())], "stable", None))
    used: set = set()
    out = []
    for kind, change, urgent in plan:
        for _ in range(12):
            s = int(rng.choice([-1, 1]))
            zone = {"effusion": "lower", "pneumothorax": "upper"}.get(kind) or ("upper", "middle", "lower")[int(rng.integers(3))]
            need = {(s, "all")} if kind == "pneumothorax" else ({(s, "lower"), (s, "middle")} if kind == "effusion" else {(s, zone)})
            if kind in ("pneumothorax", "effusion"):
                need |= {(s, "pleural")}
            if need & used or (s, "all") in used:
                continue
            if kind == "pneumothorax" and any(u[0] == s for u in used):
                continue
            les = _make_lesion(p, rng, kind, s, zone, change, urgent)
            if les is None:
                continue
            _measure(p, les)
            les._large = (kind == "effusion" and les.measured[1] is not None and
                          les.measured[1] >= URGENT_LARGE_FRAC * (p.z_top[s] - p.z_bot[s]))
            used |= need
            out.append(les)
            break
    return out


def _devices(p: Person, rng, kinds: list, jitter: float = 0.0) -> list:
    """Support devices in the body-ref frame; jitter moves tips (mm) for the 'moved' variant."""
    k, out = p.k, []
    car_z = p.z_hil + 35
    for kind in kinds:
        if kind == "ETT":
            tip = car_z + 45 * k - jitter
            pts = _bezier((-2, -p.b_ch - 40, p.z_ap + 200), (-2, -0.3 * p.b_ch, p.z_ap + 90), (-2, 0.02 * p.B, tip), 10)
            out.append(Device("endotracheal tube", pts, 0.7, (0, 0, 0.22), tube_r=4.5))
        elif kind == "NG":
            zd = p.z_dome[1]
            pts = np.concatenate([_bezier((4, -p.b_ch * 0.2, p.z_ap + 200), (6, 0.3 * p.B, p.z_ap), (14, 0.25 * p.B, zd + 40), 10),
                                  _bezier((14, 0.25 * p.B, zd + 40), (40, 0.0, zd - 10), (70 * k + jitter, -0.1 * p.B, zd - 55), 8)[1:]])
            out.append(Device("nasogastric tube", pts, 0.8, (0, 0, 0.25), tube_r=2.5))
        elif kind == "CVC":
            pts = _bezier((-60 * k, -0.3 * p.b_ch, p.z_ap + 110), (-35 * k, -0.3 * p.B, p.z_ap - 10),
                          (-16 * k, -0.15 * p.B, p.z_hil + 25 - jitter), 12)
            out.append(Device("central venous catheter", pts, 1.0, (0.4, 0, 0.12)))
        elif kind == "drain":
            s = 1 if rng.random() < 0.5 else -1
            pts = _bezier((s * (p.a_ch + 40), 0.1 * p.B, p.z_dome[s] + 30), (s * p.A * 0.95, 0.0, p.z_dome[s] + 60),
                          (s * 70 * k, -0.3 * p.B, p.z_ap - 45 * k - jitter), 12)
            out.append(Device("chest drain", pts, 0.8, (0, 0, 0.3), tube_r=5.0))
        elif kind == "ECG":
            discs, wires = [], []
            for (sx, zz) in ((-0.62, p.z_ap - 35), (0.62, p.z_ap - 35), (0.55, p.z_dome[1] - 25), (-0.5, p.z_dome[-1] - 30)):
                c = np.array([sx * p.a_ch + jitter, -p.b_ch - 4, zz])
                discs += [(c, 11.0, 1.2, (1, 0, 0)), (c - [0, 2, 0], 3.2, 2.0, (0, 0, 0.5))]
                end = c + [np.sign(sx) * 220, 0, 120]
                wires.append(_bezier(c, c + [np.sign(sx) * 60, -10, -20], end, 10))
            pts = wires[0]
            dev = Device("ECG leads", pts, 0.45, (0, 0, 0.5), discs=discs)
            out.append(dev)
            for wpts in wires[1:]:
                out.append(Device("ECG wire", wpts, 0.45, (0, 0, 0.5)))
    return out


def _device_findings(p: Person, devs_p: list, devs_c: list, moved: set) -> list:
    names_p = {d.kind for d in devs_p if d.kind != "ECG wire"}
    names_c = {d.kind for d in devs_c if d.kind != "ECG wire"}
    out = []
    for name in sorted(names_p | names_c):
        d = next(x for x in (devs_c + devs_p) if x.kind == name)
        tip = d.discs[0][0] if d.discs else d.tip
        side = "right" if tip[0] < -8 else ("left" if tip[0] > 8 else "bilateral")
        s = -1 if side == "right" else 1
        zone = _zone(np.clip((p.z_top[s] - tip[2]) / (p.z_top[s] - p.z_bot[s]), 0, 0.999))
        change = "new" if name not in names_p else ("resolved" if name not in names_c else "stable")
        out.append({"finding": "support_device", "side": side, "zone": zone, "change": change,
                    "size_mm_prior": None, "size_mm_current": None, "urgent": False})
    return out


def _acq(rng, view: str = "PA", inplane: float | None = None, mirrored: bool = False) -> Acq:
    """One site's acquisition: detector, geometry, exposure, processing, storage."""
    cr = rng.random() < (0.55 if view == "AP" else 0.35)
    a = Acq(view=view, modality="CR" if cr else "DX")
    fw, fh = rng.uniform(400, 430), rng.uniform(410, 430)
    if view == "AP":
        fw, fh = rng.uniform(390, 430), rng.uniform(405, 430)
    lo = max(0.10, fw / 3000, fh / 3000)
    hi = min(0.20, fw / 1700, fh / 1700)
    a.spacing = float(np.round(rng.uniform(lo, hi), 3))
    a.cols, a.rows = int(round(fw / a.spacing)), int(round(fh / a.spacing))
    a.cols = min(max(a.cols, 1700), 3000); a.rows = min(max(a.rows, 1700), 3000)
    if view == "AP":
        a.sid, a.gap = rng.uniform(950, 1100), rng.uniform(20, 60)
        a.kvp = rng.uniform(80, 95)
        a.grid = rng.random() < 0.3
        a.insp = rng.uniform(-12, 2)
        a.roll = rng.uniform(-4, 4)
        a.sigma0 = rng.uniform(0.006, 0.01)
        a.texts = ["PORTABLE", "AP " + ("SEMI-ERECT" if rng.random() < 0.6 else "ERECT")]
        a.marker = "R" if rng.random() < 0.5 else "L"
    else:
        a.sid, a.gap = rng.uniform(1500, 2000), rng.uniform(15, 60)
        a.kvp = rng.uniform(110, 125) if view == "PA" else rng.uniform(115, 130)
        a.grid = rng.random() < 0.75
        a.insp = rng.uniform(-12, 12)
        a.roll = rng.uniform(-3, 3)
        a.sigma0 = rng.uniform(0.0035, 0.0065)
        a.texts = [] if rng.random() < 0.5 else [view if view == "PA" else "LAT"]
        a.marker = "L" if rng.random() < 0.75 else ""
    a.inplane = rng.uniform(-2.5, 2.5) if inplane is None else inplane
    a.tilt = rng.uniform(-3, 3) if view != "AP" else -rng.uniform(3, 7)   # AP: lordotic, clavicles project higher
    a.shift = (rng.uniform(-15, 15), rng.uniform(-15, 15))
    a.spr = rng.uniform(0.25, 0.5) if a.grid else rng.uniform(0.9, 1.6)
    a.grid_period = rng.uniform(2.2, 9.0)
    a.grid_amp = rng.uniform(0.004, 0.012)
    a.grid_dir = int(rng.random() < 0.8)
    a.heel = rng.uniform(-0.08, 0.08)
    a.c_base, a.c_band, a.c_det = rng.uniform(0.3, 0.7), rng.uniform(0.9, 1.4), rng.uniform(1.0, 2.0)
    a.lut = ("sigmoid", "gamma", "linear")[int(rng.integers(3))]
    a.lut_k = rng.uniform(4, 8) if a.lut == "sigmoid" else rng.uniform(0.75, 1.35)
    a.bits = int(rng.integers(12, 16))
    a.mono1 = rng.random() < MONO1_FRACTION
    a.rle = rng.random() < RLE_FRACTION
    a.mirrored = mirrored
    a.coll = tuple(float(x) for x in (rng.uniform(0, 12, 4) * (rng.random(4) < 0.5)))
    a.site = f"{'CR' if cr else 'DR'} {int(rng.integers(1, 9))}"
    if rng.random() < 0.4:
        a.texts = a.texts + [a.site]
    return a


def _describe(a: Acq) -> str:
    bits = [a.view + (" portable" if a.view == "AP" else ""), "CR" if a.modality == "CR" else "DR",
            f"{a.spacing:.3f}mm {a.cols}x{a.rows}", "MONOCHROME1" if a.mono1 else "MONOCHROME2",
            "RLE" if a.rle else "native", f"insp {a.insp:+.0f}mm", f"roll {a.roll:+.1f}deg",
            f"rot {a.inplane:+.1f}deg", f"{a.kvp:.0f}kVp", f"LUT {a.lut}"]
    if a.grid:
        bits.append("grid lines")
    if a.mirrored:
        bits.append("stored mirrored (R\\F)")
    if a.texts:
        bits.append("text " + "/".join(a.texts))
    return ", ".join(bits)


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------
def _write_dicom(path: Path, arr: np.ndarray, meta: dict, acq: Acq, pat: dict, date: _dt.date,
                 uid_seed: list) -> None:
    def uid(tag: str) -> str:
        return generate_uid(entropy_srcs=[str(x) for x in uid_seed] + [tag])

    cr = acq.modality == "CR"
    sop_class = "1.2.840.10008.5.1.4.1.1.1" if cr else "1.2.840.10008.5.1.4.1.1.1.1"
    ds = Dataset()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = uid("sop")
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = pat["time"]
    ds.AccessionNumber = pat["acc"]
    ds.Modality = "CR" if cr else "DX"
    ds.Manufacturer = "SDFPHANTOM"
    ds.InstitutionName = "SYNTHETIC " + acq.site
    ds.ReferringPhysicianName = ""
    ds.StationName = acq.site.replace(" ", "")
    ds.StudyDescription = "CHEST " + ("PORTABLE" if acq.view == "AP" else acq.view)
    ds.SeriesDescription = ds.StudyDescription
    ds.PatientName = pat["name"]
    ds.PatientID = pat["id"]
    ds.PatientBirthDate = pat["birth"]
    ds.PatientSex = pat["sex"]
    ds.BodyPartExamined = "CHEST"
    ds.KVP = f"{acq.kvp:.0f}"
    ds.DistanceSourceToDetector = f"{acq.sid:.1f}"
    ds.DistanceSourceToPatient = f"{acq.sid / meta['M_mid']:.1f}"
    ds.EstimatedRadiographicMagnificationFactor = f"{meta['M_mid']:.4f}"
    ds.ImagerPixelSpacing = [f"{acq.spacing:.4f}", f"{acq.spacing:.4f}"]
    ps = acq.spacing / meta["M_mid"]
    ds.PixelSpacing = [f"{ps:.5f}", f"{ps:.5f}"]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "mid-chest plane from source distances"
    ds.Grid = "FOCUSED" if acq.grid else "NONE"
    ds.ViewPosition = acq.view
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = pat["acc"][-6:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if acq.view == "LL":
        ds.PatientOrientation = ["P", "F"]
    else:
        ds.PatientOrientation = ["R", "F"] if acq.mirrored else ["L", "F"]
    ds.ImageLaterality = "U"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if acq.mono1 else "MONOCHROME2"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = acq.bits
    ds.HighBit = acq.bits - 1
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES" if acq.texts else "NO"
    ds.LossyImageCompression = "00"
    ds.WindowCenter = f"{meta['wc']:.0f}"
    ds.WindowWidth = f"{meta['ww']:.0f}"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if acq.mono1 else "IDENTITY"
    if not cr:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if acq.mono1 else -1
        ds.DetectorType = "SCINTILLATOR"
        ds.AcquisitionContextSequence = Sequence([])
        ds.AnatomicRegionSequence = Sequence([_code("51185008", "SCT", "Chest")])
        ds.DetectorID = acq.site.replace(" ", "")
        ds.PositionerType = ""
        ds.ViewCodeSequence = Sequence([_code(*VIEW_CODES[acq.view])])
        ds.DetectorBinning = [1.0, 1.0]
    else:
        ds.PlateType = "STANDARD"
    ds.PixelData = arr.tobytes()
    if acq.rle:
        _register_rle()
        ds.compress(RLELossless, arr, encoding_plugin="sdfphantom", generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


VIEW_CODES = {"PA": ("399348003", "SCT", "postero-anterior"), "AP": ("399182007", "SCT", "antero-posterior"),
              "LL": ("399173006", "SCT", "left lateral")}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


# ----------------------------------------------------------------------------------------------
# Pair assembly and the public API
# ----------------------------------------------------------------------------------------------
def _case_list(rng, n: int, cases: dict | None) -> list:
    cases = dict(cases or {})
    bad = set(cases) - set(SAFETY_CASES) - {c for c, _ in DEFAULT_MIX}
    if bad:
        raise ValueError(f"unknown cases: {sorted(bad)}")
    out = []
    for name in list(SAFETY_CASES) + [c for c, _ in DEFAULT_MIX]:
        out += [name] * int(cases.get(name, 0))
    rest = n - len(out)
    if rest < 0:
        raise ValueError("cases ask for more pairs than n_pairs")
    counts = [int(math.floor(rest * w)) for _, w in DEFAULT_MIX]
    for i in range(rest - sum(counts)):
        counts[i % len(counts)] += 1
    for (name, _), c in zip(DEFAULT_MIX, counts):
        out += [name] * c
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def make_pair(out_dir: Path, seed: int, index: int, case: str) -> dict:
    """Build, render and write one pair; return its labels.jsonl record."""
    rng = np.random.default_rng([seed, index, 7])
    pair_id = f"g-{index:04d}"
    person = _make_person(rng)
    lesions = _plan_findings(person, rng, case)
    view_p = view_c = "PA"
    inplane_c = None
    mir_p = mir_c = False
    if case == "lateral":
        view_p = view_c = "LL"
    elif case == "ap_vs_pa":
        view_c = "AP"
    elif case == "rotated":
        inplane_c = float(rng.choice([-1, 1]) * rng.uniform(8, 12))
    elif case == "mirrored":
        mir_c = True
        mir_p = rng.random() < 0.35
    acq_p = _acq(rng, view_p, mirrored=mir_p)
    acq_c = _acq(rng, view_c, inplane=inplane_c, mirrored=mir_c)
    if case == "rotated":
        acq_c.shift = (0.0, 0.0)
    devs_p, devs_c, moved = [], [], set()
    if case == "devices_only":
        pool = ["ETT", "NG", "CVC", "ECG", "drain"]
        base = [pool[i] for i in sorted(rng.choice(5, int(rng.integers(0, 3)), replace=False))]
        extra = [x for x in pool if x not in base]
        add = [extra[i] for i in sorted(rng.choice(len(extra), int(rng.integers(1, 3)), replace=False))]
        devs_p = _devices(person, np.random.default_rng([seed, index, 11]), base)
        jit = rng.uniform(15, 30) if base and rng.random() < 0.5 else 0.0
        devs_c = _devices(person, np.random.default_rng([seed, index, 11]), base, jitter=jit) + \
            _devices(person, np.random.default_rng([seed, index, 12]), add)
        if jit:
            moved = {d.kind for d in devs_p}
    elif case == "ap_vs_pa" and rng.random() < 0.5:
        devs_c = _devices(person, np.random.default_rng([seed, index, 11]), ["ECG"])
    prior_person = person
    if case == "other_person":
        prior_person = _make_person(np.random.default_rng([seed, index, 99]), sex=person.sex)
    d_cur = _dt.date(2025, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 700)))
    d_pri = d_cur - _dt.timedelta(days=int(rng.integers(30, 701)))
    birth = _dt.date(d_cur.year - person.age, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    pid = f"SDF{seed % 100000:05d}{index:05d}"
    pat = {"id": pid, "name": f"SDF^{seed % 100000:05d}^{index:05d}", "birth": birth.strftime("%Y%m%d"),
           "sex": person.sex}
    pdir = out_dir / pair_id
    pdir.mkdir(parents=True, exist_ok=True)
    for t, (who, acq, devs, date, name) in enumerate(((prior_person, acq_p, devs_p, d_pri, "prior"),
                                                       (person, acq_c, devs_c, d_cur, "current"))):
        les_t = lesions if who is person else []
        arr, meta = render(who, les_t, devs, t, acq, np.random.default_rng([seed, index, 20 + t]))
        pat_t = dict(pat, time=f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}00",
                     acc=f"A{seed % 10000:04d}{index:05d}{t}")
        _write_dicom(pdir / f"{name}.dcm", arr, meta, acq, pat_t, date, [seed, index, name])
    findings = [_finding_dict(l) for l in lesions] + _device_findings(person, devs_p, devs_c, moved)
    expect = "not_compared" if case in ("lateral", "other_person") else "compare"
    notes = f"prior: {_describe(acq_p)}; current: {_describe(acq_c)}"
    if case == "other_person":
        notes += "; prior is a different body (same PatientID), both without findings"
    if case == "devices_only":
        notes += "; devices only, no disease change" + (f"; moved {sorted(moved)}" if moved else "")
    return {"pair_id": pair_id, "generator": GENERATOR, "seed": seed, "case": case,
            "prior": f"{pair_id}/prior.dcm", "current": f"{pair_id}/current.dcm", "expect": expect,
            "findings": findings, "notes": notes}


def generate(out_dir: Path, *, seed: int, n_pairs: int, cases: dict[str, int] | None = None) -> Path:
    """Write n_pairs pairs and labels.jsonl under out_dir; deterministic per seed. Returns the labels path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = _case_list(np.random.default_rng([seed, 1]), n_pairs, cases)
    records = [make_pair(out_dir, seed, i, case) for i, case in enumerate(order)]
    labels = out_dir / "labels.jsonl"
    labels.write_text("".join(json.dumps(r, sort_keys=False) + "\n" for r in records))
    return labels


def _parse_cases(text: str | None) -> dict | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        out[name.strip()] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", default=None, help="e.g. mirrored=5,lateral=5")
    a = ap.parse_args(argv)
    path = generate(a.out, seed=a.seed, n_pairs=a.n, cases=_parse_cases(a.cases))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
