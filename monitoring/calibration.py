"""Calibration of the engine's confidence, live, per finding type, model version and site (issue 30).

A *claim* is one AI finding type in one signed study (the highest confidence if the engine said it
twice); it is *right* when the final findings state that type: the reviewer's structured labels,
else the signed report read by the labeler (what `monitoring.dataset` decides is final). From the
claims of a window: the reliability diagram (equal-width bins, Wilson interval per bin), ECE (with a
bootstrap interval over claims) and Brier score, and PPV / sensitivity by confidence band.

Alerts compare the engine with its baseline, not with perfection: a Platt map fitted on the
baseline's claims says how often a claim at a given raw confidence was right then; a type whose
current claims are right significantly less (or more) often than that map predicts, by at least
`calibration_gap_threshold`, alerts ("calibration"). This catches a confidence that means less than
it did even when the engine was never perfectly calibrated. The test runs on the last
`calibration_recent_days` and on the whole current window (Bonferroni over all tests). A type whose
PPV falls below the baseline's alerts too ("ppv_drop").

Nothing here imports the engine: the fit, ECE and map are written for monitoring (an evaluation
shares no code with what it evaluates); the map itself is applied through `priorwatch.recalibration`,
the one place the worker applies it too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from monitoring.concordance import FINDING_INDEX
from monitoring.metrics import wilson
from monitoring.settings import MonitoringSettings
from priorwatch.recalibration import apply_map

BANDS = (0.0, 0.5, 0.7, 0.9, 1.0)  # confidence bands a reader uses: unsure, likely, confident, near-certain
_EPS = 1e-4
_SEED = 20  # the bootstrap's seed: a snapshot re-run gives the same interval
CLAIM_COLUMNS = ["comparison_id", "at", "site", "model_version", "finding", "confidence", "raw_confidence", "correct"]


def claims(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (signed study, AI finding type): shown and raw confidence, and whether the final states it."""
    if df.empty or "ai_conf" not in df:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    f = df.loc[df["has_final"].astype(bool)]
    rows: list[tuple[Any, ...]] = []
    for cid, at, site, mv, mask, ac in f[["comparison_id", "at", "site", "model_version", "final_mask",
                                          "ai_conf"]].itertuples(index=False, name=None):
        best: dict[str, tuple[float, float]] = {}
        for typ, conf, raw in ac or ():
            if typ not in best or conf > best[typ][0]:
                best[typ] = (conf, raw)
        for typ, (conf, raw) in best.items():
            bit = FINDING_INDEX.get(typ)
            right = bit is not None and bool((int(mask) >> bit) & 1)
            rows.append((int(cid), at, site, mv, typ, conf, raw, right))
    return pd.DataFrame.from_records(rows, columns=CLAIM_COLUMNS)


def final_positives(df: pd.DataFrame) -> dict[str, int]:
    """Signed studies whose final findings state each type (the sensitivity denominator)."""
    f = df.loc[df["has_final"].astype(bool)] if len(df) else df
    if f.empty:
        return {}
    masks = f["final_mask"].to_numpy(np.int64)
    return {t: int(((masks >> i) & 1).sum()) for t, i in FINDING_INDEX.items()}


def _bin(conf: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.asarray(conf, float) * bins).astype(int), bins - 1)


def ece(conf: np.ndarray, right: np.ndarray, bins: int) -> float:
    """Expected calibration error: the claim-weighted mean |accuracy - mean confidence| over equal-width bins."""
    conf, right = np.asarray(conf, float), np.asarray(right, float)
    if len(conf) == 0:
        return float("nan")
    b = _bin(conf, bins)
    n = np.bincount(b, minlength=bins)
    gap = np.abs(np.bincount(b, right, bins) - np.bincount(b, conf, bins))
    return float(gap.sum() / n.sum())


