"""DICOM pixel data to the arrays engines compare (runs in the worker, never on the receive path).

`load_image` decodes any transfer syntax pydicom can (pylibjpeg handles JPEG / JPEG 2000 /
JPEG-LS / RLE), applies the modality LUT (rescale) and the VOI LUT or window, turns
MONOCHROME1 into the MONOCHROME2 sense (higher = denser, so lungs are dark), resamples
anisotropic pixels to a square millimetre grid and scales the long side to `size`, and brings
the image to the standard display from its `PatientOrientation` (row direction "L": the
image's left-to-right runs towards the patient's left, as a PA film is hung; "R": the columns
are flipped back; column direction "F" standard, "H": the rows are flipped back). An absent or
unusable orientation is said in `notes` and `orientation_known` is False (the engine notes it
and lowers confidence; it is not refused). A row direction "A" / "P" is a lateral projection.
The result is float32 in [0, 1]; the meta data says where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from comparison import thresholds as T

__all__ = ["PreparedImage", "load_image", "orientation_flips", "prepare_dataset", "projection_of"]


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for an engine: `pixels` float32 [H, W] in [0, 1], higher = denser."""

    pixels: np.ndarray
    rows: int  # original Rows
    cols: int  # original Columns
    pixel_spacing_mm: tuple[float, float] | None  # original (row, col) spacing; None when unknown
    spacing_mm: float | None  # spacing of `pixels` (square); None when the original is unknown
    view_position: str | None
    photometric: str
    bits_stored: int
    transfer_syntax: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    orientation: str | None = None  # PatientOrientation as stored ("R\\F"), before `pixels` were brought to "L\\F"
    orientation_known: bool = False  # True when it was read and `pixels` are in the standard display
    laterality: str | None = None  # ImageLaterality (R, L, U, B), as stored
    flipped: tuple[bool, bool] = (False, False)  # (columns, rows) flipped to reach the standard display

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def projection(self) -> str | None:
        """"frontal", "lateral" or "oblique" from ViewPosition, else from the orientation; None: unknown."""
        return projection_of(self.view_position, self.orientation)

    @property
    def comparison_view(self) -> str | None:
        """The view an engine is told: ViewPosition, or "LATERAL" when only the orientation says so."""
        if self.view_position:
            return self.view_position
        return "LATERAL" if self.projection == "lateral" else None


def load_image(path: str | Path, size: int = 512) -> PreparedImage:
    """Read one DICOM image file and prepare it (see the module docstring).

    Raises FileNotFoundError for a missing file and ValueError for a file without usable
    single-channel image data.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "No such file", str(p))
    ds = pydicom.dcmread(p)
    return prepare_dataset(ds, size=size)


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        v = ds.get(kw)
        try:
            if v is not None and len(v) == 2:
                r, c = float(v[0]), float(v[1])
                if r > 0 and c > 0 and np.isfinite(r) and np.isfinite(c):
                    return r, c
        except (TypeError, ValueError):
            continue
    return None


def _first(v: object) -> float:
    if isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
        v = v[0]
    return float(v)  # type: ignore[arg-type]


def _percentile_norm(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


# A display transform (VOI LUT or window) that pins more than this share of the pixels at one
# end has thrown the anatomy away (a LUT shorter than the pixel range, a window for another
# body part): it is not used for analysis, the next one (window, then percentiles) is.
VOI_SATURATION_MAX = 0.3


def _saturated(out: np.ndarray, lo: float, hi: float) -> float:
    span = (hi - lo) * 1e-3
    return float(max(np.mean(out <= lo + span), np.mean(out >= hi - span)))


def _voi(arr: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    """Apply the VOI LUT or window to modality values; return [0, 1]."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        item = ds.VOILUTSequence[0]
        # a LUT is indexed by integer stored values (float input gives wrong results)
        out = apply_voi_lut(np.rint(arr).astype(np.int64), ds, index=0, prefer_lut=True).astype(np.float32)
        lut = np.asarray(item.LUTData, dtype=np.float64).ravel()
        lo, hi = float(lut.min()), float(lut.max())
        if hi > lo:
            sat = _saturated(out, lo, hi)
            if sat <= VOI_SATURATION_MAX:
                notes.append("voi: lut")
                return np.clip((out - lo) / (hi - lo), 0.0, 1.0)
            notes.append(f"voi: lut ignored ({sat:.0%} of pixels pinned at one end)")
    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    if wc is not None and ww is not None:
        try:
            c, w = _first(wc), _first(ww)
        except (TypeError, ValueError):
            c, w = 0.0, 0.0
        if w > 1.0:
            # Let pydicom apply the window (LINEAR / LINEAR_EXACT / SIGMOID); its output range
            # is found by windowing the extremes, so the [0, 1] mapping is exact.
            out = apply_voi_lut(arr, ds, index=0, prefer_lut=False).astype(np.float32)
            ext = apply_voi_lut(np.array([c - 1e9, c + 1e9], dtype=np.float64), ds, index=0, prefer_lut=False)
            lo, hi = float(np.min(ext)), float(np.max(ext))
            if hi > lo:
                sat = _saturated(out, lo, hi)
                if sat <= VOI_SATURATION_MAX:
                    notes.append("voi: window")
                    return np.clip((out - lo) / (hi - lo), 0.0, 1.0)
                notes.append(f"voi: window ignored ({sat:.0%} of pixels pinned at one end)")
    notes.append("voi: percentile")
    return _percentile_norm(arr)


