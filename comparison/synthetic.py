"""Longitudinal chest CR pairs with known ground truth, built from one real radiograph.

The base is pydicom-data's real chest CR `RG1_UNCR.dcm` (1955 x 1841, 15 bits stored,
MONOCHROME1: higher stored values are more lucent). A lesion is drawn into the anatomy in
stored-value space (an opacity lowers the value by an attenuation map; a pneumothorax
replaces lung markings by a smooth, more lucent field behind a thin pleural line), at a
severity for the prior and one for the current. The current then gets realistic nuisance:
a small rotation, shift and scale, an exposure (gain, offset, gamma) change and noise.
Optionally the current is written on another matrix (`matrix`: another
size and pixel spacing, as from another detector). Both are written as uncompressed 15-bit CR DICOM files with their own patient, study,
series and SOP identifiers; the prior's StudyDate is `interval_days` before the current's.

Simplifications (documented, deliberate): the same anatomy for every patient; a
pneumothorax removes all texture in its crescent (ribs included); no inspiration change.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import ndimage as ndi

from comparison._anatomy import LungFields, segment_lungs
from priorwatch.vocabulary import APPEARING, Change, FindingType, Side, Zone

__all__ = ["PairSpec", "Nuisance", "make_pair", "demo_cases", "BASE_FILE", "LESIONS", "CHANGES", "BASE_SPACING_MM"]

BASE_FILE = "RG1_UNCR.dcm"
BASE_SPACING_MM = 0.2  # assumed detector pitch of the base (its PixelSpacing is 0\0)
LESIONS = (FindingType.nodule, FindingType.mass, FindingType.consolidation, FindingType.effusion, FindingType.pneumothorax)
CHANGES = (Change.new, Change.worsened, Change.stable, Change.improved, Change.resolved)
ISSUER = "PRIORWATCH-SYNTH"
_MAXV = 2**15 - 1

# (prior, current) severity per change; 0 = absent.
_SEVERITY = {
    Change.new: (0.0, 1.0),
    Change.worsened: (0.55, 1.0),
    Change.stable: (1.0, 1.0),
    Change.improved: (1.0, 0.5),
    Change.resolved: (1.0, 0.0),
}


@dataclass(frozen=True)
class Nuisance:
    """What differs between prior and current apart from the lesion."""

    rotation_deg: float = 0.0
    shift_px: tuple[float, float] = (0.0, 0.0)  # (rows, cols) at the written resolution
    scale: float = 1.0
    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0
    noise_sd: float = 0.0  # stored-value units

    @classmethod
    def random(cls, rng: np.random.Generator, strength: float = 1.0) -> "Nuisance":
        s = strength
        return cls(
            rotation_deg=float(rng.uniform(-3, 3) * s),
            shift_px=(float(rng.uniform(-12, 12) * s), float(rng.uniform(-12, 12) * s)),
            scale=float(1 + rng.uniform(-0.03, 0.03) * s),
            gain=float(1 + rng.uniform(-0.07, 0.07) * s),
            offset=float(rng.uniform(-800, 800) * s),
            gamma=float(1 + rng.uniform(-0.1, 0.1) * s),
            noise_sd=float(rng.uniform(80, 250) * s),
        )


@dataclass(frozen=True)
class PairSpec:
    """One simulated patient: files to send and the ground truth to score against."""

    patient_id: str
    accession: str  # the current study's AccessionNumber
    current_paths: tuple[Path, ...]
    prior_paths: tuple[Path, ...]  # empty when the patient has no prior
    current_study_uid: str
    prior_study_uid: str | None
    prior_accession: str | None
    lesion: FindingType | None  # None: no lesion at all
    change: Change  # no_prior when there is no prior
    side: Side | None
    zone: Zone | None
    urgent: bool  # what an engine should flag
    interval_days: int | None
    seed: int
    large: bool = False  # an effusion large enough to be urgent when new
    nuisance: Nuisance = field(default_factory=Nuisance)

    @property
    def has_prior(self) -> bool:
        return bool(self.prior_paths)


# Base image and anatomy --------------------------------------------------------------


@lru_cache(maxsize=1)
def _base_dataset() -> Dataset:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(BASE_FILE)
    if path is None:
        raise FileNotFoundError(f"pydicom-data does not provide {BASE_FILE}")
    return pydicom.dcmread(path)


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize((w, h), Image.Resampling.BOX if h < a.shape[0] else Image.Resampling.BILINEAR), np.float32)


@lru_cache(maxsize=4)
def _base(scale: float, person: int = 0) -> tuple[np.ndarray, LungFields]:
    """The base chest at `scale`; `person` > 0: another person's chest made from it (`_other_person`)."""
    if person:
        img0, lungs0 = _base(scale, 0)
        return _other_person(img0, lungs0, person, BASE_SPACING_MM / scale)
    ds = _base_dataset()
    raw = ds.pixel_array.astype(np.float32)
    h, w = (int(round(raw.shape[0] * scale)), int(round(raw.shape[1] * scale))) if scale != 1 else raw.shape
    img = _resize(raw, h, w) if (h, w) != raw.shape else raw
    # Lungs are found on a display-sense copy (window 15000/30000, MONOCHROME1 inverted).
    small = _resize(1.0 - np.clip(raw / 30000.0, 0, 1), 256, int(round(256 * raw.shape[1] / raw.shape[0])))
    lf = segment_lungs(small)
    up = lambda m: _resize(m.astype(np.float32), h, w) > 0.5  # noqa: E731
    fields = LungFields(right=up(lf.right), left=up(lf.left), midline=lf.midline * w / small.shape[1], template=lf.template)
    img.setflags(write=False)
    return img, fields