def ece_interval(conf: np.ndarray, right: np.ndarray, bins: int, resamples: int) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of ECE over claims (all resamples at once)."""
    conf, right = np.asarray(conf, float), np.asarray(right, float)
    n = len(conf)
    if n < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(_SEED).integers(0, n, (resamples, n))
    b = _bin(conf, bins)[idx] + bins * np.arange(resamples)[:, None]
    size = resamples * bins
    gap = np.abs(np.bincount(b.ravel(), right[idx].ravel(), size) - np.bincount(b.ravel(), conf[idx].ravel(), size))
    e = gap.reshape(resamples, bins).sum(axis=1) / n
    lo, hi = np.percentile(e, [2.5, 97.5])
    return float(lo), float(hi)


def reliability(conf: np.ndarray, right: np.ndarray, bins: int) -> list[dict[str, Any]]:
    """The reliability diagram: per non-empty bin, claims, mean confidence, share right and its Wilson interval."""
    conf, right = np.asarray(conf, float), np.asarray(right, float)
    b = _bin(conf, bins)
    n = np.bincount(b, minlength=bins)
    k = np.bincount(b, right, bins)
    c = np.bincount(b, conf, bins)
    lo, hi = wilson(k, n)
    return [{"bin_lo": i / bins, "bin_hi": (i + 1) / bins, "n": int(n[i]), "mean_confidence": float(c[i] / n[i]),
             "accuracy": float(k[i] / n[i]), "lo": float(lo[i]), "hi": float(hi[i])} for i in range(bins) if n[i]]


def bands(conf: np.ndarray, right: np.ndarray, positives: int) -> list[dict[str, Any]]:
    """PPV per confidence band (Wilson), and sensitivity when only claims at or above the band's floor are kept."""
    conf, right = np.asarray(conf, float), np.asarray(right, bool)
    out = []
    for lo_b, hi_b in zip(BANDS[:-1], BANDS[1:]):
        inb = (conf >= lo_b) & ((conf < hi_b) if hi_b < 1.0 else (conf <= hi_b))
        n, k = int(inb.sum()), int(right[inb].sum())
        lo, hi = wilson(k, n) if n else (np.nan, np.nan)
        tp_above = int((right & (conf >= lo_b)).sum())
        out.append({"band": f"{lo_b:.1f}-{hi_b:.1f}", "n": n, "right": k, "ppv": k / n if n else None,
                    "ppv_lo": float(lo) if n else None, "ppv_hi": float(hi) if n else None,
                    "sensitivity_at_or_above": tp_above / positives if positives else None})
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_platt(conf: np.ndarray, right: np.ndarray, ridge: float, iters: int = 50) -> tuple[float, float]:
    """Platt map (a, b): p = sigmoid(a * logit(conf) + b), by Newton's method on the log-loss with Platt's
    smoothed targets and an L2 pull of (a, b) towards the identity (1, 0), so few or one-sided labels stay
    near the raw confidence. Two parameters: it can fix both a shift (over/under-confidence) and a
    spread (too extreme/too timid), unlike temperature alone, and needs far fewer labels than isotonic."""
    x = _logit(conf)
    y = np.asarray(right, float)
    n1, n0 = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))  # Platt's targets: no infinite fit on separable data
    w = np.array([1.0, 0.0])
    prior = np.array([1.0, 0.0])
    X = np.column_stack([x, np.ones_like(x)])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        g = X.T @ (p - t) + ridge * (w - prior)
        h = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(h, g)
        w = w - step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def mapped(conf: np.ndarray, a: float, b: float) -> np.ndarray:
    """A Platt map over many confidences, through the worker's own function."""
    return np.array([apply_map(c, a, b) for c in np.asarray(conf, float)])


def _group_stats(g: pd.DataFrame, bins: int, resamples: int, with_interval: bool) -> dict[str, Any]:
    conf, right = g["confidence"].to_numpy(float), g["correct"].to_numpy(bool)
    lo, hi = ece_interval(conf, right, bins, resamples) if with_interval else (None, None)
    return {"n": int(len(g)), "ece": ece(conf, right, bins), "ece_lo": lo, "ece_hi": hi,
            "brier": float(np.mean((conf - right) ** 2)), "mean_confidence": float(conf.mean()),
            "accuracy": float(right.mean())}


def summarise(current: pd.DataFrame, reference: pd.DataFrame | None, ms: MonitoringSettings, as_of: Any,
              reference_name: str = "baseline") -> dict[str, Any]:
    """The payload's "calibration": per type (reliability, bands, ECE, Brier, against the reference), per
    type x model version and type x site (ECE with interval), and the alert tests."""
    bins, res = ms.calibration_bins, ms.calibration_bootstrap
    cc = claims(current)
    rc = claims(reference) if reference is not None else pd.DataFrame(columns=CLAIM_COLUMNS)
    pos = final_positives(current)
    types: list[dict[str, Any]] = []
    for typ, g in cc.groupby("finding"):
        row = {"finding": typ, **_group_stats(g, bins, res, True)}
        row["reliability"] = reliability(g["confidence"].to_numpy(), g["correct"].to_numpy(), bins)
        row["bands"] = bands(g["confidence"].to_numpy(), g["correct"].to_numpy(), pos.get(str(typ), 0))
        r = rc[rc["finding"] == typ]
        if len(r):
            row["reference"] = _group_stats(r, bins, res, False)
            row["reference_reliability"] = reliability(r["confidence"].to_numpy(), r["correct"].to_numpy(), bins)
        types.append(row)
    by: dict[str, list[dict[str, Any]]] = {}
    for dim in ("model_version", "site"):
        by[dim] = [{"finding": t, dim: lv, **_group_stats(g, bins, res, len(g) >= ms.calibration_min_count)}
                   for (t, lv), g in cc.groupby(["finding", dim])]
    return {"bins": bins, "reference_name": reference_name, "n_claims": int(len(cc)), "types": types,
            "by_model_version": by["model_version"], "by_site": by["site"],
            "tests": tests(cc, rc, ms, as_of)}


