"""`priorwatch simulate`: a stream of studies, AI findings and drafts, and signed reports, with
one known event injected per scenario; monitoring runs over it day by day and the first alert
of the expected kind is compared with the event date.

Scenarios (each in its own database):

- new_site: a fourth site starts sending;
- new_scanner: SITE_B replaces its scanner (other vendor, matrix, brighter images);
- population_shift: SITE_A's patients become older, mostly without a prior, mostly women;
- model_version: a new model version adds a spurious finding to a third of drafts (which
  radiologists strike out) and reports higher confidence;
- report_delay: reports are signed 30-50 h after the study instead of ~2 h;
- wording_only: radiologists rewrite every report in their own words, findings unchanged:
  this must raise no revision alert (nor any other);
- miscalibration: the engine is calibrated (a claim at confidence c is right with probability c;
  the radiologist strikes the wrong ones) until, from the event on, its consolidation confidence
  is inflated (1 - 0.2 (1 - c): 0.6 reads 0.92) while its claims are right as often as before:
  a calibration alert must open within 3 days (issue 30).

The radiologists' reports are written from phrase banks in several styles; the labeler that
reads them is never imported here (an evaluation shares no code with what it evaluates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring.settings import MonitoringSettings
from monitoring.snapshot import compute, load, store
from priorwatch.models import Comparison, Finding, ImageStatistics, Instance, Job, SignedReport, Study

SITES = ["SITE_A", "SITE_B", "SITE_C"]
SITE_P = [0.45, 0.30, 0.25]
SCANNERS = {  # site -> (manufacturer, model, station, rows, cols, spacing, kvp)
    "SITE_A": ("Acme", "DR-100", "A-DR1", 2500, 2048, 0.139, 110.0),
    "SITE_B": ("Acme", "DR-100", "B-DR1", 2500, 2048, 0.139, 110.0),
    "SITE_C": ("Fujix", "FCR-5", "C-CR1", 2140, 1760, 0.150, 120.0),
    "SITE_D": ("Acme", "DR-100", "D-DR1", 2500, 2048, 0.139, 110.0),
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
# The AI's draft: one fixed template per change.
TEMPLATES = {
    "new": "New {side}{name}.", "worsened": "Increased {side}{name}.", "stable": "Stable {side}{name}.",
    "improved": "Improved {side}{name}.", "resolved": "The previously seen {side}{name} has resolved.",
    "no_prior": "{Side}{name}.",
}
# Radiologists' own words: several styles per change (the wording-only editors pick one at random).
STYLES = {
    "new": ["There is a new {side}{name}.", "{Side}{name}, new since the prior study.",
            "Interval development of a {side}{name}.", "New {side}{name} is noted.",
            "Compared with the previous film there is now a {side}{name}."],
    "worsened": ["The {side}{name} has increased.", "{Side}{name}, increased in size.",
                 "Interval enlargement of the {side}{name}.", "Worsening {side}{name}.",
                 "The {side}{name} is larger than on the prior examination."],
    "stable": ["The {side}{name} is unchanged.", "{Side}{name}, unchanged.", "No significant change in the {side}{name}.",
               "Stable appearance of the {side}{name}.", "The {side}{name} is again seen, similar to prior."],
    "improved": ["The {side}{name} has decreased.", "{Side}{name}, smaller than before.",
                 "Interval improvement of the {side}{name}.", "Improving {side}{name}.",
                 "The {side}{name} is less prominent."],
    "resolved": ["The {side}{name} has resolved.", "The previously seen {side}{name} is no longer seen.",
                 "Interval resolution of the {side}{name}."],
    "no_prior": ["{Side}{name}.", "There is {a}{side}{name}.", "{Side}{name} is present."],
}
NORMAL = "No acute cardiopulmonary abnormality. No pneumothorax or pleural effusion."
NORMAL_STYLES = ["Lungs are clear. No pneumothorax or effusion.", "No acute findings. No pleural effusion.",
                 "Clear lungs without pneumothorax."]
NO_PRIOR_LINE = "No prior study available for comparison."
MISCAL_FINDING = "consolidation"  # 18% of claims: ~12 a day at 60 studies, enough to show a change within days
MISCAL_SHRINK = 0.2  # inflated confidence = 1 - MISCAL_SHRINK * (1 - c): the distance to certainty cut to a fifth


def _sentence(tpl: str, finding: str, side: str) -> str:
    s = "" if finding == "cardiomegaly" else (("bilateral " if finding == "edema" else side + " "))
    a = "" if finding in ("edema", "atelectasis", "consolidation", "cardiomegaly") else "a "
    return tpl.format(side=s, Side=s.capitalize(), name=NAMES[finding], a=a).replace("  ", " ").capitalize()


@dataclass(frozen=True)
class Scenario:
    name: str
    expect: tuple[tuple[str, str], ...]  # (kind, subject) that must open within `within_days` of the event
    forbid: tuple[str, ...] = ()  # kinds that must never open
    within_days: int = 7  # the alerting promise for this event


SCENARIOS: dict[str, Scenario] = {
    "new_site": Scenario("new_site", (("new_site", "site=SITE_D"),)),
    "new_scanner": Scenario("new_scanner", (("new_scanner", "scanner=NovaRay NX-9"),)),
    "population_shift": Scenario("population_shift", (("drift", "site=SITE_A / population"),)),
    "model_version": Scenario("model_version", (("model_version", "model_version=2.0"),)),
    "report_delay": Scenario("report_delay", (("report_delay", "report_delay"),)),
    "wording_only": Scenario("wording_only", (), forbid=("revision_rise", "subgroup_gap")),
    "miscalibration": Scenario("miscalibration", (("calibration", f"finding={MISCAL_FINDING}"),), within_days=3),
}


@dataclass
class Generated:
    tables: dict[str, list[dict[str, Any]]]
    n_studies: int


def generate(start: date, days: int, per_day: int, *, scenario: str | None = None, event_day: int = 49,
             seed: int = 7, id_base: int = 0, edit_p: float = 0.06) -> Generated:
    """Rows for every table. Study times are written as the site's local wall clock (as DICOM has them)."""
    rng = np.random.default_rng(seed)
    sites = SITES + (["SITE_D"] if scenario == "new_site" else [])
    n = days * per_day
    day = np.repeat(np.arange(days), per_day)
    t0 = datetime.combine(start, datetime.min.time())
    at = [t0 + timedelta(days=int(d), seconds=int(s)) for d, s in zip(day, rng.integers(7 * 3600, 19 * 3600, n))]
    after = day >= event_day
    site = rng.choice(SITES, n, p=SITE_P).astype(object)
    if scenario == "new_site":
        site[after & (rng.random(n) < 0.2)] = "SITE_D"
    ev = {s: after & (site == s) for s in sites}
    new_scanner = ev["SITE_B"] if scenario == "new_scanner" else np.zeros(n, bool)
    shifted = ev["SITE_A"] if scenario == "population_shift" else np.zeros(n, bool)
    v2 = after if scenario == "model_version" else np.zeros(n, bool)
    late = after if scenario == "report_delay" else np.zeros(n, bool)
    reword = after if scenario == "wording_only" else np.zeros(n, bool)
    calibrated_engine = scenario == "miscalibration"
    sex = np.where(shifted, rng.choice(["F", "M"], n, p=[0.85, 0.15]), rng.choice(["M", "F"], n))
    age = np.where(shifted, rng.integers(82, 98, n), rng.integers(20, 95, n))
    has_prior = rng.random(n) < np.where(shifted, 0.15, 0.7)
    interval = np.where(has_prior, np.maximum(1, rng.exponential(200, n)).astype(int), 0)
    n_find = np.minimum(rng.poisson(1.1, n), 4)
    img = np.column_stack([rng.normal(0.45, 0.03, n), rng.normal(0.22, 0.02, n), rng.normal(0.08, 0.02, n),
                           rng.normal(0.85, 0.03, n), rng.normal(7.2, 0.2, n)])
    img[new_scanner] += np.array([0.08, -0.04, 0.07, -0.05, -0.4])
    delay_h = np.where(late, rng.uniform(30, 50, n), rng.uniform(0.5, 4, n))
    T: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "study", "instance", "imagestatistics", "job", "comparison", "finding", "signedreport")}
    fid = id_base
    sides = ["right", "left", "bilateral"]
    for i in range(n):
        sid = id_base + i + 1
        scanner = NEW_SCANNER if new_scanner[i] else SCANNERS[site[i]]
        acc = f"ACC{sid:08d}"
        _study_rows(T, sid, i, at, sex, age, site, scanner, acc, img, rng)
        kinds = list(rng.choice(FINDINGS, n_find[i], replace=False, p=FINDING_P))
        truth = []  # (finding, change, side) the radiologist agrees with
        for f in kinds:
            ch = str(rng.choice(CHANGES, p=CHANGE_P)) if has_prior[i] else "no_prior"
            truth.append((str(f), ch, str(rng.choice(sides))))
        claims = list(truth)
        spurious = None
        if v2[i] and rng.random() < 0.35:  # the new model version's extra claim
            options = [f for f in FINDINGS[:7] if f not in kinds]
            spurious = (str(rng.choice(options)), "new" if has_prior[i] else "no_prior", str(rng.choice(sides)))
            claims.append(spurious)
        urgent, wrong, fid = _finding_rows(T, sid, fid, claims, bool(v2[i]), calibrated_engine, bool(after[i]), rng)
        draft_parts = [_sentence(TEMPLATES[ch], f, sd) for f, ch, sd in claims] or [NORMAL]
        if not has_prior[i]:
            draft_parts.append(NO_PRIOR_LINE)
        T["comparison"].append({
            "id": sid, "job_id": sid, "study_id": sid, "study_version": 1,
            "status": "done" if has_prior[i] else "no_prior", "interval_days": int(interval[i]) if has_prior[i] else None,
            "urgent": bool(urgent), "draft_text": " ".join(draft_parts), "engine": "registration", "engine_version": "sim",
            "model": "sim", "model_version": "2.0" if v2[i] else "1.0", "structured": True, "fallback": False,
            "result_json": "{}", "created_at": at[i],
        })
        # The radiologist: the true findings, in the draft's words unless rewording; sometimes a real
        # correction (a missed finding added, a claimed one struck out).
        _signed_report(T, sid, acc, truth, wrong, bool(has_prior[i]), bool(reword[i]),
                       at[i] + timedelta(hours=float(delay_h[i])), edit_p, sides, rng)
    return Generated(tables=T, n_studies=n)


