"""The per-study frame monitoring works on: one row per incoming study in a time window (its
latest comparison known at the as-of time), with DICOM metadata, image statistics, prior, the
AI's findings, the final findings and the finding-level concordance between them.

Costs follow the window: every query is an index range over the window (study time, then
ids), never the whole history; signed reports are labelled once and the labels kept in the
database (SignedReportLabels). Nothing known after `as_of` is read: comparisons created,
reviews finished and reports received later are left out.

Time: DICOM study times are the site's wall clock. They are read in the institution's zone
(MonitoringSettings.timezone / site_timezones) and converted to UTC; every other timestamp in
the database is UTC already.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from monitoring.concordance import Claim, compare_study, history_states
from monitoring.labeler import label_report
from monitoring.metrics import age_band
from monitoring.settings import MonitoringSettings
from priorwatch.models import SignedReportLabels

LABELER_VERSION = "3"  # bump when the labeler's rules change: cached labels are then relabelled
TZ_PAD = timedelta(hours=15)  # widest UTC offset: local-time query bounds are padded by it, then cut exactly
_CHUNK = 500  # ids per IN (...) list


def _read(engine: Engine, sql: str, **params: object) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def local_to_utc(local: pd.Series, site: pd.Series, ms: MonitoringSettings) -> pd.Series:
    """Naive site-local times -> naive UTC, each row in its institution's zone."""
    out = pd.Series(pd.NaT, index=local.index, dtype="datetime64[ns]")
    local = pd.to_datetime(local)
    zones = site.map(lambda s: ms.site_timezones.get(s, ms.timezone))
    for zone, idx in zones.groupby(zones).groups.items():
        v = local.loc[idx]
        if zone in ("UTC", "Etc/UTC"):
            out.loc[idx] = v
            continue
        conv = v.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
        out.loc[idx] = conv.dt.tz_localize(None)
    return out


