"""Interval and test statistics shared by the monitoring metrics: the Wilson score interval and
the two-proportion z-test. Their own module so that `concordance` (per-study agreement) and
`metrics` (window aggregates, which read `concordance`) both use them without importing each
other."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["wilson", "two_proportion_p"]


def wilson(k: np.ndarray | int, n: np.ndarray | int, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes of n (vectorised; NaN where n == 0)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def two_proportion_p(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Two-sided p-value of the pooled two-proportion z-test (vectorised)."""
    k1, n1, k2, n2 = (np.asarray(x, dtype=float) for x in (k1, n1, k2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (k1 + k2) / (n1 + n2)
        se = np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
        z = np.abs(k1 / n1 - k2 / n2) / se
    z = np.where(np.isfinite(z), z, 0.0)
    return np.array([math.erfc(v / math.sqrt(2)) for v in np.atleast_1d(z)])