def _signed_report(T: dict[str, list[dict[str, Any]]], sid: int, acc: str, truth: list[tuple[str, str, str]],
                   wrong: set[str], has_prior: bool, reword: bool, signed_at: datetime, edit_p: float, sides: list[str],
                   rng: np.random.Generator) -> None:
    """The radiologist's signed report: the true findings less the struck ones, sometimes a real
    correction, in the draft's words unless rewording."""
    final_claims = [c for c in truth if c[0] not in wrong]
    if rng.random() < edit_p:
        if final_claims and rng.random() < 0.5:
            final_claims.pop(int(rng.integers(0, len(final_claims))))
        else:
            f = str(rng.choice([x for x in FINDINGS[:7] if x not in {c[0] for c in final_claims}]))
            final_claims.insert(0, (f, str(rng.choice(CHANGES[:4])) if has_prior else "no_prior",
                                    str(rng.choice(sides))))
    if reword:
        parts = [_sentence(str(rng.choice(STYLES[ch])), f, sd) for f, ch, sd in final_claims]
        parts = parts or [str(rng.choice(NORMAL_STYLES))]
    else:
        parts = [_sentence(TEMPLATES[ch], f, sd) for f, ch, sd in final_claims] or [NORMAL]
    if not has_prior:
        parts.append(NO_PRIOR_LINE)
    if any(f == "pneumothorax" and ch in ("new", "worsened") for f, ch, _ in final_claims):
        parts.append("Findings communicated to the referring physician.")
    final = " ".join(parts)
    T["signedreport"].append({"id": sid, "study_id": sid, "accession": acc, "source": "simulate",
                              "message_control_id": f"SIM{sid}", "result_status": "F", "text": final,
                              "critical": "communicated" in final, "signed_by": "sim", "signed_at": signed_at,
                              "received_at": signed_at})