def _orientation(ds: Dataset) -> str | None:
    v = ds.get("PatientOrientation")
    if v is None:
        return None
    vals = [str(x).strip().upper() for x in (v if isinstance(v, (list, tuple, pydicom.multival.MultiValue)) else str(v).split("\\"))]
    vals = [x for x in vals if x]
    return "\\".join(vals) if vals else None


def orientation_flips(orientation: str | None) -> tuple[bool, bool] | None:
    """(flip columns, flip rows) that bring a frontal with this `PatientOrientation` to the standard
    display (row direction L, column direction F); None when it does not say (absent, a lateral's
    A / P, a rotated image's column direction L / R)."""
    if not orientation:
        return None
    parts = orientation.split("\\")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    row, col = parts[0][0], parts[1][0]  # the dominant direction of an oblique value ("LF") is its first letter
    if row not in "LR" or col not in "FH":
        return None
    return row == "R", col == "H"


def projection_of(view: str | None, orientation: str | None) -> str | None:
    """"frontal", "lateral" or "oblique" from ViewPosition first, else from the orientation's row direction."""
    v = (view or "").strip().upper()
    if v in T.LATERAL_VIEWS:
        return "lateral"
    if v in T.OBLIQUE_VIEWS:
        return "oblique"
    row = orientation.split("\\")[0][:1] if orientation else ""
    if row in ("A", "P"):
        return "lateral"  # the image's rows run front to back: a lateral projection, whatever ViewPosition says
    if v in T.FRONTAL_VIEWS or row in ("L", "R"):
        return "frontal"
    return None


def _resize(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize((out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)


def prepare_dataset(ds: Dataset, size: int = 512) -> PreparedImage:
    """`load_image` for a dataset already in memory."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError("the dataset has no pixel data")
    if size < 16:
        raise ValueError(f"size must be at least 16, not {size}")
    notes: list[str] = []
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
        notes.append("first frame of a multi-frame image")
    if arr.ndim == 3:  # colour: luminance
        if photometric.startswith("YBR"):
            arr = arr[..., 0]
        else:
            arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        notes.append(f"colour ({photometric}) reduced to luminance")
        photometric = "MONOCHROME2"
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise ValueError(f"not a usable 2-D image: shape {arr.shape}")
    rows, cols = int(arr.shape[0]), int(arr.shape[1])
    mod = apply_modality_lut(arr, ds)
    img = _voi(np.asarray(mod, dtype=np.float64), ds, notes).astype(np.float32)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    if not np.isfinite(img).all():
        img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)

    spacing = _spacing(ds)
    sr, sc = spacing if spacing is not None else (1.0, 1.0)
    h_mm, w_mm = rows * sr, cols * sc  # physical extent (or pixels when unknown)
    scale = size / max(h_mm, w_mm)
    out_h, out_w = max(1, int(round(h_mm * scale))), max(1, int(round(w_mm * scale)))
    if (out_h, out_w) != (rows, cols):
        img = np.clip(_resize(img, out_h, out_w), 0.0, 1.0)
    out_spacing = (h_mm / out_h) if spacing is not None else None
    if spacing is not None and abs(sr - sc) > 1e-6:
        notes.append(f"anisotropic pixels {sr:.4g}x{sc:.4g} mm resampled to a square grid")
    orientation = _orientation(ds)
    flips = orientation_flips(orientation)
    if flips is None:
        notes.append("orientation: PatientOrientation " + (f"{orientation} " if orientation else "absent; ")
                     + "does not give the patient's sides: shown as stored, sides assume the standard display")
    else:
        if flips[0]:
            img = img[:, ::-1]
        if flips[1]:
            img = img[::-1, :]
        if any(flips):
            notes.append(f"orientation: PatientOrientation {orientation}: "
                         + " and ".join(w for w, f in zip(("columns", "rows"), flips) if f)
                         + " flipped to the standard display")
    lat = ds.get("ImageLaterality")
    vp = ds.get("ViewPosition")
    return PreparedImage(
        pixels=np.ascontiguousarray(img, dtype=np.float32),
        rows=rows,
        cols=cols,
        pixel_spacing_mm=spacing,
        spacing_mm=out_spacing,
        view_position=str(vp).upper() if vp else None,
        photometric=photometric,
        bits_stored=int(ds.get("BitsStored", 8) or 8),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID) if hasattr(ds, "file_meta") and "TransferSyntaxUID" in ds.file_meta else "",
        notes=tuple(notes),
        orientation=orientation,
        orientation_known=flips is not None,
        laterality=str(lat).strip().upper() or None if lat else None,
        flipped=flips or (False, False),
    )
