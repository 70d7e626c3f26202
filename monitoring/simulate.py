"""`priorwatch simulate`: months of studies, drafts, reviews and signed reports with known
events injected, then monitoring over them, printing when each alert first fired.

Events: from `event_date` site SITE_B has a new scanner (new manufacturer, model, station,
matrix and pixel spacing; brighter, lower-contrast images) and its drafts are edited far
more often (and more of those edits add or remove a finding); from `lateral_date` a share of
lateral views enters what was a frontal-only stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring.dataset import load_frame
from monitoring.settings import MonitoringSettings
from monitoring.snapshot import compute, store
from priorwatch.models import (
    Comparison, Finding, ImageStatistics, Instance, Job, Review, SignedReport, Study, WorklistItem,
)

SITES = ["SITE_A", "SITE_B", "SITE_C"]
SITE_P = [0.45, 0.30, 0.25]
SCANNERS = {  # site -> (manufacturer, model, station, rows, cols, spacing, kvp)
    "SITE_A": ("Acme", "DR-100", "A-DR1", 2500, 2048, 0.139, 110.0),
    "SITE_B": ("Acme", "DR-100", "B-DR1", 2500, 2048, 0.139, 110.0),
    "SITE_C": ("Fujix", "FCR-5", "C-CR1", 2140, 1760, 0.150, 120.0),
}
NEW_SCANNER = ("NovaRay", "NX-9", "B-NX9", 3000, 3000, 0.100, 100.0)
FINDINGS = ["effusion", "consolidation", "atelectasis", "cardiomegaly", "support_device", "nodule", "edema",
            "pneumothorax", "mass", "other"]
FINDING_P = np.array([0.22, 0.18, 0.14, 0.12, 0.12, 0.08, 0.07, 0.03, 0.02, 0.02])
NAMES = {"effusion": "pleural effusion", "consolidation": "consolidation", "atelectasis": "atelectasis",
         "cardiomegaly": "cardiomegaly", "support_device": "central venous catheter", "nodule": "pulmonary nodule",
         "edema": "pulmonary edema", "pneumothorax": "pneumothorax", "mass": "mass", "other": "rib fracture"}
CHANGES = ["new", "worsened", "stable", "improved", "resolved"]
CHANGE_P = [0.2, 0.15, 0.45, 0.15, 0.05]
TEMPLATES = {
    "new": "New {side}{name}.", "worsened": "Increased {side}{name}.", "stable": "Stable {side}{name}.",
    "improved": "Improved {side}{name}.", "resolved": "The previously seen {side}{name} has resolved.",
    "no_prior": "{Side}{name}.",
}
REWORDED = {
    "new": "There is a new {side}{name}.", "worsened": "The {side}{name} has increased.",
    "stable": "The {side}{name} is unchanged.", "improved": "The {side}{name} has improved.",
    "resolved": "The {side}{name} is no longer seen.", "no_prior": "There is {side}{name}.",
}
NORMAL = "No acute cardiopulmonary abnormality. No pneumothorax or pleural effusion."


def _sentence(tpl: dict[str, str], finding: str, change: str, side: str) -> str:
    s = "" if finding == "cardiomegaly" else (side + " ")
    return tpl[change].format(side=s, Side=s.capitalize(), name=NAMES[finding]).replace("  ", " ")


@dataclass
class Generated:
    tables: dict[str, list[dict[str, Any]]]
    n_studies: int


def generate(start: date, days: int, per_day: int, *, event_day: int | None, lateral_day: int | None,
             lateral_share: float = 0.2, seed: int = 7, id_base: int = 0,
             edit_p: float = 0.18, event_edit_p: float = 0.55) -> Generated:
    """Rows for every table, vectorised where it matters. `id_base` offsets every primary key."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    day = np.repeat(np.arange(days), per_day)
    t0 = datetime.combine(start, datetime.min.time())
    at = [t0 + timedelta(days=int(d), seconds=int(s)) for d, s in zip(day, rng.integers(7 * 3600, 19 * 3600, n))]
    site = rng.choice(SITES, n, p=SITE_P)
    after_event = (day >= event_day) if event_day is not None else np.zeros(n, bool)
    new_scanner = after_event & (site == "SITE_B")
    lateral = ((day >= lateral_day) if lateral_day is not None else np.zeros(n, bool)) & (rng.random(n) < lateral_share)
    sex = rng.choice(["M", "F"], n)
    age = rng.integers(20, 95, n)
    has_prior = rng.random(n) < 0.7
    interval = np.where(has_prior, np.maximum(1, rng.exponential(200, n)).astype(int), 0)
    n_find = np.minimum(rng.poisson(1.1, n), 4)
    img = np.column_stack([rng.normal(0.45, 0.03, n), rng.normal(0.22, 0.02, n), rng.normal(0.08, 0.02, n),
                           rng.normal(0.85, 0.03, n), rng.normal(7.2, 0.2, n)])
    img[new_scanner] += np.array([0.08, -0.04, 0.07, -0.05, -0.4])
    img[lateral] += np.array([-0.05, 0.0, -0.02, -0.03, 0.1])
    p_edit = np.where(new_scanner, event_edit_p, edit_p)
    u_edit = rng.random(n)
    u_kind = rng.random(n)
    u_miss = rng.random(n)

    T: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "study", "instance", "imagestatistics", "job", "comparison", "finding", "worklistitem", "review",
        "signedreport")}
    fid = id_base
    sides = ["right", "left", "bilateral"]
    for i in range(n):
        sid = id_base + i + 1
        scanner = NEW_SCANNER if new_scanner[i] else SCANNERS[site[i]]
        acc = f"ACC{sid:08d}"
        T["study"].append({
            "id": sid, "study_uid": f"2.25.{sid}", "patient_id": f"P{sid:08d}", "patient_sex": sex[i],
            "patient_birth_date": (at[i] - timedelta(days=int(age[i] * 365.25))).date(), "accession": acc,
            "study_date": at[i].date(), "study_datetime": at[i], "modality": "DX", "institution": site[i],
            "role": "incoming", "state": "done", "first_received_at": at[i], "last_received_at": at[i],
            "issuer": "", "patient_name": "", "body_part": "CHEST", "description": "", "reason": "",
            "calling_ae": "SIM", "version": 1, "n_instances": 1,
        })
        T["instance"].append({
            "id": sid, "sop_instance_uid": f"2.25.{sid}.1", "study_id": sid, "series_uid": f"2.25.{sid}.0",
            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1", "transfer_syntax": "1.2.840.10008.1.2.1",
            "path": "", "size": 0, "received_at": at[i], "study_version": 1, "modality": "DX",
            "view_position": ("LL" if lateral[i] else ("PA" if rng.random() < 0.8 else "AP")),
            "manufacturer": scanner[0], "model_name": scanner[1], "station_name": scanner[2],
            "photometric": "MONOCHROME2", "rows": scanner[3], "columns": scanner[4], "pixel_spacing": scanner[5],
            "kvp": float(scanner[6] + rng.normal(0, 3)), "exposure": float(rng.normal(2.5, 0.5)),
        })
        T["imagestatistics"].append({"id": sid, "study_id": sid, "instance_id": sid, "mean": img[i, 0],
                                     "std": img[i, 1], "p05": img[i, 2], "p95": img[i, 3], "entropy": img[i, 4]})
        T["job"].append({"id": sid, "study_id": sid, "study_version": 1, "idempotency_key": f"sim-{sid}",
                         "state": "done", "attempts": 1, "enqueued_at": at[i], "created_at": at[i], "updated_at": at[i]})
        kinds = rng.choice(FINDINGS, n_find[i], replace=False, p=FINDING_P)
        sentences, findings, urgent = [], [], False
        for f in kinds:
            ch = rng.choice(CHANGES, p=CHANGE_P) if has_prior[i] else "no_prior"
            sd = rng.choice(sides)
            u = f == "pneumothorax" and ch in ("new", "worsened")
            urgent |= u
            fid += 1
            findings.append({"id": fid, "comparison_id": sid, "finding": f, "side": sd, "zone": "lower",
                             "change": ch, "urgent": bool(u), "confidence": float(rng.beta(5, 2)),
                             "guard": "unsupported" if rng.random() < 0.05 else "supported"})
            sentences.append((f, ch, sd))
        draft_parts = [_sentence(TEMPLATES, f, c, s) for f, c, s in sentences] or [NORMAL]
        if not has_prior[i]:
            draft_parts.append("No prior study available for comparison.")
        draft = " ".join(draft_parts)
        T["finding"].extend(findings)
        T["comparison"].append({
            "id": sid, "job_id": sid, "study_id": sid, "study_version": 1,
            "status": "done" if has_prior[i] else "no_prior", "interval_days": int(interval[i]) if has_prior[i] else None,
            "urgent": bool(urgent), "draft_text": draft, "engine": "registration", "engine_version": "sim",
            "model": "sim", "model_version": "1", "structured": True, "fallback": False, "result_json": "{}",
            "created_at": at[i],
        })
        # The radiologist: accept, reword (labels kept), or a significant edit (add / remove a finding).
        final_parts = list(draft_parts)
        action = "accepted"
        if u_edit[i] < p_edit[i]:
            action = "edited"
            significant = u_kind[i] < (0.7 if new_scanner[i] else 0.4)
            if significant and sentences and rng.random() < 0.5:
                final_parts.pop(int(rng.integers(0, len(sentences))))  # remove a claimed finding
                if not any(p for p in final_parts if not p.startswith("No prior")):
                    final_parts.insert(0, NORMAL)
            elif significant:
                f = str(rng.choice(FINDINGS[:7]))
                ch = str(rng.choice(CHANGES[:4])) if has_prior[i] else "no_prior"
                final_parts.insert(0, _sentence(TEMPLATES, f, ch, str(rng.choice(sides))))
                if final_parts[1:2] == [NORMAL]:
                    final_parts.pop(1)
            elif sentences:
                j = int(rng.integers(0, len(sentences)))
                final_parts[j] = _sentence(REWORDED, *sentences[j])
            else:
                final_parts = ["Lungs are clear. No pneumothorax or pleural effusion."] + final_parts[1:]
        if u_miss[i] < 0.004:  # a pneumothorax the draft missed
            action = "edited"
            final_parts.insert(0, "New small left pneumothorax. Findings communicated to the referring physician.")
        final = " ".join(final_parts)
        signed_at = at[i] + timedelta(hours=2)
        T["worklistitem"].append({"id": sid, "comparison_id": sid, "study_id": sid, "priority": 1 if urgent else 5,
                                  "status": action, "created_at": at[i]})
        T["review"].append({"id": sid, "worklist_item_id": sid, "comparison_id": sid, "reviewer": "sim",
                            "action": action, "reason": None, "final_text": final, "final_labels_json": "[]",
                            "started_at": signed_at - timedelta(minutes=3), "finished_at": signed_at,
                            "time_spent_s": 180.0})
        T["signedreport"].append({"id": sid, "study_id": sid, "accession": acc, "source": "simulate",
                                  "message_control_id": f"SIM{sid}", "result_status": "F", "text": final,
                                  "critical": "communicated" in final, "signed_by": "sim", "signed_at": signed_at,
                                  "received_at": signed_at})
    return Generated(tables=T, n_studies=n)