def _other_person(img: np.ndarray, lungs: LungFields, person: int, px_mm: float) -> tuple[np.ndarray, LungFields]:
    """Another person's chest from the one real base: the anatomy bent by a smooth random
    displacement (up to ~14 mm over ~5 cm: ribs, vessels and the lung outline move against each
    other, which no affine registration undoes) and each lung widened or narrowed on its own."""
    rng = np.random.default_rng(1_000_003 * person)
    h, w = img.shape
    disp = []
    for _ in range(2):
        f = ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 35.0 / px_mm)
        disp.append(f / (np.abs(f).max() + 1e-9) * rng.uniform(10.0, 14.0) / px_mm)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mid = lungs.midline
    width = np.where(xx < mid, rng.uniform(0.88, 1.12), rng.uniform(0.88, 1.12)).astype(np.float32)
    src_x = mid + (xx - mid) / width + disp[1]
    src_y = yy * rng.uniform(0.94, 1.06) + disp[0]
    coords = np.stack([src_y, src_x])
    out = ndi.map_coordinates(img, coords, order=1, mode="nearest").astype(np.float32)
    warp = lambda m: ndi.map_coordinates(m.astype(np.float32), coords, order=1, mode="constant") > 0.5  # noqa: E731
    out.setflags(write=False)
    return out, LungFields(right=warp(lungs.right), left=warp(lungs.left), midline=mid, template=lungs.template)


def _central_line(shape: tuple[int, int], lungs: LungFields, px_mm: float) -> np.ndarray:
    """Attenuation map of a central venous line (a thin, very dense tube): from under the right
    clavicle, medially and down the right side of the mediastinum to the cavoatrial junction."""
    top, bottom = lungs.extent(Side.right)
    hgt = bottom - top
    cols = np.nonzero(lungs.right.any(axis=0))[0]
    lat, med = float(cols[0]), float(cols[-1])
    wid = med - lat
    p0 = np.array([top + 0.04 * hgt, lat + 0.3 * wid])
    p1 = np.array([top + 0.02 * hgt, med + 0.05 * wid])
    p2 = np.array([top + 0.5 * hgt, med - 0.02 * wid])
    t = np.linspace(0.0, 1.0, 800)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # a quadratic Bezier curve
    m = np.zeros(shape, bool)
    r = np.clip(np.rint(pts).astype(int), 0, np.array(shape) - 1)
    m[r[:, 0], r[:, 1]] = True
    tube = ndi.distance_transform_edt(~m) <= 1.2 / px_mm  # ~2.5 mm across
    return 9000.0 * ndi.gaussian_filter(tube.astype(np.float32), 0.3 / px_mm)


