"""Image statistics for drift monitoring, computed from pixels the pipeline already decoded
(the worker calls `record_image_statistics` after the engine's image load; never on receive)."""

from __future__ import annotations

import numpy as np
from sqlmodel import Session

from priorwatch.models import ImageStatistics


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


def record_image_statistics(session: Session, study_id: int, pixels: np.ndarray, *, instance_id: int | None = None,
                            monochrome1: bool = False) -> ImageStatistics:
    row = ImageStatistics(study_id=study_id, instance_id=instance_id, **image_statistics(pixels, monochrome1))
    session.add(row)
    session.flush()
    return row