def write(engine: Engine, gen: Generated, chunk: int = 20000) -> None:
    order = [(Study, "study"), (Instance, "instance"), (ImageStatistics, "imagestatistics"), (Job, "job"),
             (Comparison, "comparison"), (Finding, "finding"), (WorklistItem, "worklistitem"), (Review, "review"),
             (SignedReport, "signedreport")]
    with engine.begin() as conn:
        for model, name in order:
            rows = gen.tables[name]
            for k in range(0, len(rows), chunk):
                conn.execute(insert(model.__table__), rows[k:k + chunk])  # type: ignore[attr-defined]


def next_id_base(engine: Engine) -> int:
    with engine.connect() as conn:
        vals = [conn.execute(select(func.max(t.id))).scalar() or 0  # type: ignore[attr-defined]
                for t in (Study, Instance, Job, Comparison, WorklistItem, Review, SignedReport, ImageStatistics)]
        fmax = conn.execute(select(func.max(Finding.id))).scalar() or 0  # type: ignore[arg-type]
    return max(vals + [fmax]) + 1


@dataclass
class SimResult:
    event_date: date | None
    lateral_date: date | None
    first_fired: dict[tuple[str, str], datetime] = field(default_factory=dict)
    first_column_drift: dict[str, datetime] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    n_studies: int = 0
    html_path: str | None = None


