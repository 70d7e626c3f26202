"""Calibrated confidence for the registration engine's findings.

The engine's raw score (`registration._confidence`: effect size x region size x
registration quality) orders findings well but is not a probability. A Platt map,

    p = 1 / (1 + exp(-(A * logit(raw) + B)))

turns it into the probability that the claim is right, where a claim is *right* when a
lesion of that type really changed on that side in that direction (type, side and change
all match the truth). A and B below were fitted with `fit_platt` on a calibration set
generated with a different seed than the benchmark's:

    .venv/bin/python -m comparison.benchmark --fit-calibration --n 4 --seed 7 --out artifacts/calibration.json

(see `comparison.benchmark.fit_calibration`). The map is monotone increasing, so the
ranking of findings is unchanged; the output stays inside [CONF_MIN, CONF_MAX].
The benchmark reports the expected calibration error (ECE, 10 equal-width bins) of the raw
and of the calibrated confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PLATT_A", "PLATT_B", "CONF_MIN", "CONF_MAX", "calibrate", "fit_platt", "expected_calibration_error"]

# Fitted on the calibration set (seed 7, n 4, matrix variation 0.25: 120 pairs, 79 claims, 66 right;
# ECE there 0.099 raw -> 0.091 fitted); see the module docstring.
PLATT_A = 1.3008
PLATT_B = -0.0094
CONF_MIN = 0.02
CONF_MAX = 0.98
_EPS = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def calibrate(raw: float | Sequence[float] | np.ndarray, a: float | None = None, b: float | None = None) -> float | np.ndarray:
    """Map raw engine confidence(s) in [0, 1] to calibrated probabilities (same shape)."""
    a = PLATT_A if a is None else a
    b = PLATT_B if b is None else b
    x = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("raw confidence must be finite")
    p = 1.0 / (1.0 + np.exp(-(a * _logit(x) + b)))
    p = np.clip(p, CONF_MIN, CONF_MAX)
    return float(p) if p.ndim == 0 else p


def fit_platt(raw: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, iters: int = 100,
              l2: float = 1e-3) -> tuple[float, float]:
    """Fit (A, B) by Newton's method on the log-loss, with Platt's target smoothing and a
    small ridge on A - 1 and B (so a tiny or one-sided set stays near the identity)."""
    x = _logit(np.asarray(raw, dtype=np.float64))
    y = np.asarray(correct, dtype=np.float64)
    if x.size != y.size or x.size == 0:
        raise ValueError("raw and correct must be non-empty and of equal length")
    n_pos, n_neg = float(y.sum()), float(y.size - y.sum())
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    w = np.array([1.0, 0.0])
    for _ in range(iters):
        z = w[0] * x + w[1]
        p = 1 / (1 + np.exp(-z))
        g = np.array([np.sum((p - t) * x), np.sum(p - t)]) + l2 * x.size * np.array([w[0] - 1.0, w[1]])
        s = p * (1 - p)
        hess = np.array([[np.sum(s * x * x), np.sum(s * x)], [np.sum(s * x), np.sum(s)]]) + l2 * x.size * np.eye(2)
        step = np.linalg.solve(hess, g)
        w = w - step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def expected_calibration_error(conf: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = 10) -> float:
    """ECE: sum over equal-width confidence bins of |accuracy - mean confidence| x share."""
    c = np.asarray(conf, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if c.size == 0:
        return float("nan")
    idx = np.minimum((c * bins).astype(int), bins - 1)
    ece = 0.0
    for k in range(bins):
        sel = idx == k
        if sel.any():
            ece += abs(float(y[sel].mean()) - float(c[sel].mean())) * sel.sum() / c.size
    return float(ece)
