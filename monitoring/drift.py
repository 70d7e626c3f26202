"""Drift that names each problem: Evidently 0.7 per-column drift for the whole stream, each
site and each scanner (manufacturer + model), against a fixed baseline (a chosen validation
period) and the rolling reference; then each drifting column is attributed to the narrowest
cause that explains it (a new site, a new scanner, a new model version, one site, one
scanner, or the whole stream), so one problem is one alert.

The per-column values come from Evidently (`Report([...]).run(current, reference)` and its
Snapshot dict): Evidently's Kolmogorov-Smirnov test for numbers and chi-square test for
categories, each giving a p-value. A column drifts in a scope when its p-value is at or under
`drift_threshold` (`ratio` = log p / log threshold >= `drift_ratio_alert`). A scope with fewer
than `drift_min_count` current studies is not tested; a scanner used at one site only is the
site's scope already.

Evidently renders a plotly widget for every metric (80 % of its run time); the headless
metric below reuses Evidently's own calculation without the widget. The HTML report, when
asked for, is a normal DataDriftPreset run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently telemetry off: nothing leaves the site

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.core.metric_types import SingleValueCalculation  # noqa: E402
from evidently.metrics import ValueDrift  # noqa: E402
from evidently.legacy.calculations.stattests import StatTest, register_stattest  # noqa: E402
from evidently.legacy.core import ColumnType  # noqa: E402
from evidently.metrics.column_statistics import ValueDriftCalculation  # noqa: E402
from scipy.stats import chi2_contingency  # noqa: E402

# column -> (kind, group). Groups are what a cause changes together: one alert per scope and group.
COLUMNS: dict[str, tuple[str, str]] = {
    "manufacturer": ("cat", "scanner"), "model_name": ("cat", "scanner"), "station_name": ("cat", "scanner"),
    "pixel_spacing": ("num", "scanner"), "kvp": ("num", "scanner"),
    "img_mean": ("num", "image"), "img_std": ("num", "image"), "img_p95": ("num", "image"),
    "view_position": ("cat", "protocol"),
    "site": ("cat", "population"), "sex": ("cat", "population"), "age_band": ("cat", "population"),
    "has_prior": ("cat", "population"),
    "model_version": ("cat", "outputs"), "top_change": ("cat", "outputs"), "mean_confidence": ("num", "outputs"),
    "draft_chars": ("num", "outputs"),
}
# Tests with a p-value: unlike distances they know the sample size, so a site's 100 studies a week and
# the whole stream's thousands are judged alike. Numbers: Evidently's Kolmogorov-Smirnov. Categories:
# a two-sample chi-square (contingency table) registered as an Evidently stat test, because Evidently's
# own "chisquare" takes the reference as expected counts and returns p = 0 for any category the
# reference lacks (a rare age band in a small site window), which would alarm on noise.
NUM_METHOD, CAT_METHOD = "ks", "chi2_two_sample"


def _chi2_two_sample(reference: pd.Series, current: pd.Series, feature_type: ColumnType,
                     threshold: float) -> tuple[float, bool]:
    keys = sorted(set(reference.dropna().astype(str)) | set(current.dropna().astype(str)))
    if len(keys) < 2:
        return 1.0, False
    table = np.array([[int((reference.astype(str) == k).sum()) for k in keys],
                      [int((current.astype(str) == k).sum()) for k in keys]])
    p = float(chi2_contingency(table, correction=False)[1])
    return p, p <= threshold


register_stattest(StatTest(name=CAT_METHOD, display_name="two-sample chi-square",
                           allowed_feature_types=[ColumnType.Categorical], default_threshold=0.05),
                  _chi2_two_sample)


class HeadlessValueDrift(ValueDrift):
    """Evidently's ValueDrift without its plotly widget (same calculation, same value)."""


