"""Images for the review page: a study's frontal instance as display-ready uint8.

Window/level presets for chest imaging: ``default`` (the file's own VOI window, else a
robust 1-99 % range), ``lung``, ``mediastinum`` and ``bone``. CT-like data in Hounsfield
units gets the classic HU windows; projection radiographs (CR/DX, arbitrary units) get
windows placed on the image's own intensity distribution, because their values carry no
absolute meaning. The output is always "bright = dense" (MONOCHROME1 is inverted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRESETS: tuple[str, ...] = ("default", "lung", "mediastinum", "bone")
# Hounsfield windows (center, width).
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}
# Projection radiographs: windows as percentile ranges of the (bright = dense) image.
PERCENTILE_WINDOWS: dict[str, tuple[float, float]] = {
    "default": (1.0, 99.0),
    "lung": (1.0, 75.0),  # the dark, aerated range stretched
    "mediastinum": (35.0, 99.5),  # the soft-tissue / mediastinal range
    "bone": (60.0, 99.9),  # only the densest structures
}
DISPLAY_MAX = 1024  # long side, pixels
THUMB_MAX = 128  # long side of a history-strip thumbnail: a date's view recognisable, ~10 kB of PNG


class ImageUnavailable(Exception):
    """The image cannot be shown; the message says why in words a user can act on."""


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # float32, bright = dense, downsampled to max_side (full depth kept)
    hu: bool  # values are Hounsfield units
    voi: tuple[float, float] | None  # the file's own (center, width), if any
    full_shape: tuple[int, int]
    markers: tuple[str, str] = ("", "")  # patient-side letters at the image's (left, right) edge


def _first(v: object) -> float | None:
    if v is None:
        return None
    try:
        return float(v[0]) if hasattr(v, "__len__") and not isinstance(v, str) else float(v)  # type: ignore[index, arg-type]
    except (TypeError, ValueError, IndexError):
        return None


def _downsample(a: np.ndarray, max_side: int) -> np.ndarray:
    step = int(np.ceil(max(a.shape[:2]) / max_side))
    if step <= 1:
        return a
    h, w = (a.shape[0] // step) * step, (a.shape[1] // step) * step
    return a[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


def load_dicom(path: str | Path, max_side: int = DISPLAY_MAX) -> LoadedImage:
    """Read one DICOM image for display. Raises ImageUnavailable with a clear reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    p = Path(path)
    if not p.is_file():
        raise ImageUnavailable(f"image file is missing: {p}")
    try:
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array
    except InvalidDicomError:
        raise ImageUnavailable(f"not a readable DICOM file: {p.name}") from None
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
        raise ImageUnavailable(f"could not decode the image in {p.name}: {exc}") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour: show luminance
        arr = arr[..., :3].mean(axis=-1)
    elif arr.ndim == 3:  # multi-frame: first frame
        arr = arr[0]
    if arr.ndim != 2:
        raise ImageUnavailable(f"unsupported image shape {arr.shape} in {p.name}")
    full_shape = (int(arr.shape[0]), int(arr.shape[1]))
    data = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    hu = str(ds.get("RescaleType", "")).upper() == "HU" or ds.get("Modality") == "CT"
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    voi = (center, width) if center is not None and width and width > 0 else None
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        # Invert so that bright = dense; the VOI window inverts with it.
        lo, hi = float(np.min(data)), float(np.max(data))
        data = (lo + hi) - data
        if voi is not None:
            voi = ((lo + hi) - voi[0], voi[1])
    return LoadedImage(_downsample(data, max_side).astype(np.float32), hu, voi, full_shape, side_markers(ds))


_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}


def side_markers(ds: object) -> tuple[str, str]:
    """Patient-side letters for the image's left and right edges.

    From Patient Orientation (0020,0020), whose first value is the direction of increasing
    column (towards the image's right edge); else from the view: PA and AP chest images are
    displayed as if facing the patient, so the patient's right is on the image's left.
    Empty when neither says (no marker is better than a wrong one).
    """
    po = getattr(ds, "PatientOrientation", None)
    if po is not None and len(po) >= 1 and str(po[0]):
        row_dir = str(po[0]).upper()[:1]
        if row_dir in ("L", "R"):
            return _OPPOSITE[row_dir], row_dir
    view = str(getattr(ds, "ViewPosition", "") or "").upper()
    if view in ("PA", "AP"):
        return "R", "L"
    return "", ""


def window_range(img: LoadedImage) -> tuple[float, float]:
    """The value range for manual window sliders (robust: 0.1-99.9 %)."""
    lo, hi = np.percentile(img.pixels, [0.1, 99.9])
    return float(lo), float(max(hi, lo + 1.0))


def apply_manual_window(img: LoadedImage, center: float, width: float) -> np.ndarray:
    """uint8 (H, W) for an explicit window on the full-depth values."""
    width = max(float(width), 1.0)
    lo, hi = center - width / 2.0, center + width / 2.0
    out = (np.clip(img.pixels, lo, hi) - lo) / (hi - lo)
    return (out * 255.0 + 0.5).astype(np.uint8)


