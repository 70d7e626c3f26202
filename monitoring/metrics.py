"""Revision metrics per study and over windows, Wilson intervals and the subgroup test."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from monitoring.labeler import label_report

try:  # C implementation; the pure-Python fallback is exact but slower
    from rapidfuzz.distance import Levenshtein as _lev
except ImportError:  # pragma: no cover
    _lev = None

_WORD = re.compile(r"[a-z0-9]+")
N_LABELS = 10 * 6  # findings x changes: the binary decisions behind kappa


def words(text: str | None) -> list[str]:
    return _WORD.findall((text or "").lower())


def _levenshtein(a: list[str], b: list[str]) -> int:
    if _lev is not None:
        return int(_lev.distance(a, b))
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def word_edit_distance(draft: str | None, final: str | None) -> float:
    """Word-level Levenshtein distance normalised by the longer text (0 = identical, 1 = all new)."""
    a, b = words(draft), words(final)
    if a == b:
        return 0.0
    return _levenshtein(a, b) / max(len(a), len(b))


def study_revision(draft: str, final: str, draft_urgent: bool, final_critical: bool = False,
                   has_prior: bool | None = None, uncertain_as_positive: bool = True) -> dict[str, object]:
    """Per-study revision metrics, draft -> final."""
    dl = label_report(draft or "", has_prior)
    fl = label_report(final or "", has_prior)
    dp, fp_ = dl.pairs(uncertain_as_positive), fl.pairs(uncertain_as_positive)
    tp = len(dp & fp_)
    fp = len(dp - fp_)
    fn = len(fp_ - dp)
    final_urgent = bool(fl.urgent or final_critical)
    changed_findings = dl.findings(uncertain_as_positive) != fl.findings(uncertain_as_positive)
    ed = word_edit_distance(draft, final)
    return {
        "edit_distance": ed,
        "accepted_unchanged": ed == 0.0,
        "tp": tp, "fp": fp, "fn": fn,
        "final_urgent": final_urgent,
        "significant_revision": bool(changed_findings or (bool(draft_urgent) != final_urgent)),
    }


def add_revision_columns(df: pd.DataFrame, uncertain_as_positive: bool = True) -> pd.DataFrame:
    """Adds per-study revision columns to a frame with draft_text, final_text, urgent,
    final_critical, has_prior. Rows without a final report get NaN / False and has_final=False."""
    out = df.copy()
    has_final = out["final_text"].notna() & (out["final_text"].astype(str).str.len() > 0)
    out["has_final"] = has_final
    cols = {"edit_distance": np.nan, "accepted_unchanged": False, "tp": 0, "fp": 0, "fn": 0,
            "final_urgent": False, "significant_revision": False}
    sub = out.loc[has_final, ["draft_text", "final_text", "urgent", "final_critical", "has_prior"]]
    recs = [
        study_revision(d, f, u, c, bool(h), uncertain_as_positive)
        for d, f, u, c, h in sub.itertuples(index=False, name=None)
    ]
    res = pd.DataFrame.from_records(recs, index=sub.index, columns=list(cols)) if recs else pd.DataFrame(columns=list(cols))
    for c, default in cols.items():
        out[c] = default
        if len(res):
            out.loc[res.index, c] = res[c].values
    for c in ("accepted_unchanged", "final_urgent", "significant_revision"):
        out[c] = out[c].astype(bool)
    for c in ("tp", "fp", "fn"):
        out[c] = out[c].astype(int)
    out["edit_distance"] = out["edit_distance"].astype(float)
    out["revised"] = has_final & ~out["accepted_unchanged"]
    return out


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def window_metrics(df: pd.DataFrame) -> dict[str, object]:
    """Aggregate revision metrics over the signed studies of a window."""
    f = df.loc[df["has_final"].astype(bool)]
    n = int(len(f))
    tp, fp, fn = int(f["tp"].sum()), int(f["fp"].sum()), int(f["fn"].sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    total = n * N_LABELS
    tn = total - tp - fp - fn
    kappa = None
    if total:
        po = (tp + tn) / total
        pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (total * total)
        kappa = float((po - pe) / (1 - pe)) if pe < 1 else None
    du, fu = f["urgent"].astype(bool), f["final_urgent"].astype(bool)
    u_tp, u_fp = int((du & fu).sum()), int((du & ~fu).sum())
    u_fn, u_tn = int((~du & fu).sum()), int((~du & ~fu).sum())
    return {
        "n_studies": int(len(df)),
        "n_signed": n,
        "accepted_unchanged_rate": _ratio(int(f["accepted_unchanged"].sum()), n),
        "revision_rate": _ratio(int(f["revised"].sum()), n),
        "significant_revision_rate": _ratio(int(f["significant_revision"].sum()), n),
        "mean_edit_distance": float(f["edit_distance"].mean()) if n else None,
        "precision": precision, "recall": recall, "f1": f1, "kappa": kappa,
        "urgent_confusion": {"tp": u_tp, "fp": u_fp, "fn": u_fn, "tn": u_tn},
        "urgent_ppv": _ratio(u_tp, u_tp + u_fp),
        "urgent_sensitivity": _ratio(u_tp, u_tp + u_fn),
        "urgent_rate": float(df["urgent"].astype(bool).mean()) if len(df) else None,
    }


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


AGE_BANDS = [(0, 40, "<40"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+")]


def age_band(age: pd.Series) -> pd.Series:
    bins = [b[0] for b in AGE_BANDS] + [AGE_BANDS[-1][1]]
    return pd.cut(age, bins=bins, right=False, labels=[b[2] for b in AGE_BANDS]).astype(object).fillna("unknown")


# metric name -> (numerator flag, denominator mask, higher is worse)
SUBGROUP_METRICS = {
    "revision_rate": ("revised", "has_final", True),
    "significant_revision_rate": ("significant_revision", "has_final", True),
    "urgent_ppv": ("final_urgent", "urgent", False),  # of draft-urgent, finally urgent
    "urgent_sensitivity": ("urgent", "final_urgent", False),  # of finally urgent, draft-urgent
}
SUBGROUP_DIMS = ["sex", "age_band", "site", "manufacturer", "view_position", "has_prior"]


def subgroup_table(df: pd.DataFrame, *, min_count: int, gap_threshold: float, alpha: float) -> pd.DataFrame:
    """Each subgroup x metric against the rest of the window: rate, Wilson interval, p-value;
    `flagged` when significantly worse (Bonferroni over tested rows) by at least the gap."""
    f = df.loc[df["has_final"].astype(bool)]
    rows: list[dict[str, object]] = []
    for metric, (num, den, higher_worse) in SUBGROUP_METRICS.items():
        base = f[f[den].astype(bool)]
        if base.empty:
            continue
        hit = base[num].astype(bool)
        tot_n, tot_k = len(base), int(hit.sum())
        for dim in SUBGROUP_DIMS:
            if dim not in base:
                continue
            g = hit.groupby(base[dim].astype(str)).agg(["sum", "count"])
            for level, (k, n) in g.iterrows():
                rows.append({"dimension": dim, "level": level, "metric": metric, "k": int(k), "n": int(n),
                             "rest_k": tot_k - int(k), "rest_n": tot_n - int(n), "higher_is_worse": higher_worse})
    cols = ["dimension", "level", "metric", "k", "n", "rate", "lo", "hi", "rest_rate", "gap", "p",
            "insufficient", "flagged", "higher_is_worse"]
    if not rows:
        return pd.DataFrame(columns=cols)
    t = pd.DataFrame(rows)
    t["rate"] = t["k"] / t["n"]
    t["lo"], t["hi"] = wilson(t["k"].values, t["n"].values)
    with np.errstate(invalid="ignore", divide="ignore"):
        t["rest_rate"] = np.where(t["rest_n"] > 0, t["rest_k"] / t["rest_n"].replace(0, np.nan), np.nan)
    sign = np.where(t["higher_is_worse"], 1.0, -1.0)
    t["gap"] = (t["rate"] - t["rest_rate"]) * sign  # positive: this subgroup is worse
    t["p"] = two_proportion_p(t["k"], t["n"], t["rest_k"], t["rest_n"].clip(lower=1))
    t["insufficient"] = (t["n"] < min_count) | (t["rest_n"] < min_count)
    n_tests = max(1, int((~t["insufficient"]).sum()))
    t["flagged"] = (~t["insufficient"]) & (t["gap"] >= gap_threshold) & (t["p"] < alpha / n_tests)
    return t[cols]