def tests(cc: pd.DataFrame, rc: pd.DataFrame, ms: MonitoringSettings, as_of: Any) -> list[dict[str, Any]]:
    """Per type: the raw confidence of current claims against the reference's reliability map (recent days and
    the whole current window), and PPV against the reference's. Bonferroni over every test made."""
    out: list[dict[str, Any]] = []
    if cc.empty or rc.empty:
        return out
    recent_from = pd.Timestamp(as_of) - timedelta(days=ms.calibration_recent_days)
    for typ, r in rc.groupby("finding"):
        if len(r) < ms.recalibration_min_labels:
            continue  # the reference says too little about this type to judge a change
        a, b = fit_platt(r["raw_confidence"].to_numpy(), r["correct"].to_numpy(), ms.recalibration_ridge)
        g = cc[cc["finding"] == typ]
        windows = [(f"last {ms.calibration_recent_days} days", g[pd.to_datetime(g["at"]) >= recent_from]),
                   ("current window", g)]
        for name, w in windows:
            if len(w) < ms.calibration_min_count:
                continue
            exp = mapped(w["raw_confidence"].to_numpy(), a, b)
            o, e = float(w["correct"].sum()), float(exp.sum())
            out.append({"kind": "calibration", "finding": typ, "window": name, "n": int(len(w)),
                        "right": o / len(w), "expected": e / len(w), "gap": (o - e) / len(w),
                        "mean_confidence": float(w["confidence"].mean()), "p": poisson_binomial_p(exp, int(o))})
        if len(g) >= ms.calibration_min_count:
            k1, n1, k2, n2 = int(g["correct"].sum()), len(g), int(r["correct"].sum()), len(r)
            # Fisher's exact test, one-sided (current PPV lower): PPVs near 1 with tens of claims are where the
            # normal approximation calls two or three struck claims significant.
            p = float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="less")[1])
            out.append({"kind": "ppv_drop", "finding": typ, "window": "current", "n": n1, "right": k1 / n1,
                        "expected": k2 / n2, "gap": k1 / n1 - k2 / n2, "mean_confidence": float(g["confidence"].mean()),
                        "p": p})
    m = max(1, len(out))
    for t in out:
        thr = ms.calibration_gap_threshold if t["kind"] == "calibration" else ms.ppv_drop_threshold
        big = abs(t["gap"]) >= thr if t["kind"] == "calibration" else -t["gap"] >= thr
        t["flagged"] = bool(big and t["p"] < ms.alpha / m)
    return out


def poisson_binomial_p(probs: np.ndarray, k: int) -> float:
    """Exact two-sided p of k successes among independent Bernoulli(probs): twice the smaller tail. The
    normal approximation fails exactly where it matters here (expected rates near 1, tens of claims)."""
    pmf = np.zeros(len(probs) + 1)
    pmf[0] = 1.0
    for q in np.asarray(probs, float):
        pmf[1:] = pmf[1:] * (1 - q) + pmf[:-1] * q
        pmf[0] *= 1 - q
    return float(min(1.0, 2 * min(pmf[: k + 1].sum(), pmf[k:].sum())))


def conditions(cal: dict[str, Any] | None, ms: MonitoringSettings) -> list[dict[str, Any]]:
    """Alert conditions from the flagged tests: one per kind and type (the strongest window's figures)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    ref = (cal or {}).get("reference_name", "baseline")
    for t in sorted((cal or {}).get("tests", []), key=lambda t: t["p"]):
        if not t["flagged"] or (t["kind"], t["finding"]) in out:
            continue
        if t["kind"] == "calibration":
            how = "overconfident" if t["gap"] < 0 else "underconfident"
            msg = (f"{t['finding']} claims are {how} against the {ref}: over the {t['window']} {t['n']} claims at mean "
                   f"confidence {t['mean_confidence']:.2f} were right {t['right']:.0%} of the time; at their raw "
                   f"confidence the {ref} predicts {t['expected']:.0%} (p={t['p']:.1g}). Readers should not take the "
                   f"number at face value; consider a recalibration proposal.")
            thr = ms.calibration_gap_threshold
        else:
            msg = (f"{t['finding']} PPV fell to {t['right']:.0%} from {t['expected']:.0%} in the {ref} "
                   f"({t['n']} claims this window, p={t['p']:.1g}).")
            thr = ms.ppv_drop_threshold
        out[(t["kind"], t["finding"])] = {"kind": t["kind"], "subject": f"finding={t['finding']}",
                                          "value": abs(float(t["gap"])), "threshold": thr, "message": msg}
    return list(out.values())