class _HeadlessValueDriftCalculation(SingleValueCalculation[HeadlessValueDrift]):
    calculate = ValueDriftCalculation.calculate
    display_name = ValueDriftCalculation.display_name

    def _render(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def drift_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The frame's drift columns, typed for Evidently."""
    out = pd.DataFrame(index=df.index)
    for c, (kind, _) in COLUMNS.items():
        if c == "urgent_flag":
            out[c] = df["urgent"].map({True: "urgent", False: "routine"}).astype(str) if "urgent" in df else "routine"
        elif kind == "cat":
            out[c] = df[c].astype(str) if c in df else "unknown"
        else:
            out[c] = pd.to_numeric(df[c], errors="coerce").astype(float) if c in df else np.nan
    return out


def evidently_columns(reference: pd.DataFrame, current: pd.DataFrame, threshold: float) -> dict[str, dict[str, Any]]:
    """Per-column drift from one Evidently Report run: {column: {method, value, threshold, ratio}}."""
    num = [c for c, (k, _) in COLUMNS.items() if k == "num"
           and reference[c].notna().sum() >= 2 and current[c].notna().sum() >= 2]
    cat = [c for c, (k, _) in COLUMNS.items() if k == "cat"]
    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    cols = num + cat
    metrics = [HeadlessValueDrift(column=c, method=NUM_METHOD if c in num else CAT_METHOD, threshold=threshold)
               for c in cols]
    snap = Report(metrics).run(Dataset.from_pandas(current[cols].reset_index(drop=True), data_definition=dd),
                               Dataset.from_pandas(reference[cols].reset_index(drop=True), data_definition=dd))
    out: dict[str, dict[str, Any]] = {}
    for m in snap.dict()["metrics"]:
        cfg, val = m.get("config", {}), m.get("value")
        col, thr = cfg.get("column"), cfg.get("threshold") or threshold
        if col is None or val is None or not np.isfinite(val):
            continue
        p = max(float(val), 1e-300)
        # ratio >= 1: drifting (p at or under the threshold); 2 = p at the threshold squared.
        out[col] = {"method": cfg.get("method"), "value": p, "threshold": float(thr),
                    "ratio": float(np.log10(p) / np.log10(thr))}
    return out


def evidently_html(reference: pd.DataFrame, current: pd.DataFrame, path: Path) -> str:
    """Evidently's DataDriftPreset report for the whole stream, saved as HTML."""
    from evidently.presets import DataDriftPreset

    num = [c for c, (k, _) in COLUMNS.items() if k == "num" and reference[c].notna().any() and current[c].notna().any()]
    cat = [c for c, (k, _) in COLUMNS.items() if k == "cat"]
    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snap = Report([DataDriftPreset(columns=num + cat, num_method=NUM_METHOD, cat_method=CAT_METHOD)]).run(
        Dataset.from_pandas(current[num + cat].reset_index(drop=True), data_definition=dd),
        Dataset.from_pandas(reference[num + cat].reset_index(drop=True), data_definition=dd))
    path.parent.mkdir(parents=True, exist_ok=True)
    snap.save_html(str(path))
    return str(path)


@dataclass
class ScopeResult:
    scope: str  # "global", "site=X", "scanner=Y"
    reference: str  # "baseline" | "rolling"
    n_current: int
    n_reference: int
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    def drifting(self, ratio: float) -> dict[str, float]:
        return {c: v["ratio"] for c, v in self.columns.items() if v["ratio"] >= ratio}


def _scopes(cur: pd.DataFrame, min_count: int) -> list[tuple[str, pd.Series | None, str, str]]:
    """(scope, None for global, dimension, level) for scopes with enough current studies."""
    out: list[tuple[str, Any, str, str]] = [("global", None, "", "")]
    n_sites = cur.groupby("scanner")["site"].nunique() if len(cur) else pd.Series(dtype=int)
    for dim in ("site", "scanner"):
        counts = cur[dim].value_counts()
        for level, n in counts.items():
            if dim == "scanner" and n_sites.get(level, 0) < 2:
                continue
            if n >= min_count:
                out.append((f"{dim}={level}", None, dim, str(level)))
    return out


def analyse(cur: pd.DataFrame, rolling: pd.DataFrame, baseline: pd.DataFrame | None, *, threshold: float,
            ratio: float, min_count: int) -> dict[str, Any]:
    """Per-scope Evidently drift and the attributed conditions (see module doc)."""
    results: list[ScopeResult] = []
    dcur = drift_columns(cur)
    refs = [("rolling", rolling)] + ([("baseline", baseline)] if baseline is not None and len(baseline) else [])
    dref = {name: (r, drift_columns(r)) for name, r in refs}
    novel: dict[str, set[str]] = {}  # dim -> levels absent from every reference (or the baseline, if any)
    novelty_ref = dref["baseline"][0] if "baseline" in dref else rolling
    for dim in ("site", "scanner", "model_version"):
        seen = set(novelty_ref[dim].astype(str)) if len(novelty_ref) else set()
        counts = cur[dim].astype(str).value_counts() if len(cur) else pd.Series(dtype=int)
        novel[dim] = {lv for lv, n in counts.items() if lv not in seen and n >= max(5, min_count // 4)} if seen else set()
    if len(cur) >= min_count:
        for scope, _, dim, level in _scopes(cur, min_count):
            mask = np.ones(len(cur), bool) if not dim else (cur[dim].astype(str) == level).to_numpy()
            if dim and level in novel.get(dim, set()):
                continue  # a new site/scanner has no reference: its novelty is the condition
            # Against the fixed baseline when one is set (a rolling reference absorbs a persisting change
            # within weeks), else the rolling one.
            names = ["baseline"] if "baseline" in dref else ["rolling"]
            for name in names:
                r, dr = dref[name]
                rmask = np.ones(len(r), bool) if not dim else (r[dim].astype(str) == level).to_numpy()
                if rmask.sum() < min_count:
                    continue
                cols = evidently_columns(dr[rmask], dcur[mask], threshold)
                results.append(ScopeResult(scope, name, int(mask.sum()), int(rmask.sum()), cols))
    both = pd.concat([cur[["scanner", "site"]], novelty_ref[["scanner", "site"]]]) if len(novelty_ref) else cur
    conditions = attribute(results, novel, cur, ratio, both)
    return {"scopes": [{"scope": r.scope, "reference": r.reference, "n_current": r.n_current,
                        "n_reference": r.n_reference, "columns": r.columns} for r in results],
            "novel": {k: sorted(v) for k, v in novel.items()}, "conditions": conditions}


def attribute(results: list[ScopeResult], novel: dict[str, set[str]], cur: pd.DataFrame,
              ratio: float, sites_frame: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Drifting columns -> conditions, each column explained once by its narrowest cause.
    `sites_frame` says which scanners serve which sites (current and reference studies together)."""
    sf = cur if sites_frame is None else sites_frame
    drifting: dict[str, dict[str, float]] = {}  # scope -> column -> max ratio over references
    pvals: dict[tuple[str, str], float] = {}
    for r in results:
        for c, v in r.drifting(ratio).items():
            drifting.setdefault(r.scope, {})[c] = max(v, drifting.get(r.scope, {}).get(c, 0.0))
            pvals[(r.scope, c)] = min(r.columns[c]["value"], pvals.get((r.scope, c), 1.0))
    conds: list[dict[str, Any]] = []
    explained: dict[str, set[str]] = {}

    def explain(scope: str, cols: set[str]) -> None:
        explained.setdefault(scope, set()).update(cols)

    sites_of = sf.groupby("scanner")["site"].agg(lambda s: sorted(set(s.astype(str)))).to_dict() if len(sf) else {}
    for site in sorted(novel.get("site", set())):
        n = int((cur["site"].astype(str) == site).sum())
        conds.append({"kind": "new_site", "subject": f"site={site}", "value": float(n), "threshold": 0.0,
                      "columns": ["site"], "message": f"New site {site}: {n} studies this window and none in the "
                      "reference period. Validate the engine on its studies before relying on its drafts."})
        # What a new site brings with it (its stations, images, patients) drifts the whole stream and
        # every scanner model it uses.
        brought = {c for c, (_, g) in COLUMNS.items() if g in ("scanner", "image", "population")}
        explain("global", brought)
        for other, osites in sites_of.items():
            if site in osites:
                explain(f"scanner={other}", brought)
    for scanner in sorted(novel.get("scanner", set())):
        sites = sites_of.get(scanner, [])
        if sites and set(sites) <= novel.get("site", set()):
            continue  # a new site's scanner: the new-site condition says it
        n = int((cur["scanner"].astype(str) == scanner).sum())
        group_cols = {c for c, (_, g) in COLUMNS.items() if g in ("scanner", "image")}
        hit = sorted({c for s in ["global"] + [f"site={x}" for x in sites] for c in drifting.get(s, {}) if c in group_cols})
        conds.append({"kind": "new_scanner", "subject": f"scanner={scanner}", "value": float(n), "threshold": 0.0,
                      "columns": hit, "message": f"New scanner {scanner} at {', '.join(sites)}: {n} studies this window, "
                      f"none in the reference period; drifting with it: {', '.join(hit) or 'nothing yet'}."})
        for s in ["global"] + [f"site={x}" for x in sites]:
            explain(s, group_cols)
        # The other scanners of those sites lose (or share) the site's studies: their mix changes with it.
        for other, osites in sites_of.items():
            if other != scanner and set(osites) & set(sites):
                explain(f"scanner={other}", group_cols | {c for c, (_, g) in COLUMNS.items() if g == "population"})
    for mv in sorted(novel.get("model_version", set())):
        n = int((cur["model_version"].astype(str) == mv).sum())
        out_cols = {c for c, (_, g) in COLUMNS.items() if g == "outputs"}
        hit = sorted({c for s, cols in drifting.items() for c in cols if c in out_cols})
        conds.append({"kind": "model_version", "subject": f"model_version={mv}", "value": float(n), "threshold": 0.0,
                      "columns": hit, "message": f"Model version {mv} is new this window ({n} studies); outputs "
                      f"drifting: {', '.join(hit) or 'none yet'}. Check its revision rate against the previous version."})
        for s in drifting:
            explain(s, out_cols)
    # What is left goes to the narrowest scope that explains it.
    remaining = _narrowest_scope(drifting, explained, sites_of)
    _drift_conditions(remaining, pvals, ratio, conds)
    return conds


def _drift_conditions(remaining: dict[str, dict[str, float]], pvals: dict[tuple[str, str], float], ratio: float,
                      conds: list[dict[str, Any]]) -> None:
    """One drift condition per scope and column group, its columns by how far they drift (appended to conds)."""
    for scope, cols in sorted(remaining.items()):
        by_group: dict[str, dict[str, float]] = {}
        for c, v in cols.items():
            by_group.setdefault(COLUMNS[c][1], {})[c] = v
        for group, gc in sorted(by_group.items()):
            top = sorted(gc.items(), key=lambda kv: -kv[1])
            conds.append({"kind": "drift", "subject": f"{scope} / {group}", "value": float(top[0][1]),
                          "threshold": ratio, "columns": [c for c, _ in top],
                          "message": f"{scope}: {group} columns drift: "
                                     + ", ".join(f"{c} (p={pvals.get((scope, c), pvals.get(('global', c), 0.0)):.0e})"
                                                 for c, _ in top)
                          + ". An early warning that inputs or outputs differ from the reference, not a measure of "
                            "accuracy."})


def _narrowest_scope(drifting: dict[str, dict[str, float]], explained: dict[str, set[str]],
                     sites_of: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """The drifting columns no condition explained, each kept at its narrowest scope: one site of a
    scanner's, a scanner across its sites, the whole stream when several sites drift."""
    remaining: dict[str, dict[str, float]] = {}
    for scope, cols in drifting.items():
        for c, v in cols.items():
            if c not in explained.get(scope, set()):
                remaining.setdefault(scope, {})[c] = v
    for scope in [s for s in remaining if s.startswith("scanner=")]:
        sites = sites_of.get(scope.split("=", 1)[1], [])
        for c in list(remaining[scope]):
            at = [x for x in sites if c in remaining.get(f"site={x}", {})]
            if len(at) == 1 and len(sites) >= 2:
                remaining[scope].pop(c)  # one of the scanner's sites drifts: the site's problem
            else:
                for x in at:  # the scanner drifts across its sites: the scanner's problem
                    remaining[f"site={x}"].pop(c)
    site_scopes = [s for s in remaining if s.startswith("site=")]
    for c in list(remaining.get("global", {})):
        at = [s for s in site_scopes if c in remaining[s]]
        if len(at) >= 2:  # drifts at several sites: the whole stream's problem, said once
            for s in at:
                remaining[s].pop(c)
        elif any(c in cols for s, cols in remaining.items() if s != "global"):
            remaining["global"].pop(c)  # explained by one site or one scanner
    return remaining
