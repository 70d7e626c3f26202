"""Window metrics from the per-study concordance (monitoring.concordance): revision rate
(significant discordance) with its Wilson interval, the discordance mix, PPV / sensitivity per
finding type and kappa, urgent-flag confusion, report delay; plus the subgroup test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.concordance import CATEGORIES, agreement
from monitoring.stats import two_proportion_p, wilson  # also imported from here by callers

AGE_BANDS = [(0, 40, "<40"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+")]


def age_band(age: pd.Series) -> pd.Series:
    bins = [b[0] for b in AGE_BANDS] + [AGE_BANDS[-1][1]]
    return pd.cut(age, bins=bins, right=False, labels=[b[2] for b in AGE_BANDS]).astype(object).fillna("unknown")


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def window_metrics(df: pd.DataFrame) -> dict[str, object]:
    """Aggregate concordance metrics over the signed studies of a window."""
    f = df.loc[df["has_final"].astype(bool)] if len(df) else df
    n = int(len(f))
    k = int(f["revised"].sum()) if n else 0
    lo, hi = wilson(k, n) if n else (np.nan, np.nan)
    cats = f["category"].value_counts().to_dict() if n else {}
    du, fu = (f["urgent"].astype(bool), f["final_urgent"].astype(bool)) if n else (pd.Series([], dtype=bool),) * 2
    u_tp, u_fp = int((du & fu).sum()), int((du & ~fu).sum())
    u_fn, u_tn = int((~du & fu).sum()), int((~du & ~fu).sum())
    delay = pd.to_numeric(df["report_delay_h"], errors="coerce").dropna() if len(df) else pd.Series([], dtype=float)
    out: dict[str, object] = {
        "n_studies": int(len(df)),
        "n_signed": n,
        # The headline: share of signed studies whose final findings significantly differ from the AI's.
        "revision_rate": _ratio(k, n), "revision_lo": float(lo) if n else None, "revision_hi": float(hi) if n else None,
        "minor_revision_rate": _ratio(int(f["minor_revision"].sum()), n) if n else None,
        "agree_rate": _ratio(int((f["category"] == "agree").sum()), n) if n else None,
        "categories": {c: int(cats.get(c, 0)) for c in CATEGORIES},
        "ai_false_positives": int(f["n_ai_fp"].sum()) if n else 0,
        "ai_misses": int(f["n_ai_miss"].sum()) if n else 0,
        "change_disagreements": int(f["n_change_dis"].sum()) if n else 0,
        "urgent_confusion": {"tp": u_tp, "fp": u_fp, "fn": u_fn, "tn": u_tn},
        "urgent_ppv": _ratio(u_tp, u_tp + u_fp),
        "urgent_sensitivity": _ratio(u_tp, u_tp + u_fn),
        "urgent_rate": float(df["urgent"].astype(bool).mean()) if len(df) else None,
        "report_delay_median_h": float(delay.median()) if len(delay) else None,
        "report_delay_p90_h": float(delay.quantile(0.9)) if len(delay) else None,
        "n_delay": int(len(delay)),
    }
    if n:
        out.update(agreement(f["ai_mask"].to_numpy(np.int64), f["final_mask"].to_numpy(np.int64)))
    else:
        out.update({"per_finding": {}, "kappa": None, "kappa_lo": None, "kappa_hi": None})
    return out


# metric name -> (numerator flag, denominator mask, higher is worse)
SUBGROUP_METRICS = {
    "revision_rate": ("revised", "has_final", True),
    "urgent_ppv": ("final_urgent", "urgent", False),  # of draft-urgent, finally urgent
    "urgent_sensitivity": ("urgent", "final_urgent", False),  # of finally urgent, draft-urgent
}
SUBGROUP_DIMS = ["sex", "age_band", "site", "scanner", "view_position", "has_prior", "model_version"]


def subgroup_table(df: pd.DataFrame, *, min_count: int, gap_threshold: float, alpha: float) -> pd.DataFrame:
    """Each subgroup x metric against the rest of the window: rate, Wilson interval, p-value;
    `flagged` when significantly worse (Bonferroni over tested rows) by at least the gap."""
    f = df.loc[df["has_final"].astype(bool)] if len(df) else df
    rows: list[dict[str, object]] = []
    for metric, (num, den, higher_worse) in SUBGROUP_METRICS.items():
        if f.empty:
            break
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
