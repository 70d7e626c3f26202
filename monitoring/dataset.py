"""The per-study frame monitoring works on: one row per incoming study (its latest
comparison), with DICOM metadata, image statistics, prior, model outputs and the final
report. Read with a handful of set-based queries, so it grows linearly with the studies."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from monitoring.metrics import add_revision_columns, age_band


def _read(engine: Engine, sql: str, **params: object) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def load_frame(engine: Engine, since: datetime | None = None, until: datetime | None = None,
               uncertain_as_positive: bool = True) -> pd.DataFrame:
    """Studies whose comparison exists, with time `at` in [since, until)."""
    cond, params = "", {}
    if since is not None:
        cond += " AND COALESCE(s.study_datetime, c.created_at) >= :since"
        params["since"] = since
    if until is not None:
        cond += " AND COALESCE(s.study_datetime, c.created_at) < :until"
        params["until"] = until
    base = _read(engine, f"""
        SELECT c.id AS comparison_id, c.study_id, c.status, c.interval_days, c.urgent, c.draft_text,
               c.created_at, s.study_datetime, s.study_date, s.patient_sex AS sex, s.patient_birth_date,
               s.institution AS site, s.accession
        FROM comparison c JOIN study s ON s.id = c.study_id
        WHERE c.id IN (SELECT MAX(id) FROM comparison GROUP BY study_id) {cond}
    """, **params)
    if base.empty:
        return _empty()
    ids = base["study_id"].tolist()
    cids = base["comparison_id"].tolist()
    lo_s, hi_s = min(ids), max(ids)
    lo_c, hi_c = min(cids), max(cids)
    inst = _read(engine, """
        SELECT study_id, manufacturer, model_name, station_name, view_position, photometric, rows, columns,
               pixel_spacing, kvp, exposure
        FROM instance WHERE id IN (SELECT MIN(id) FROM instance WHERE study_id BETWEEN :a AND :b GROUP BY study_id)
    """, a=lo_s, b=hi_s)
    img = _read(engine, """
        SELECT study_id, AVG(mean) AS img_mean, AVG(std) AS img_std, AVG(p05) AS img_p05, AVG(p95) AS img_p95,
               AVG(entropy) AS img_entropy
        FROM imagestatistics WHERE study_id BETWEEN :a AND :b GROUP BY study_id
    """, a=lo_s, b=hi_s)
    fnd = _read(engine, """
        SELECT comparison_id, change, confidence, guard FROM finding WHERE comparison_id BETWEEN :a AND :b
    """, a=lo_c, b=hi_c)
    rev = _read(engine, """
        SELECT r.comparison_id, r.action, r.final_text AS review_text, r.finished_at FROM review r
        WHERE r.id IN (SELECT MAX(id) FROM review WHERE comparison_id BETWEEN :a AND :b GROUP BY comparison_id)
    """, a=lo_c, b=hi_c)
    sig = _read(engine, """
        SELECT r.study_id, r.text AS signed_text, r.critical AS final_critical FROM signedreport r
        WHERE r.id IN (SELECT MAX(id) FROM signedreport WHERE study_id BETWEEN :a AND :b GROUP BY study_id)
    """, a=lo_s, b=hi_s)

    df = base.merge(inst, on="study_id", how="left").merge(img, on="study_id", how="left")
    if not fnd.empty:
        fnd["unsupported"] = (fnd["guard"] == "unsupported").astype(float)
        fnd = fnd.sort_values(["comparison_id", "confidence"], ascending=[True, False])
        agg = fnd.groupby("comparison_id").agg(
            n_findings=("change", "size"), mean_confidence=("confidence", "mean"),
            unsupported_rate=("unsupported", "mean"), top_change=("change", "first"),
        )
        df = df.merge(agg, left_on="comparison_id", right_index=True, how="left")
    else:
        df = df.assign(n_findings=0, mean_confidence=np.nan, unsupported_rate=np.nan, top_change=None)
    df = df.merge(rev, on="comparison_id", how="left").merge(sig, on="study_id", how="left")

    df["at"] = pd.to_datetime(df["study_datetime"]).fillna(pd.to_datetime(df["created_at"]))
    df["n_findings"] = df["n_findings"].fillna(0).astype(int)
    df["top_change"] = df["top_change"].fillna("none").astype(str)
    df["unsupported_rate"] = df["unsupported_rate"].fillna(0.0)
    df["has_prior"] = (df["status"] == "done") & df["interval_days"].notna()
    df["urgent"] = df["urgent"].astype(bool)
    df["final_critical"] = df["final_critical"].fillna(False).astype(bool)
    df["draft_words"] = df["draft_text"].fillna("").str.split().str.len().astype(int)
    # The final report: a signed report wins; else the review (accepted: the draft itself).
    review_final = df["review_text"].where(df["review_text"].fillna("").str.len() > 0)
    review_final = review_final.where(df["action"] != "accepted", df["draft_text"])
    review_final = review_final.where(df["action"].isin(["accepted", "edited"]))
    df["final_text"] = df["signed_text"].where(df["signed_text"].notna(), review_final)
    birth = pd.to_datetime(df["patient_birth_date"], errors="coerce")
    age = (df["at"] - birth).dt.days / 365.25
    df["age_band"] = age_band(age)
    for c in ("sex", "site", "manufacturer", "model_name", "station_name", "view_position", "photometric"):
        df[c] = df[c].fillna("").astype(str).replace("", "unknown")
    df["has_prior"] = df["has_prior"].map({True: "with_prior", False: "without_prior"})
    df = add_revision_columns(df.assign(has_prior_bool=df["has_prior"] == "with_prior")
                              .rename(columns={"has_prior": "_hp", "has_prior_bool": "has_prior"}),
                              uncertain_as_positive)
    df = df.drop(columns=["has_prior"]).rename(columns={"_hp": "has_prior"})
    return df.sort_values("at").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=[
        "comparison_id", "study_id", "at", "site", "sex", "age_band", "manufacturer", "model_name", "station_name",
        "view_position", "photometric", "rows", "columns", "pixel_spacing", "kvp", "exposure", "img_mean", "img_std",
        "img_p05", "img_p95", "img_entropy", "has_prior", "interval_days", "top_change", "urgent", "mean_confidence",
        "draft_words", "unsupported_rate", "n_findings", "has_final", "revised", "accepted_unchanged",
        "significant_revision", "edit_distance", "final_urgent", "tp", "fp", "fn", "draft_text", "final_text",
    ])