def run(engine: Engine, ms: MonitoringSettings, *, start: date = date(2025, 1, 6), days: int = 150,
        per_day: int = 60, event_day: int | None = 90, lateral_day: int | None = 111, lateral_share: float = 0.2,
        seed: int = 7, step_days: int = 3, evidently: str = "last", send: bool = True,
        html_dir: Any = None, column_z: float = 6.0, echo: Callable[[str], None] = print) -> SimResult:
    """Generate, write, and monitor at every `step_days`; return when each alert first fired."""
    id_base = next_id_base(engine) - 1
    gen = generate(start, days, per_day, event_day=event_day, lateral_day=lateral_day, lateral_share=lateral_share,
                   seed=seed, id_base=id_base)
    write(engine, gen)
    t0 = datetime.combine(start, datetime.min.time())
    res = SimResult(event_date=(start + timedelta(days=event_day)) if event_day is not None else None,
                    lateral_date=(start + timedelta(days=lateral_day)) if lateral_day is not None else None,
                    n_studies=gen.n_studies)
    echo(f"simulated {gen.n_studies} studies over {days} days from {start} ({per_day}/day, {len(SITES)} sites)")
    frame = load_frame(engine, since=t0, until=t0 + timedelta(days=days + 1),
                       uncertain_as_positive=ms.uncertain_as_positive)
    steps = list(range(ms.current_days + ms.reference_days, days + 1, step_days))
    for k, d in enumerate(steps):
        as_of = t0 + timedelta(days=d)
        last = k == len(steps) - 1
        use_ev = evidently == "all" or (evidently == "last" and last)
        html = None
        if use_ev and html_dir is not None:
            html = html_dir / f"evidently-simulate-{as_of:%Y%m%d}.html"
        payload = compute(frame, as_of, ms, with_evidently=use_ev, html_path=html, with_timeseries=last)
        with Session(engine, expire_on_commit=False) as session:
            _, stored = store(session, payload, ms, send=send, html_path=str(html) if html else None)
            session.commit()
        for a in payload["alerts"]:
            res.first_fired.setdefault((a["kind"], a["subject"]), as_of)
        for c in payload["drift"]["columns"]:
            if c["z"] >= column_z:
                res.first_column_drift.setdefault(c["column"], as_of)
        res.series.append({"as_of": as_of, "drift_score": payload["drift"]["score"],
                           "revision_rate": payload["current"]["revision_rate"], "n_alerts": len(payload["alerts"])})
        if html:
            res.html_path = str(html)
    return res