def _finding_rows(T: dict[str, list[dict[str, Any]]], sid: int, fid: int, claims: list[tuple[str, str, str]],
                  v2: bool, calibrated_engine: bool, after: bool, rng: np.random.Generator) -> tuple[bool, set[str], int]:
    """The AI's finding rows (model 2.0 more confident; the calibrated engine's misses, miscalibrated
    after the event); (urgent, the findings the radiologist strikes, the last finding id)."""
    urgent = False
    wrong: set[str] = set()  # claims the radiologist strikes (the calibrated engine's misses)
    for f, ch, sd in claims:
        u = f == "pneumothorax" and ch in ("new", "worsened")
        urgent |= u
        fid += 1
        conf = float(rng.beta(9, 1.5)) if v2 else float(rng.beta(5, 2))
        if calibrated_engine:
            if rng.random() >= conf:
                wrong.add(str(f))
            if after and f == MISCAL_FINDING:
                conf = 1.0 - MISCAL_SHRINK * (1.0 - conf)
        T["finding"].append({"id": fid, "comparison_id": sid, "finding": f, "side": sd, "zone": None,
                             "change": ch, "urgent": bool(u), "confidence": conf,
                             "guard": "unsupported" if rng.random() < 0.05 else "supported"})
    return urgent, wrong, fid


