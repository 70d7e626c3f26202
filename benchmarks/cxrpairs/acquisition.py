"""One study's acquisition: geometry, inspiration, detector response, noise, DICOM header.

The nuisances real pairs have between a prior and a current: a different depth of
inspiration (a NON-rigid change: the diaphragm moves, the apices do not, the lower chest
widens), in-plane rotation, magnification and position, exposure / gamma / detector LUT,
blur, quantum noise and anti-scatter grid lines, matrix size and pixel spacing, MONOCHROME1
storage and a VOI LUT or window in the header.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from scipy.ndimage import gaussian_filter, map_coordinates

from benchmarks.cxrpairs.phantom import Scene

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
UID_ROOT = "1.2.826.0.1.3680043.10.1137."  # a private-looking root for synthetic UIDs

# density range mapped onto the detector's output before its LUT (air .. bone over mediastinum)
DENSITY_LO = -0.02
DENSITY_HI = 1.35


@dataclass(frozen=True)
class Acquisition:
    """Every nuisance parameter of one study (kept in the pair's record)."""

    rows: int
    cols: int
    spacing: float  # mm per pixel at the detector
    rotation_deg: float
    magnification: float
    shift_x: float  # mm
    shift_y: float
    inspiration: float  # lung height relative to the canonical patient (1.0 = same)
    inspiration_tilt: float  # right/left difference of diaphragm excursion (non-rigid)
    chest_expansion: float  # lower-chest lateral widening (non-rigid)
    exposure: float  # shift of the normalised signal
    gain: float
    gamma: float
    lut_slope: float  # 0 = gamma curve, >0 = sigmoid detector LUT of this slope
    noise: float  # density-domain noise std at mid density
    blur_px: float
    grid_amp: float  # anti-scatter grid line amplitude (density units), 0 = none
    grid_period_px: float
    bits: int
    monochrome1: bool
    voi_lut: bool
    modality: str  # CR or DX
    spacing_tag: str  # PixelSpacing or ImagerPixelSpacing
    days: int  # study date offset from the prior

    @classmethod
    def sample(
        cls, rng: np.random.Generator, scale: float = 1.0, strength: float = 1.0, days: int = 0, fov_mm: float = 430.0
    ) -> "Acquisition":
        """A study's nuisances; `scale` shrinks the matrix (CI), `strength` scales pose/tone jitter,
        `fov_mm` caps the field (the real CR background is only ~37 x 39 cm)."""
        spacing = float(rng.uniform(0.16, 0.2))
        fov_r, fov_c = rng.uniform(fov_mm - 70, fov_mm), rng.uniform(fov_mm - 80, fov_mm - 10)
        rows, cols = int(fov_r / spacing * scale), int(fov_c / spacing * scale)
        sp = spacing / scale
        mono1 = bool(rng.random() < 1 / 3)
        return cls(
            rows=rows, cols=cols, spacing=round(sp, 4),
            rotation_deg=float(rng.uniform(-4, 4) * strength),
            magnification=float(1.0 + rng.uniform(-0.04, 0.06) * strength),
            shift_x=float(rng.uniform(-12, 12) * strength), shift_y=float(rng.uniform(-12, 12) * strength),
            inspiration=float(1.0 + rng.uniform(-0.08, 0.08) * strength),
            inspiration_tilt=float(rng.uniform(-0.02, 0.02) * strength),
            chest_expansion=float(rng.uniform(-0.03, 0.03) * strength),
            exposure=float(rng.uniform(-0.06, 0.06) * strength),
            gain=float(1.0 + rng.uniform(-0.12, 0.12) * strength),
            gamma=float(np.exp(rng.uniform(-0.3, 0.3) * strength)),
            lut_slope=float(rng.choice([0.0, rng.uniform(3.0, 6.0)])),
            noise=float(rng.uniform(0.006, 0.014)),
            blur_px=float(rng.uniform(0.4, 1.3)),
            grid_amp=float(rng.choice([0.0, rng.uniform(0.003, 0.008)])),
            grid_period_px=float(rng.uniform(2.2, 5.5)),
            bits=int(rng.integers(12, 16)),
            monochrome1=mono1,
            voi_lut=bool(rng.random() < 0.3),
            modality=str(rng.choice(["CR", "DX"])),
            spacing_tag=str(rng.choice(["PixelSpacing", "ImagerPixelSpacing"])),
            days=days,
        )

    def record(self) -> dict:
        return asdict(self)


def canonical_coords(acq: Acquisition, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """For every output pixel, the canonical (x, y) mm it shows (the inverse of the study's warp).

    Forward warp: inspiration (piecewise-linear vertical stretch between the lung apex and
    base, different per side, plus a lower-chest widening), then rotation, magnification and
    shift. Vertical fractions of lung height are preserved per column by construction.
    """
    r = (np.arange(acq.rows, dtype=np.float32) - (acq.rows - 1) / 2) * acq.spacing
    c = (np.arange(acq.cols, dtype=np.float32) - (acq.cols - 1) / 2) * acq.spacing
    yo, xo = np.meshgrid(r, c, indexing="ij")
    th = np.deg2rad(acq.rotation_deg)
    xs, ys = (xo - acq.shift_x) / acq.magnification, (yo - acq.shift_y) / acq.magnification
    xr = np.cos(th) * xs + np.sin(th) * ys
    yr = -np.sin(th) * xs + np.cos(th) * ys
    top = min(scene.lung_top.values())
    H = max(scene.lung_bottom.values()) - top
    k = acq.inspiration + acq.inspiration_tilt * np.tanh(xr / 60.0)
    inside = np.clip((yr - top) / k, 0, H)  # canonical depth below the apex within the lungs
    below = np.maximum(yr - top - k * H, 0)
    yc = np.where(yr < top, yr, top + inside + below)
    frac = np.clip((yc - top) / H, 0, 1)
    xc = xr / (1.0 + acq.chest_expansion * frac)
    return xc.astype(np.float32), yc.astype(np.float32)


def warp(scene: Scene, field_: np.ndarray, coords: tuple[np.ndarray, np.ndarray], order: int = 1) -> np.ndarray:
    """Sample a canonical raster at the study's pixel positions."""
    g = scene.grid
    xc, yc = coords
    rows = (yc - g.y0) / g.res
    cols = (xc - g.x0) / g.res
    return map_coordinates(field_, [rows, cols], order=order, mode="reflect", prefilter=False)


def detector(acq: Acquisition, density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, grid lines, noise and the detector's tone curve: normalised display values 0..1."""
    d = gaussian_filter(density, acq.blur_px) if acq.blur_px > 0.3 else density
    if acq.grid_amp > 0:
        cols = np.arange(acq.cols, dtype=np.float32)
        d = d + acq.grid_amp * np.sin(2 * np.pi * cols / acq.grid_period_px)[None, :]
    # quantum noise is larger where fewer photons arrive (denser regions), slightly correlated
    sigma = acq.noise * (0.6 + 0.6 * np.clip(d / 1.0, 0, 1.3))
    n = gaussian_filter(rng.standard_normal(d.shape).astype(np.float32), 0.5)
    n /= float(n.std()) or 1.0
    d = d + sigma * n
    v = (d - DENSITY_LO) / (DENSITY_HI - DENSITY_LO)
    v = np.clip(v * acq.gain + acq.exposure, 0, 1)
    if acq.lut_slope > 0:
        s = acq.lut_slope
        lo, hi = 1 / (1 + np.exp(s / 2)), 1 / (1 + np.exp(-s / 2))
        v = (1 / (1 + np.exp(-s * (v - 0.5))) - lo) / (hi - lo)
    else:
        v = v**acq.gamma
    return np.clip(v, 0, 1).astype(np.float32)


def _uid(*parts: object) -> str:
    h = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return UID_ROOT + str(h)


def to_dataset(acq: Acquisition, display: np.ndarray, *, pair_id: str, role: str, study_date: str) -> Dataset:
    """A DX/CR PA data set with the study's storage conventions (display: 0..1, 1 = dense)."""
    maxv = 2**acq.bits - 1
    stored = np.round(display * maxv).astype(np.uint16)
    if acq.monochrome1:
        stored = (maxv - stored).astype(np.uint16)
    meta = FileMetaDataset()
    sop_class = CR_STORAGE if acq.modality == "CR" else DX_STORAGE
    sop_uid = _uid(pair_id, role, "sop")
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = _uid(pair_id, role, "study")
    ds.SeriesInstanceUID = _uid(pair_id, role, "series")
    ds.PatientID = f"CXRPAIRS-{pair_id}"
    ds.PatientName = "CXRPAIRS^SYNTHETIC"
    ds.AccessionNumber = f"{pair_id[-12:]}{role[0].upper()}"
    ds.StudyDate = study_date
    ds.Modality = acq.modality
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    ds.PatientOrientation = ["L", "F"]  # PA: columns run to the patient's left, rows to the feet
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if acq.monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = acq.bits
    ds.HighBit = acq.bits - 1
    ds.PixelRepresentation = 0
    sp = [f"{acq.spacing:.4f}", f"{acq.spacing:.4f}"]
    setattr(ds, acq.spacing_tag, sp)
    if acq.modality == "DX" and acq.spacing_tag == "PixelSpacing":
        ds.ImagerPixelSpacing = sp
    # a window over the body's range; MONOCHROME1 windows apply to stored values, then invert
    lo, hi = np.percentile(stored[:: 8, :: 8], [2, 99.5])
    ds.WindowCenter = f"{(lo + hi) / 2:.1f}"
    ds.WindowWidth = f"{max(hi - lo, 16):.1f}"
    if acq.voi_lut:
        n = 4096
        first = int(lo)
        step = max((hi - lo) / n, 1.0)
        x = (np.arange(n) * step) / max(hi - lo, 1)
        curve = 1 / (1 + np.exp(-5 * (x - 0.5)))
        curve = (curve - curve.min()) / (curve.max() - curve.min())
        item = Dataset()
        item.add_new(0x00283002, "US", [n, first, 16])  # LUTDescriptor: entries, first value, bits
        item.LUTExplanation = "SIGMOID"
        item.add_new(0x00283006, "US", (curve * 65535).astype(np.uint16).tolist())  # LUTData
        ds.VOILUTSequence = pydicom.Sequence([item])
    ds.PixelData = stored.tobytes()
    return ds
