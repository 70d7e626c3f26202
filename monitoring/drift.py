"""Drift: Evidently (0.7 API) per-column drift between a reference and a current window, and one
unified concordance score in the style of CheXstray's multi-modal concordance.

The unified score: each column's distance (Kolmogorov-Smirnov statistic for numbers,
Jensen-Shannon distance for categories) is standardised against its own null distribution
(bootstrap pairs drawn from the reference window at the two windows' sizes), clipped, averaged
within each modality (DICOM metadata, image statistics, prior, model outputs), and the
modality scores are averaged. It says "the input or the output looks unlike the reference"
in z-units: an early warning, not a measure of accuracy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently telemetry off: nothing leaves the site

COLUMN_GROUPS: dict[str, dict[str, list[str]]] = {
    "metadata": {
        "cat": ["manufacturer", "model_name", "station_name", "site", "view_position", "photometric"],
        "num": ["pixel_spacing", "rows", "columns", "exposure", "kvp"],
    },
    "image": {"cat": [], "num": ["img_mean", "img_std", "img_p05", "img_p95", "img_entropy"]},
    "prior": {"cat": ["has_prior"], "num": ["interval_days"]},
    "outputs": {
        "cat": ["top_change", "urgent_flag"],
        "num": ["mean_confidence", "draft_words", "unsupported_rate"],
    },
}


def drift_columns(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for g in COLUMN_GROUPS.values():
        for c in g["cat"]:
            if c == "urgent_flag":
                out[c] = df["urgent"].map({True: "urgent", False: "routine"}).astype(str)
            else:
                out[c] = df[c].astype(str) if c in df else "unknown"
        for c in g["num"]:
            out[c] = pd.to_numeric(df[c], errors="coerce").astype(float) if c in df else np.nan
    return out


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return 0.0 if len(a) == len(b) else 1.0
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _js(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Jensen-Shannon distance (base 2) between two integer-coded samples over k categories."""
    p = np.bincount(a, minlength=k).astype(float)
    q = np.bincount(b, minlength=k).astype(float)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


@dataclass
class DriftResult:
    score: float | None  # unified concordance drift score (z units)
    groups: dict[str, float] = field(default_factory=dict)
    columns: list[dict[str, object]] = field(default_factory=list)
    evidently: dict[str, object] = field(default_factory=dict)
    html_path: str | None = None


def concordance(reference: pd.DataFrame, current: pd.DataFrame, *, n_boot: int = 8, z_clip: float = 10.0,
                seed: int = 0) -> DriftResult:
    """The unified score over `drift_columns` frames."""
    if len(reference) < 2 or len(current) < 2:
        return DriftResult(score=None)
    rng = np.random.default_rng(seed)
    n_ref, n_cur = len(reference), len(current)
    boot = [(rng.integers(0, n_ref, n_ref), rng.integers(0, n_ref, n_cur)) for _ in range(n_boot)]
    rows: list[dict[str, object]] = []
    groups: dict[str, float] = {}
    for gname, g in COLUMN_GROUPS.items():
        zs: list[float] = []
        for kind in ("cat", "num"):
            for c in g[kind]:
                if kind == "cat":
                    codes, uniq = pd.factorize(pd.concat([reference[c], current[c]], ignore_index=True))
                    r, cu, k = codes[:n_ref], codes[n_ref:], len(uniq)
                    fn = lambda x, y: _js(x, y, k)  # noqa: E731
                    method = "jensen_shannon"
                else:
                    r, cu = reference[c].to_numpy(float), current[c].to_numpy(float)
                    if np.isnan(r).all() and np.isnan(cu).all():
                        continue
                    fn = _ks
                    method = "ks"
                d = fn(r, cu)
                null = np.array([fn(r[i], r[j]) for i, j in boot])
                mu, sd = float(null.mean()), float(null.std(ddof=1)) if n_boot > 1 else 0.0
                sd = max(sd, 0.01, 0.1 * mu)  # floors: constant columns must not explode
                z = float(np.clip((d - mu) / sd, -z_clip, z_clip))
                zs.append(max(z, 0.0))
                rows.append({"column": c, "group": gname, "method": method, "distance": d, "null_mean": mu,
                             "null_sd": sd, "z": z})
        if zs:
            groups[gname] = float(np.mean(zs))
    score = float(np.mean(list(groups.values()))) if groups else None
    return DriftResult(score=score, groups=groups, columns=rows)


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, html_path: Path | None = None) -> dict[str, object]:
    """Evidently's DataDriftPreset over the same columns. Returns {share, count, columns:{col: {method,
    value, threshold, drifted}}}; saves the HTML report when `html_path` is given."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cat = [c for g in COLUMN_GROUPS.values() for c in g["cat"]]
    num = [c for g in COLUMN_GROUPS.values() for c in g["num"]
           if reference[c].notna().any() and current[c].notna().any()]
    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    cols = num + cat
    snap = Report([DataDriftPreset(columns=cols, num_method="wasserstein", cat_method="jensenshannon")]).run(
        Dataset.from_pandas(current[cols], data_definition=dd),
        Dataset.from_pandas(reference[cols], data_definition=dd),
    )
    out: dict[str, object] = {"columns": {}}
    for m in snap.dict()["metrics"]:
        cfg, val = m.get("config", {}), m.get("value")
        t = cfg.get("type", "")
        if t.endswith("DriftedColumnsCount") and isinstance(val, dict):
            out["count"], out["share"] = val.get("count"), val.get("share")
        elif t.endswith("ValueDrift"):
            thr = cfg.get("threshold")
            out["columns"][cfg.get("column")] = {  # type: ignore[index]
                "method": cfg.get("method"), "value": val, "threshold": thr,
                "drifted": bool(val is not None and thr is not None and val >= thr),
            }
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snap.save_html(str(html_path))
        out["html_path"] = str(html_path)
    return out