def window_bounds(img: LoadedImage, preset: str) -> tuple[float, float]:
    if preset not in PRESETS:
        raise ValueError(f"unknown window preset {preset!r}; choose from {', '.join(PRESETS)}")
    if preset == "default" and img.voi is not None:
        c, w = img.voi
        return c - w / 2.0, c + w / 2.0
    if img.hu and preset in HU_WINDOWS:
        c, w = HU_WINDOWS[preset]
        return c - w / 2.0, c + w / 2.0
    lo_p, hi_p = PERCENTILE_WINDOWS[preset]
    lo, hi = np.percentile(img.pixels, [lo_p, hi_p])
    return float(lo), float(hi)


def apply_window(img: LoadedImage, preset: str = "default") -> np.ndarray:
    """uint8 (H, W), ready for st.image or PNG."""
    lo, hi = window_bounds(img, preset)
    if hi <= lo:
        hi = lo + 1.0
    out = (np.clip(img.pixels, lo, hi) - lo) / (hi - lo)
    return (out * 255.0 + 0.5).astype(np.uint8)


def overlay_heatmap(gray: np.ndarray, overlay_path: str | Path | bytes | None, alpha: float = 0.45) -> np.ndarray:
    """Blend a PNG heat-map onto a uint8 grey image; RGB uint8 (H, W, 3).

    `overlay_path`: the PNG's bytes (stored in the database by a worker anywhere) or, for results
    from before, its file. An RGBA PNG uses its own alpha; a grey PNG is drawn in red with its
    intensity as alpha; an RGB PNG is blended with a constant alpha. Raises ImageUnavailable when
    the file is missing or the image unreadable.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    if not overlay_path:
        raise ImageUnavailable("this result has no difference overlay")
    p = Path("stored overlay") if isinstance(overlay_path, bytes) else Path(overlay_path)
    if not isinstance(overlay_path, bytes) and not p.is_file():
        raise ImageUnavailable(f"overlay file is missing: {p}")
    try:
        with Image.open(io.BytesIO(overlay_path) if isinstance(overlay_path, bytes) else p) as im:
            im.load()
            mode = im.mode
            size = (gray.shape[1], gray.shape[0])
            if mode in ("L", "I", "I;16", "F", "1"):
                m = np.asarray(im.convert("L").resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
                color = np.zeros((*gray.shape, 3), np.float32)
                color[..., 0] = 255.0
                color[..., 1] = 255.0 * (1.0 - m) * 0.3
                a = (m * alpha)[..., None] * 1.6
            elif "A" in mode or mode == "P":
                rgba = np.asarray(im.convert("RGBA").resize(size, Image.BILINEAR), dtype=np.float32)
                color = rgba[..., :3]
                a = (rgba[..., 3:] / 255.0) * alpha * 1.6
            else:
                color = np.asarray(im.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32)
                a = np.full((*gray.shape, 1), alpha, np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageUnavailable(f"overlay file is not a readable image: {p.name} ({exc})") from None
    a = np.clip(a, 0.0, 0.85)
    base = np.repeat(gray[..., None].astype(np.float32), 3, axis=2)
    return (base * (1.0 - a) + color * a + 0.5).clip(0, 255).astype(np.uint8)


def to_png(arr: np.ndarray, compress_level: int = 6) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


_CACHE_MAX = 12  # decoded images kept per process (full resolution ~15 MB each as float32)
_cache: dict[tuple[str, float, int], LoadedImage] = {}


def load_cached(path: str | Path, max_side: int = DISPLAY_MAX) -> LoadedImage:
    """`load_dicom`, memoised per (path, mtime, size) for the page and the image route."""
    import os

    p = str(path)
    try:
        mtime = os.path.getmtime(p)
    except OSError:
        raise ImageUnavailable(f"image file is missing: {Path(p).name}") from None
    key = (p, mtime, max_side)
    hit = _cache.pop(key, None)
    if hit is None:
        hit = load_dicom(p, max_side)
    _cache[key] = hit  # most recent last
    while len(_cache) > _CACHE_MAX:
        _cache.pop(next(iter(_cache)))
    return hit


def render(img: LoadedImage, preset: str | None, center: float | None, width: float | None,
           overlay_path: str | Path | bytes | None = None) -> np.ndarray:
    """The displayed pixels: a manual window if given, else the preset; optional heat-map."""
    if center is not None and width is not None:
        gray = apply_manual_window(img, center, width)
    else:
        gray = apply_window(img, preset or "default")
    return overlay_heatmap(gray, overlay_path) if overlay_path else gray


def thumbnail(gray: np.ndarray, max_side: int = THUMB_MAX) -> np.ndarray:
    """A rendered (uint8) image shrunk for the history strip, from the display-size copy already cached."""
    return np.clip(_downsample(gray.astype(np.float32), max_side), 0, 255).astype(np.uint8)


def image_url(instance_id: int, *, preset: str = "default", center: float | None = None, width: float | None = None,
              full: bool = False, overlay: int | None = None, thumb: bool = False) -> str:
    """The page's URL for one rendered image (relative: same origin, the cookie goes along)."""
    from urllib.parse import quote

    parts = [f"preset={quote(preset)}"]
    if center is not None and width is not None:
        parts += [f"c={center:.1f}", f"w={width:.1f}"]
    if full:
        parts.append("full=1")
    if overlay is not None:
        parts.append(f"overlay={overlay}")
    if thumb:
        parts.append("thumb=1")
    return f"/pw/img/{instance_id}?{'&'.join(parts)}"