def report(res: SimResult, echo: Callable[[str], None] = print) -> None:
    def rel(t: datetime) -> str:
        parts = []
        for name, d in (("scanner event", res.event_date), ("lateral views", res.lateral_date)):
            if d is not None:
                parts.append(f"{(t.date() - d).days:+d} d vs {name}")
        return ", ".join(parts)

    echo(f"events: new scanner at SITE_B from {res.event_date}; lateral views from {res.lateral_date}")
    echo("alerts, first fired (snapshot as_of):")
    if not res.first_fired:
        echo("  none")
    for (kind, subject), t in sorted(res.first_fired.items(), key=lambda kv: (kv[1], kv[0])):
        echo(f"  {t:%Y-%m-%d}  {kind:14s} {subject:45s} ({rel(t)})")
    echo("drift columns, first over the column threshold:")
    for col, t in sorted(res.first_column_drift.items(), key=lambda kv: (kv[1], kv[0])):
        echo(f"  {t:%Y-%m-%d}  {col:20s} ({rel(t)})")
    if res.html_path:
        echo(f"Evidently report: {res.html_path}")


def frame_summary(frame: pd.DataFrame) -> str:  # pragma: no cover - debugging aid
    return frame.groupby("site")[["revised", "significant_revision"]].mean().to_string()