# Lesions -------------------------------------------------------------------------------


def _zone_rows(lungs: LungFields, side: Side, zone: Zone) -> tuple[float, float]:
    top, bottom = lungs.extent(side)
    k = {Zone.upper: 0, Zone.middle: 1, Zone.lower: 2}[zone]
    third = (bottom - top) / 3.0
    return top + k * third, top + (k + 1) * third


def _place(lungs: LungFields, side: Side, zone: Zone, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    """A centre in the zone band of that lung, the lesion's radius inside the lung if it can be."""
    m = lungs.mask(side)
    inner = ndi.binary_erosion(m, iterations=max(1, int(radius * 0.8))) if radius > 2 else m
    r0, r1 = _zone_rows(lungs, side, zone)
    lo, hi = r0 + 0.3 * (r1 - r0), r0 + 0.7 * (r1 - r0)
    for attempt in range(2):
        ok = inner if attempt == 0 else m
        rows = np.arange(int(lo), int(hi) + 1)
        pts = [(r, c) for r in rows[:: max(1, len(rows) // 12)] for c in np.nonzero(ok[r])[0][::4]] if rows.size else []
        if pts:
            # prefer the middle of the lung's width at that height
            r, _ = pts[int(rng.integers(len(pts)))]
            cols = np.nonzero(ok[r])[0]
            c = cols[int(len(cols) * rng.uniform(0.35, 0.65))]
            return float(r), float(c)
    ys, xs = np.nonzero(m)
    return float(ys.mean()), float(xs.mean())


def _sphere(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / max(r, 1e-3) ** 2
    return np.sqrt(np.clip(1.0 - d2, 0.0, 1.0)).astype(np.float32)


def _opacity(kind: FindingType, sev: float, shape: tuple[int, int], lungs: LungFields, side: Side,
             centre: tuple[float, float], px_mm: float, geom_rng: np.random.Generator) -> np.ndarray:
    """Attenuation map (stored-value units, >= 0) for an opacity at severity `sev`."""
    if sev <= 0:
        return np.zeros(shape, np.float32)
    cy, cx = centre
    g = np.random.default_rng(geom_rng.integers(1 << 31))  # same geometry for prior and current
    if kind == FindingType.nodule:
        r = (g.uniform(7, 10) / px_mm) * sev
        return 3200.0 * _sphere(shape, cy, cx, r)
    if kind == FindingType.mass:
        r = (g.uniform(21, 27) / px_mm) * sev
        t = _sphere(shape, cy, cx, r)
        for _ in range(2):  # lobulation
            a = g.uniform(0, 2 * np.pi)
            t = np.maximum(t, 0.9 * _sphere(shape, cy + 0.45 * r * np.sin(a), cx + 0.45 * r * np.cos(a), 0.7 * r))
        return 3600.0 * t
    if kind == FindingType.consolidation:
        R = g.uniform(24, 32) / px_mm
        yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
        ell = ((yy - cy) / (1.15 * R)) ** 2 + ((xx - cx) / (0.9 * R)) ** 2
        field_ = ndi.gaussian_filter(g.standard_normal(shape).astype(np.float32), R / 4)
        field_ /= field_.std() + 1e-6
        level = (1.0 - ell) * 1.3 + 1.0 * field_  # patchy, irregular, in several confluent islands
        t = np.clip((level - 0.3 - (1.0 - sev) * 1.0) / 0.6, 0.0, 1.0) * (ell < 2.2)
        mottle = 0.75 + 0.25 * ndi.gaussian_filter(g.standard_normal(shape).astype(np.float32), 3.0 / px_mm * 0.5)
        t = ndi.gaussian_filter(t * mottle, 1.5 / px_mm) * lungs.mask(side)
        return 2600.0 * t.astype(np.float32)
    if kind == FindingType.effusion:
        # Fluid fills the costophrenic recess: from a meniscus (higher laterally) down past
        # the lung base over the hemidiaphragm, across that hemithorax's width.
        m = lungs.mask(side)
        top, bottom = lungs.extent(side)
        h = bottom - top
        height = 0.30 * h * sev
        cols = np.nonzero(m.any(axis=0))[0]
        medial, lateral = (cols[-1], cols[0]) if side == Side.right else (cols[0], cols[-1])
        span = max(1.0, abs(lateral - medial))
        xs = np.arange(shape[1], dtype=np.float32)
        lat = np.clip(np.abs(xs - medial) / span, 0, 1)
        inside = ((xs >= cols[0] - 0.03 * span) & (xs <= cols[-1] + 0.03 * span)).astype(np.float32)
        surface = bottom - height * (0.35 + 0.65 * lat)  # meniscus: higher laterally
        yy = np.arange(shape[0], dtype=np.float32)[:, None]
        t = np.clip((yy - surface[None, :]) / (0.25 * height + 1e-3), 0.0, 1.0)
        t *= (yy < bottom + 0.35 * h) * inside[None, :]
        t *= (0.55 + 0.45 * lat)[None, :]  # thinner medially, against the heart
        return 4200.0 * ndi.gaussian_filter(t.astype(np.float32), 3.0 / px_mm)
    raise ValueError(f"not an opacity: {kind}")


def _pneumothorax(img: np.ndarray, sev: float, lungs: LungFields, side: Side, px_mm: float) -> np.ndarray:
    """Apical/lateral crescent without lung markings, more lucent, behind a thin pleural line."""
    if sev <= 0:
        return img
    m = lungs.mask(side)
    top, bottom = lungs.extent(side)
    h = bottom - top
    hilum_r = top + 0.45 * h
    row_cols = np.nonzero(m[int(hilum_r)])[0]
    hilum_c = float(row_cols[-1] if side == Side.right else row_cols[0]) if row_cols.size else float(np.nonzero(m)[1].mean())
    f = 1.0 - 0.28 * sev  # collapsed lung = lung scaled about the hilum
    collapsed = ndi.affine_transform(m.astype(np.float32), np.array([1 / f, 1 / f]),
                                     offset=np.array([hilum_r, hilum_c]) * (1 - 1 / f), order=1) > 0.5
    gap = m & ~collapsed
    yy, xx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    lateral = (xx < hilum_c) if side == Side.right else (xx > hilum_c)
    gap &= lateral & (yy < hilum_r + 0.1 * h)
    w = ndi.gaussian_filter(gap.astype(np.float32), 1.0 / px_mm)
    smooth = ndi.gaussian_filter(img, 12.0 / px_mm)
    out = img * (1 - w) + (smooth + 1800.0) * w
    line = ndi.binary_dilation(gap, iterations=max(1, int(round(0.8 / px_mm)))) & collapsed
    out -= 1400.0 * ndi.gaussian_filter(line.astype(np.float32), 0.4 / px_mm)
    return out.astype(np.float32)


def _render(base: np.ndarray, lungs: LungFields, lesion: FindingType | None, sev: float, side: Side, zone: Zone,
            centre: tuple[float, float], px_mm: float, seed: int) -> np.ndarray:
    img = base.astype(np.float32).copy()
    if lesion is None or sev <= 0:
        return img
    if lesion == FindingType.pneumothorax:
        return _pneumothorax(img, sev, lungs, side, px_mm)
    return img - _opacity(lesion, sev, img.shape, lungs, side, centre, px_mm, np.random.default_rng(seed))


def _apply_nuisance(img: np.ndarray, n: Nuisance, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    a = np.deg2rad(n.rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * n.scale
    inv = np.linalg.inv(rot)
    c = np.array([h / 2.0, w / 2.0])
    offset = c - inv @ (c + np.array(n.shift_px))
    out = ndi.affine_transform(img, inv, offset=offset, order=1, mode="nearest")
    u = np.clip(out / _MAXV, 0, 1) ** n.gamma
    out = u * _MAXV * n.gain + n.offset
    if n.noise_sd > 0:
        out = out + rng.normal(0.0, n.noise_sd, out.shape)
    return out


# Writing -------------------------------------------------------------------------------


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _write(path: Path, pixels: np.ndarray, *, patient_id: str, sex: str, birth: str, accession: str,
           study_date: dt.date, study_uid: str, series_uid: str, sop_uid: str, spacing_mm: float, desc: str) -> Path:
    base = _base_dataset()
    ds = copy.deepcopy(base)
    arr = np.clip(np.rint(pixels), 0, _MAXV).astype(np.uint16)
    for kw in ("OtherPatientIDs", "InstanceCreatorUID", "ReferringPhysicianName", "InstitutionName",
               "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "ImageComments"):
        if kw in ds:
            delattr(ds, kw)
    d = study_date.strftime("%Y%m%d")
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = ISSUER
    ds.PatientSex = sex
    ds.PatientBirthDate = birth
    ds.AccessionNumber = accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = d
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = "101500"
    ds.StudyID = accession[-16:]
    ds.StudyDescription = "XR CHEST PA"
    ds.SeriesDescription = desc
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 14, 0
    ds.PixelSpacing = ds.ImagerPixelSpacing = [f"{spacing_mm:.4f}", f"{spacing_mm:.4f}"]
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _truth_terms(lesion: FindingType | str | None, change: Change | str, side: Side | str, zone: Zone | str,
                 with_prior: bool) -> tuple[FindingType | None, Change, Side, Zone, bool]:
    """make_pair's arguments as vocabulary: "none" is no lesion, an effusion sits in the lower
    zone, a no_prior change is a new lesion written without a prior."""
    les = None if lesion in (None, "none", "") else FindingType(lesion)  # type: ignore[arg-type]
    chg = Change(change)
    sd, zn = Side(side), Zone(zone)
    if les == FindingType.effusion:
        zn = Zone.lower
    if chg == Change.no_prior:
        with_prior, chg = False, Change.new
    return les, chg, sd, zn, with_prior


def _lesion_radius(les: FindingType | None, px_mm: float) -> float:
    """How far from the lung's edge a lesion's centre is placed (pixels): 12 mm for a nodule, else 30 mm."""
    return 12.0 / px_mm if les in (FindingType.nodule, None) else 30.0 / px_mm


def _pair_key(patient_id: str, seed: int, les: FindingType | None, chg: Change, sd: Side, zn: Zone,
              with_prior: bool, scale: float, today: dt.date, matrix: float, prior_person: int,
              current_device: bool) -> tuple[object, ...]:
    """What the pair's UIDs and accession numbers are derived from. Options at their defaults
    add nothing, so the UIDs of pairs written before they existed do not change."""
    key: tuple[object, ...] = (patient_id, seed, les, chg, sd, zn, with_prior, scale, today.isoformat())
    if abs(matrix - 1.0) > 1e-6:
        key += (matrix,)
    if prior_person or current_device:
        key += (prior_person, current_device)
    return key


def _urgent(les: FindingType | None, chg: Change, large: bool) -> bool:
    """What an engine should flag for this pair (DESIGN.md's urgent rule, with a prior)."""
    return les is not None and (
        (les == FindingType.pneumothorax and chg in APPEARING)
        or (les == FindingType.effusion and chg == Change.new and large)
    )


def _acquire_current(cur: np.ndarray, lungs: LungFields, px_mm: float, device: bool, nz: Nuisance,
                     rng: np.random.Generator, matrix: float) -> tuple[np.ndarray, float]:
    """The current's acquisition: an optional central line, the nuisance (pose, exposure, noise),
    and another detector grid when `matrix` != 1; (pixels, their spacing in mm)."""
    if device:
        cur = cur - _central_line(cur.shape, lungs, px_mm)  # MONOCHROME1 stored values: denser is lower
    cur = _apply_nuisance(cur, nz, rng)
    cur_mm = px_mm
    if abs(matrix - 1.0) > 1e-6:
        cur = _resize(cur, max(16, int(round(cur.shape[0] * matrix))), max(16, int(round(cur.shape[1] * matrix))))
        cur_mm = px_mm / matrix
    return cur, cur_mm


def _write_prior(path: Path, pri: np.ndarray, key: tuple[object, ...], patient_id: str, sex: str, birth: str,
                 study_date: dt.date, px_mm: float, seed: int) -> tuple[str, str, tuple[Path, ...]]:
    """Add the prior's own noise and write the prior study; (its StudyInstanceUID, its AccessionNumber, its paths)."""
    pri = pri + np.random.default_rng(seed + 7919).normal(0.0, 80.0, pri.shape)
    prior_uid = _uid(*key, "study-prior")
    prior_acc = "P" + _uid(*key, "acc-prior").split(".")[-1][-10:]
    paths = (_write(path, pri, patient_id=patient_id, sex=sex, birth=birth, accession=prior_acc,
                    study_date=study_date, study_uid=prior_uid, series_uid=_uid(*key, "series-prior"),
                    sop_uid=_uid(*key, "sop-prior"), spacing_mm=px_mm, desc="PA"),)
    return prior_uid, prior_acc, paths


def make_pair(
    out_dir: str | Path,
    patient_id: str,
    lesion: FindingType | str | None = FindingType.nodule,
    change: Change | str = Change.new,
    side: Side | str = Side.right,
    zone: Zone | str = Zone.upper,
    seed: int = 0,
    *,
    with_prior: bool = True,
    interval_days: int = 180,
    current_date: dt.date | None = None,
    nuisance: Nuisance | None = None,
    nuisance_strength: float = 1.0,
    scale: float = 0.5,
    matrix: float = 1.0,
    sex: str = "F",
    birth_date: str = "19500101",
    prior_person: int = 0,
    current_device: bool = False,
) -> PairSpec:
    """Write a prior and a current study for one patient and return the ground truth.

    `lesion` None (or "none") draws no lesion: with `change` stable that is a pair that
    differs only by pose, exposure and noise. Without a prior (`with_prior=False`) only the
    current is written (with the lesion at its current severity) and the change is no_prior.
    Effusions sit in the lower zone; `nuisance` defaults to a random one from `seed`.
    `matrix` != 1 writes the current on another detector grid: its matrix is `matrix` times
    the prior's and its PixelSpacing is divided by `matrix` (same anatomy in millimetres).
    `prior_person` > 0 draws the prior from another person's chest (`_other_person`) under the
    same patient identifiers (a misfiled prior); `current_device` adds a central venous line to
    the current (a device, not a disease change; the ground truth's lesion is unchanged).
    """
    if not 0.25 <= matrix <= 4.0:
        raise ValueError(f"matrix must be within 0.25..4, not {matrix}")
    out = Path(out_dir)
    les, chg, sd, zn, with_prior = _truth_terms(lesion, change, side, zone, with_prior)
    rng = np.random.default_rng(seed)
    base, lungs = _base(scale)
    px_mm = BASE_SPACING_MM / scale
    sev_prior, sev_cur = _SEVERITY[chg]
    if les is None:
        sev_prior = sev_cur = 0.0
    centre = _place(lungs, sd, zn, _lesion_radius(les, px_mm), rng)
    geom_seed = int(rng.integers(1 << 31))
    nz = nuisance if nuisance is not None else Nuisance.random(rng, nuisance_strength)
    cur = _render(base, lungs, les, sev_cur, sd, zn, centre, px_mm, geom_seed)
    cur, cur_mm = _acquire_current(cur, lungs, px_mm, current_device, nz, rng, matrix)
    today = current_date or dt.date.today()
    key = _pair_key(patient_id, seed, les, chg, sd, zn, with_prior, scale, today, matrix, prior_person, current_device)
    acc = "A" + _uid(*key, "acc").split(".")[-1][-10:]
    cur_uid = _uid(*key, "study-cur")
    cur_path = _write(out / patient_id / "current.dcm", cur, patient_id=patient_id, sex=sex, birth=birth_date,
                      accession=acc, study_date=today, study_uid=cur_uid, series_uid=_uid(*key, "series-cur"),
                      sop_uid=_uid(*key, "sop-cur"), spacing_mm=cur_mm, desc="PA")
    prior_paths: tuple[Path, ...] = ()
    prior_uid = prior_acc = None
    if with_prior:
        if prior_person:  # another person's chest under this patient's identifiers
            base_p, lungs_p = _base(scale, prior_person)
            centre_p = _place(lungs_p, sd, zn, _lesion_radius(les, px_mm), np.random.default_rng(seed + 1))
            pri = _render(base_p, lungs_p, les, sev_prior, sd, zn, centre_p, px_mm, geom_seed)
        else:
            pri = _render(base, lungs, les, sev_prior, sd, zn, centre, px_mm, geom_seed)
        prior_uid, prior_acc, prior_paths = _write_prior(out / patient_id / "prior.dcm", pri, key, patient_id, sex,
                                                         birth_date, today - dt.timedelta(days=interval_days), px_mm, seed)
    gt_change = chg if with_prior else Change.no_prior
    large = les == FindingType.effusion and sev_cur >= 1.0
    urgent = with_prior and _urgent(les, chg, large)
    return PairSpec(
        patient_id=patient_id, accession=acc, current_paths=(cur_path,), prior_paths=prior_paths,
        current_study_uid=cur_uid, prior_study_uid=prior_uid, prior_accession=prior_acc,
        lesion=les if (les is not None and (sev_cur > 0 or sev_prior > 0)) else None,
        change=gt_change, side=sd if les else None, zone=zn if les else None, urgent=urgent,
        interval_days=interval_days if with_prior else None, seed=seed, large=large, nuisance=nz,
    )


def demo_cases(out_dir: str | Path, scale: float = 0.5, current_date: dt.date | None = None) -> list[PairSpec]:
    """Four patients: a new right upper nodule, a new left pneumothorax (urgent), a stable pair
    that differs only by pose and exposure, and a patient with no prior."""
    out = Path(out_dir)
    kw = dict(scale=scale, current_date=current_date)
    return [
        make_pair(out, "PW-DEMO-001", FindingType.nodule, Change.new, Side.right, Zone.upper, seed=11, interval_days=210, **kw),  # type: ignore[arg-type]
        make_pair(out, "PW-DEMO-002", FindingType.pneumothorax, Change.new, Side.left, Zone.upper, seed=22, interval_days=3, sex="M", birth_date="19810612", **kw),  # type: ignore[arg-type]
        make_pair(out, "PW-DEMO-003", None, Change.stable, Side.right, Zone.middle, seed=33, interval_days=365, sex="F", birth_date="19620203", **kw),  # type: ignore[arg-type]
        make_pair(out, "PW-DEMO-004", None, Change.stable, Side.right, Zone.middle, seed=44, with_prior=False, sex="M", birth_date="19770909", **kw),  # type: ignore[arg-type]
    ]
