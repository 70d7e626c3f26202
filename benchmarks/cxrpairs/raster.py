"""Small rasterising helpers on a millimetre grid (numpy/scipy only).

A `Grid` maps canonical millimetres (x to the image's right, y downwards, origin at the
centre of the field) to raster pixels, so anatomy and lesions are written in mm once and
drawn at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A raster of `shape` pixels of `res` mm whose pixel (0, 0) centre sits at (x0, y0) mm."""

    shape: tuple[int, int]
    res: float
    x0: float
    y0: float

    @classmethod
    def centred(cls, half_extent_mm: float, res: float) -> "Grid":
        n = int(round(2 * half_extent_mm / res))
        return cls((n, n), res, -half_extent_mm + res / 2, -half_extent_mm + res / 2)

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Broadcastable x (1, W) and y (H, 1) in mm of every pixel centre."""
        h, w = self.shape
        x = (self.x0 + self.res * np.arange(w, dtype=np.float32))[None, :]
        y = (self.y0 + self.res * np.arange(h, dtype=np.float32))[:, None]
        return x, y

    def to_px(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """(row, col) of a point in mm."""
        return (y_mm - self.y0) / self.res, (x_mm - self.x0) / self.res

    def window(self, xmin: float, xmax: float, ymin: float, ymax: float):
        """Slices of the raster covering a mm box (clipped), plus that box's x, y coordinates."""
        h, w = self.shape
        c0 = max(int(np.floor((xmin - self.x0) / self.res)), 0)
        c1 = min(int(np.ceil((xmax - self.x0) / self.res)) + 1, w)
        r0 = max(int(np.floor((ymin - self.y0) / self.res)), 0)
        r1 = min(int(np.ceil((ymax - self.y0) / self.res)) + 1, h)
        if c1 <= c0 or r1 <= r0:
            return None
        x = (self.x0 + self.res * np.arange(c0, c1, dtype=np.float32))[None, :]
        y = (self.y0 + self.res * np.arange(r0, r1, dtype=np.float32))[:, None]
        return (slice(r0, r1), slice(c0, c1)), x, y


def segment_distance(x: np.ndarray, y: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance (mm) from every (x, y) to the segment a-b."""
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    if L2 < 1e-9:
        return np.hypot(x - ax, y - ay)
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / L2, 0.0, 1.0)
    return np.hypot(x - (ax + t * dx), y - (ay + t * dy))


def draw_polyline(canvas: np.ndarray, grid: Grid, pts: np.ndarray, width_mm, profile, value) -> None:
    """Draw a tube along `pts` (N, 2 mm) into `canvas` with np.maximum.

    `width_mm` and `value` may be scalars or per-vertex arrays (linearly tapered per segment);
    `profile(u)` maps u = distance / half-width (0 at the centre line) to 0..1.
    """
    n = len(pts)
    widths = np.broadcast_to(np.asarray(width_mm, dtype=float), (n,))
    values = np.broadcast_to(np.asarray(value, dtype=float), (n,))
    for i in range(n - 1):
        a, b = pts[i], pts[i + 1]
        hw = max(widths[i], widths[i + 1]) / 2
        pad = hw * 1.6 + grid.res
        win = grid.window(min(a[0], b[0]) - pad, max(a[0], b[0]) + pad, min(a[1], b[1]) - pad, max(a[1], b[1]) + pad)
        if win is None:
            continue
        sl, x, y = win
        d = segment_distance(x, y, (a[0], a[1]), (b[0], b[1]))
        # half-width and value tapered along the segment
        dx, dy = b[0] - a[0], b[1] - a[1]
        L2 = dx * dx + dy * dy
        t = np.clip(((x - a[0]) * dx + (y - a[1]) * dy) / L2, 0.0, 1.0) if L2 > 1e-9 else np.zeros_like(d)
        hw_t = (widths[i] + t * (widths[i + 1] - widths[i])) / 2
        v_t = values[i] + t * (values[i + 1] - values[i])
        drawn = v_t * profile(d / np.maximum(hw_t, 1e-3))
        np.maximum(canvas[sl], drawn.astype(canvas.dtype), out=canvas[sl])


def cylinder(u: np.ndarray) -> np.ndarray:
    """Projected thickness of a round tube (vessels): sqrt(1 - u^2)."""
    return np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))


def bone_band(u: np.ndarray) -> np.ndarray:
    """A rib/clavicle: medullary band with a brighter cortex and a ~10 % soft edge."""
    inside = 0.8 + 0.2 * np.clip(u, 0, 1) ** 2
    edge = np.clip((1.1 - u) / 0.2, 0.0, 1.0)
    return inside * edge


def points_in_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over a broadcast (x, y) grid."""
    inside = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
    px, py = poly[:, 0], poly[:, 1]
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        if yi != yj:
            cond = (yi > y) != (yj > y)
            xcross = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= cond & (x < xcross)
        j = i
    return inside


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (texture)."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    s = float(n.std()) or 1.0
    return n / s