def _in_chunks(engine: Engine, sql: str, ids: list[int], **params: object) -> pd.DataFrame:
    parts = []
    for k in range(0, len(ids), _CHUNK):
        chunk = ids[k:k + _CHUNK]
        names = ",".join(f":i{j}" for j in range(len(chunk)))
        parts.append(_read(engine, sql.replace("{ids}", names), **params, **{f"i{j}": v for j, v in enumerate(chunk)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _signed_labels(engine: Engine, sig: pd.DataFrame) -> dict[int, tuple[list[Claim], bool]]:
    """Labels of each signed report id: from the cache, labelling (and caching) the others."""
    ids = sig["signed_report_id"].astype(int).tolist()
    cached = _in_chunks(engine, "SELECT signed_report_id, labeler_version, labels_json, urgent FROM signedreportlabels "
                                "WHERE signed_report_id IN ({ids})", ids) if ids else pd.DataFrame()
    out: dict[int, tuple[list[Claim], bool]] = {}
    if len(cached):
        cached = cached[cached["labeler_version"] == LABELER_VERSION]
        for rid, lj, urg in cached[["signed_report_id", "labels_json", "urgent"]].itertuples(index=False, name=None):
            out[int(rid)] = ([Claim(*c) for c in json.loads(lj)], bool(urg))
    new_rows, stale = [], []
    for rid, txt, hp in sig[["signed_report_id", "signed_text", "has_prior_bool"]].itertuples(index=False, name=None):
        rid = int(rid)
        if rid in out:
            continue
        lab = label_report(txt or "", None if hp else False)
        claims = [Claim(lb.finding, lb.change, lb.side, lb.uncertain) for lb in lab.labels]
        out[rid] = (claims, lab.urgent)
        new_rows.append({"signed_report_id": rid, "labeler_version": LABELER_VERSION, "urgent": lab.urgent,
                         "labels_json": json.dumps([[c.finding, c.change, c.side, c.uncertain] for c in claims])})
        stale.append(rid)
    if new_rows:
        with engine.begin() as conn:
            for k in range(0, len(stale), _CHUNK):
                chunk = stale[k:k + _CHUNK]
                names = ",".join(f":i{j}" for j in range(len(chunk)))
                conn.execute(text(f"DELETE FROM signedreportlabels WHERE signed_report_id IN ({names})"),
                             {f"i{j}": v for j, v in enumerate(chunk)})
            conn.execute(insert(SignedReportLabels.__table__), new_rows)  # type: ignore[attr-defined]
    return out


def load_frame(engine: Engine, since: datetime, until: datetime, ms: MonitoringSettings,
               as_of: datetime | None = None) -> pd.DataFrame:
    """Studies with study time (UTC) in [since, until) and a comparison known at `as_of` (default `until`).

    The steps: the window's studies (`_window_studies`), what belongs to them (`_window_tables`),
    the AI's findings (`_ai_findings`), each study's final reading (`final_reading`) and its
    concordance (`_concordance`), then the derived columns (`_derived_columns`)."""
    as_of = as_of or until
    base = _window_studies(engine, since, until, ms, as_of)
    if base.empty:
        return empty_frame()
    cids = sorted(base["comparison_id"].astype(int).tolist())
    w = _window_tables(engine, base, as_of)
    df = base.merge(w.instances, on="study_id", how="left").merge(w.image_stats, on="study_id", how="left")
    df = df.merge(w.reviews, on="comparison_id", how="left").merge(w.signed, on="study_id", how="left")
    ai = _ai_findings(w.findings, cids)
    if ai.per_comparison is not None:
        df = df.merge(ai.per_comparison, left_on="comparison_id", right_index=True, how="left")
    else:
        df = df.assign(n_findings=0, mean_confidence=np.nan, unsupported_rate=np.nan, top_change=None)

    df["has_prior_bool"] = (df["status"] == "done") & df["interval_days"].notna()
    df["urgent"] = df["urgent"].astype(bool)
    df["final_critical"] = df["final_critical"].fillna(False).astype(bool)
    signed = df[df["signed_report_id"].notna()]
    labels = _signed_labels(engine, signed) if len(signed) else {}
    df = pd.concat([df, _concordance(df, ai.claims, labels, ms)], axis=1)
    return _derived_columns(df, ai.confidences)


def _window_studies(engine: Engine, since: datetime, until: datetime, ms: MonitoringSettings,
                    as_of: datetime) -> pd.DataFrame:
    """Each study of the window with its latest comparison known at `as_of`; `at` is its study
    time in UTC (the comparison's creation time when the study has none). Queried on local time
    padded by TZ_PAD, then cut exactly in UTC."""
    base = _read(engine, """
        SELECT s.id AS study_id, s.study_datetime, s.patient_sex AS sex, s.patient_birth_date, s.institution AS site,
               c.id AS comparison_id, c.status, c.interval_days, c.urgent, c.model AS model, c.model_version,
               c.engine_version, LENGTH(c.draft_text) AS draft_chars, c.created_at
        FROM study s JOIN comparison c ON c.study_id = s.id
        WHERE s.study_datetime >= :lo AND s.study_datetime < :hi AND c.created_at <= :as_of
        UNION ALL
        SELECT s.id, s.study_datetime, s.patient_sex, s.patient_birth_date, s.institution,
               c.id, c.status, c.interval_days, c.urgent, c.model, c.model_version, c.engine_version,
               LENGTH(c.draft_text), c.created_at
        FROM study s JOIN comparison c ON c.study_id = s.id
        WHERE s.study_datetime IS NULL AND c.created_at >= :since AND c.created_at < :until AND c.created_at <= :as_of
    """, lo=since - TZ_PAD, hi=until + TZ_PAD, since=since, until=until, as_of=as_of)
    if base.empty:
        return base
    base = base.sort_values("comparison_id").drop_duplicates("study_id", keep="last")
    base["site"] = base["site"].fillna("").astype(str).replace("", "unknown")
    local = pd.to_datetime(base["study_datetime"])
    at = local_to_utc(local, base["site"], ms)
    base["at"] = at.fillna(pd.to_datetime(base["created_at"]))
    return base[(base["at"] >= since) & (base["at"] < until)]


@dataclass
class _WindowTables:
    """What belongs to the window's studies and comparisons, each read once by id range."""

    instances: pd.DataFrame  # one instance's DICOM metadata per study
    image_stats: pd.DataFrame  # image statistics averaged per study
    findings: pd.DataFrame  # the AI's findings
    reviews: pd.DataFrame  # the last review finished by as_of, per comparison
    signed: pd.DataFrame  # the last final signed report received by as_of, per study


def _window_tables(engine: Engine, base: pd.DataFrame, as_of: datetime) -> _WindowTables:
    sids = sorted(base["study_id"].astype(int).tolist())
    cids = sorted(base["comparison_id"].astype(int).tolist())
    lo_s, hi_s, lo_c, hi_c = sids[0], sids[-1], cids[0], cids[-1]
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
        SELECT comparison_id, finding, side, change, confidence, COALESCE(raw_confidence, confidence) AS raw_confidence,
               guard, history_json FROM finding
        WHERE comparison_id BETWEEN :a AND :b
    """, a=lo_c, b=hi_c)
    rev = _read(engine, """
        SELECT comparison_id, action, final_labels_json FROM review
        WHERE id IN (SELECT MAX(id) FROM review WHERE comparison_id BETWEEN :a AND :b AND finished_at <= :as_of
                     GROUP BY comparison_id)
    """, a=lo_c, b=hi_c, as_of=as_of)
    sig = _read(engine, """
        SELECT id AS signed_report_id, study_id, text AS signed_text, critical AS final_critical, signed_at
        FROM signedreport WHERE id IN (SELECT MAX(id) FROM signedreport WHERE study_id BETWEEN :a AND :b
                                       AND received_at <= :as_of AND result_status IN ('F', 'C') GROUP BY study_id)
    """, a=lo_s, b=hi_s, as_of=as_of)
    return _WindowTables(instances=inst, image_stats=img, findings=fnd, reviews=rev, signed=sig)


@dataclass
class _AiFindings:
    """The AI's findings of the window's comparisons, by comparison id."""

    claims: dict[int, list[Claim]]
    confidences: dict[int, list[tuple[str, float, float]]]  # (type, shown confidence, raw) for calibration
    per_comparison: pd.DataFrame | None  # n_findings, mean_confidence, unsupported_rate, top_change; None: no findings


def _ai_findings(fnd: pd.DataFrame, cids: list[int]) -> _AiFindings:
    ai_claims: dict[int, list[Claim]] = {}
    ai_conf: dict[int, list[tuple[str, float, float]]] = {}
    if fnd.empty:
        return _AiFindings(ai_claims, ai_conf, None)
    fnd = fnd[fnd["comparison_id"].isin(set(cids))]
    for cid, f, side, ch, cf, raw, hist in fnd[["comparison_id", "finding", "side", "change", "confidence",
                                                "raw_confidence", "history_json"]].itertuples(index=False, name=None):
        ai_claims.setdefault(int(cid), []).append(Claim(f, ch, side, False, history_states(hist)))
        ai_conf.setdefault(int(cid), []).append((str(f), float(cf), float(raw)))
    fnd = fnd.assign(unsupported=(fnd["guard"] == "unsupported").astype(float))
    fnd = fnd.sort_values(["comparison_id", "confidence"], ascending=[True, False])
    agg = fnd.groupby("comparison_id").agg(n_findings=("change", "size"), mean_confidence=("confidence", "mean"),
                                           unsupported_rate=("unsupported", "mean"), top_change=("change", "first"))
    return _AiFindings(ai_claims, ai_conf, agg)


def final_reading(action: object, final_labels_json: object, signed_report_id: object, ai: list[Claim],
                  ai_urgent: bool, report_labels: dict[int, tuple[list[Claim], bool]]) -> tuple[list[Claim], bool] | None:
    """The final findings of a study and whether they are urgent, or None while there is no final reading.

    The rule: an accepted draft's final findings are the AI's own; an edited one's are the
    reviewer's structured labels; otherwise a signed report (read by the labeler,
    `report_labels`) is the final reading. A rejected draft with no signed report has none."""
    if action == "accepted":
        return ai, bool(ai_urgent)
    if action == "edited" and isinstance(final_labels_json, str):
        labs = json.loads(final_labels_json or "[]")
        return ([Claim(d["finding"], d.get("change") or "unknown", d.get("side"), False, history_states(d.get("history")))
                 for d in labs],
                any(bool(d.get("urgent")) for d in labs))
    if signed_report_id == signed_report_id and signed_report_id is not None:  # not NaN: a signed report
        return report_labels[int(signed_report_id)]  # type: ignore[call-overload]
    return None


class _Concordance(NamedTuple):
    """One study's concordance columns (their names are the frame's)."""

    has_final: bool
    category: str | None
    revised: bool
    minor_revision: bool
    n_agree: int
    n_ai_fp: int
    n_ai_miss: int
    n_change_dis: int
    urgency_disagreement: bool
    ai_mask: int
    final_mask: int
    final_urgent: bool


_NO_FINAL = _Concordance(False, None, False, False, 0, 0, 0, 0, False, 0, 0, False)


def _concordance(df: pd.DataFrame, ai_claims: dict[int, list[Claim]],
                 labels: dict[int, tuple[list[Claim], bool]], ms: MonitoringSettings) -> pd.DataFrame:
    """The concordance of each study's AI findings with its final reading (critical results count
    as urgent; uncertain final findings only when `uncertain_as_positive`)."""
    recs = []
    for cid, action, lj, rid, ai_urg, crit in df[["comparison_id", "action", "final_labels_json", "signed_report_id",
                                                  "urgent", "final_critical"]].itertuples(index=False, name=None):
        ai = ai_claims.get(int(cid), [])
        reading = final_reading(action, lj, rid, ai, ai_urg, labels)
        if reading is None:
            recs.append(_NO_FINAL)
            continue
        final, fin_urg = reading
        fin_urg = bool(fin_urg or crit)
        if not ms.uncertain_as_positive:
            final = [c for c in final if not c.uncertain]
        sc = compare_study(ai, final, bool(ai_urg), fin_urg)
        recs.append(_Concordance(True, sc.category, sc.significant, sc.minor, sc.agree, sc.ai_false_positive,
                                 sc.ai_miss, sc.change_disagreement, sc.urgency_disagreement, sc.ai_present,
                                 sc.final_present, fin_urg))
    return pd.DataFrame.from_records(recs, columns=list(_Concordance._fields), index=df.index)


def _derived_columns(df: pd.DataFrame, ai_conf: dict[int, list[tuple[str, float, float]]]) -> pd.DataFrame:
    """Columns read by the metrics and drift: counts, report delay, age band, scanner, has_prior,
    unknowns for missing categories; sorted by study time."""
    df["n_findings"] = df["n_findings"].fillna(0).astype(int)
    df["ai_conf"] = [ai_conf.get(int(c), []) for c in df["comparison_id"]]
    df["top_change"] = df["top_change"].fillna("none").astype(str)
    df["unsupported_rate"] = df["unsupported_rate"].fillna(0.0)
    df["draft_chars"] = pd.to_numeric(df["draft_chars"], errors="coerce").fillna(0).astype(float)
    signed_at = pd.to_datetime(df["signed_at"], errors="coerce")
    df["report_delay_h"] = (signed_at - df["at"]).dt.total_seconds() / 3600.0
    birth = pd.to_datetime(df["patient_birth_date"], errors="coerce")
    df["age_band"] = age_band((df["at"] - birth).dt.days / 365.25)
    for c in ("sex", "manufacturer", "model_name", "station_name", "view_position", "photometric", "model_version"):
        df[c] = df[c].fillna("").astype(str).replace("", "unknown")
    df["scanner"] = df["manufacturer"] + " " + df["model_name"]
    df["has_prior"] = df["has_prior_bool"].map({True: "with_prior", False: "without_prior"})
    for c in ("has_final", "revised", "minor_revision", "urgency_disagreement", "final_urgent"):
        df[c] = df[c].astype(bool)
    return df.sort_values("at").reset_index(drop=True)


FRAME_COLUMNS = [
    "comparison_id", "study_id", "at", "site", "scanner", "sex", "age_band", "manufacturer", "model_name",
    "station_name", "view_position", "photometric", "rows", "columns", "pixel_spacing", "kvp", "exposure", "img_mean",
    "img_std", "img_p05", "img_p95", "img_entropy", "has_prior", "interval_days", "top_change", "urgent",
    "mean_confidence", "draft_chars", "unsupported_rate", "n_findings", "model_version", "has_final", "category",
    "revised", "minor_revision", "n_agree", "n_ai_fp", "n_ai_miss", "n_change_dis", "urgency_disagreement", "ai_mask",
    "final_mask", "final_urgent", "report_delay_h", "ai_conf",
]


def empty_frame() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in FRAME_COLUMNS})
    df["at"] = pd.Series(dtype="datetime64[ns]")
    for c in ("has_final", "revised", "minor_revision", "urgency_disagreement", "final_urgent", "urgent"):
        df[c] = pd.Series(dtype=bool)
    return df
