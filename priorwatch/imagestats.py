"""Image intensity statistics, shared by the worker (which records them for each compared image)
and monitoring (which watches them drift). Computed on pixels already decoded; never on receive."""

from __future__ import annotations

import numpy as np


def image_statistics(pixels: np.ndarray, monochrome1: bool = False) -> dict[str, float]:
    """mean, std, 5th/95th percentiles of the image scaled to 0-1 (MONOCHROME1 inverted), and the
    Shannon entropy (bits) of its 256-bin histogram."""
    a = np.asarray(pixels, dtype=np.float64)
    lo, hi = float(np.min(a)), float(np.max(a))
    x = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if monochrome1:
        x = 1.0 - x
    hist = np.bincount(np.minimum((x.ravel() * 256).astype(np.int64), 255), minlength=256).astype(float)
    p = hist[hist > 0] / hist.sum()
    p05, p95 = np.percentile(x, [5, 95])
    return {"mean": float(x.mean()), "std": float(x.std()), "p05": float(p05), "p95": float(p95),
            "entropy": float(-(p * np.log2(p)).sum())}