def _study_rows(T: dict[str, list[dict[str, Any]]], sid: int, i: int, at: list[datetime], sex: np.ndarray,
                age: np.ndarray, site: np.ndarray, scanner: tuple[Any, ...], acc: str, img: np.ndarray,
                rng: np.random.Generator) -> None:
    """One study's study, instance, image-statistics and job rows (the scanner's DICOM metadata,
    jittered kVp and exposure)."""
    T["study"].append({
        "id": sid, "study_uid": f"2.25.{sid}", "patient_id": f"P{sid:08d}", "patient_sex": str(sex[i]),
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
        "view_position": "PA" if rng.random() < 0.8 else "AP",
        "manufacturer": scanner[0], "model_name": scanner[1], "station_name": scanner[2],
        "photometric": "MONOCHROME2", "rows": scanner[3], "columns": scanner[4], "pixel_spacing": scanner[5],
        "kvp": float(scanner[6] + rng.normal(0, 3)), "exposure": float(rng.normal(2.5, 0.5)),
    })
    T["imagestatistics"].append({"id": sid, "study_id": sid, "instance_id": sid, "mean": img[i, 0],
                                 "std": img[i, 1], "p05": img[i, 2], "p95": img[i, 3], "entropy": img[i, 4]})
    T["job"].append({"id": sid, "study_id": sid, "study_version": 1, "idempotency_key": f"sim-{sid}",
                     "state": "done", "attempts": 1, "enqueued_at": at[i], "created_at": at[i], "updated_at": at[i]})


def write(engine: Engine, gen: Generated, chunk: int = 20000) -> None:
    order = [(Study, "study"), (Instance, "instance"), (ImageStatistics, "imagestatistics"), (Job, "job"),
             (Comparison, "comparison"), (Finding, "finding"), (SignedReport, "signedreport")]
    with engine.begin() as conn:
        for model, name in order:
            rows = gen.tables[name]
            for k in range(0, len(rows), chunk):
                conn.execute(insert(model.__table__), rows[k:k + chunk])  # type: ignore[attr-defined]


def next_id_base(engine: Engine) -> int:
    with engine.connect() as conn:
        vals = [conn.execute(select(func.max(t.id))).scalar() or 0  # type: ignore[attr-defined]
                for t in (Study, Instance, Job, Comparison, SignedReport, ImageStatistics, Finding)]
    return max(vals) + 1


@dataclass
class ScenarioResult:
    scenario: str
    event: datetime
    opened: list[tuple[datetime, str, str]] = field(default_factory=list)  # (as_of, kind, subject)
    n_studies: int = 0
    n_snapshots: int = 0
    revision_rates: list[tuple[datetime, float | None]] = field(default_factory=list)

    def first(self, kind: str, subject: str) -> datetime | None:
        return next((t for t, k, s in self.opened if k == kind and s == subject), None)

    def before_event(self) -> list[tuple[datetime, str, str]]:
        return [o for o in self.opened if o[0] <= self.event]

    def passed(self) -> bool:
        sc = SCENARIOS[self.scenario]
        ok = not self.before_event()
        for kind, subject in sc.expect:
            t = self.first(kind, subject)
            ok &= t is not None and self.event < t <= self.event + timedelta(days=sc.within_days)
        ok &= not any(k in sc.forbid for _, k, _ in self.opened)
        return bool(ok)


def scenario_settings(ms: MonitoringSettings, start: date) -> MonitoringSettings:
    """The simulation's baseline: its first four weeks (a chosen validation period)."""
    t0 = datetime.combine(start, datetime.min.time())
    return ms.model_copy(update={"baseline_start": t0, "baseline_end": t0 + timedelta(days=28)})


def snapshot_days(days: int, event_day: int, first_day: int) -> list[int]:
    """Three snapshots in the week before the event (nothing may open there), then daily for a week."""
    before = [d for d in (event_day - 6, event_day - 3, event_day) if d >= first_day]
    return before + [d for d in range(event_day + 1, min(days, event_day + 7) + 1)]


def run(engine: Engine, ms: MonitoringSettings, scenario: str, *, start: date = date(2025, 1, 6), days: int = 59,
        per_day: int = 60, event_day: int = 49, seed: int = 7, send: bool = False, days_list: list[int] | None = None,
        echo: Callable[[str], None] = print) -> ScenarioResult:
    """Generate and write one scenario, then snapshot it day by day; which alerts opened when."""
    ms = scenario_settings(ms, start)
    gen = generate(start, days, per_day, scenario=scenario, event_day=event_day, seed=seed,
                   id_base=next_id_base(engine) - 1)
    write(engine, gen)
    t0 = datetime.combine(start, datetime.min.time())
    res = ScenarioResult(scenario, t0 + timedelta(days=event_day), n_studies=gen.n_studies)
    for d in days_list or snapshot_days(days, event_day, ms.current_days + ms.reference_days):
        as_of = t0 + timedelta(days=d)
        payload = compute(load(engine, as_of, ms), as_of, ms)
        with Session(engine, expire_on_commit=False) as session:
            _, changes = store(session, payload, ms, send=send)
            session.commit()
        res.opened.extend((as_of, a.kind, a.subject) for a in changes["opened"])
        res.revision_rates.append((as_of, payload["current"].get("revision_rate")))
        res.n_snapshots += 1
    return res


def report(res: ScenarioResult, echo: Callable[[str], None] = print) -> None:
    sc = SCENARIOS[res.scenario]
    echo(f"scenario {res.scenario}: event {res.event:%Y-%m-%d}; {res.n_studies} studies, {res.n_snapshots} snapshots")
    for kind, subject in sc.expect:
        t = res.first(kind, subject)
        delay = f"{(t - res.event).days:+d} d after the event" if t else "NEVER"
        echo(f"  expected {kind} {subject}: first {t:%Y-%m-%d} ({delay})" if t else f"  expected {kind} {subject}: NEVER")
    for t, k, s in res.opened:
        tag = "BEFORE EVENT" if t <= res.event else f"{(t - res.event).days:+d} d"
        echo(f"  opened {t:%Y-%m-%d} {k:14s} {s} ({tag})")
    if not res.opened:
        echo("  no alert opened")
    rates = [r for _, r in res.revision_rates if r is not None]
    if rates:
        echo(f"  revision rate (significant, finding-level): min {min(rates):.1%} max {max(rates):.1%}")
    echo(f"  {'PASS' if res.passed() else 'FAIL'}")
