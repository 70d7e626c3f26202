"""Strict, leave-one-generator-out evaluation of the change engine (issue 28).

Every pair set is a folder written by a generator in the `modeldev/generators/BRIEF.md` format
(`labels.jsonl` + `<pair>/prior.dcm`, `<pair>/current.dcm`). Each pair takes the production
path: `load_image` on both DICOM files (orientation, view, spacing, MONOCHROME1), a context
built as the worker builds it, and `RegistrationEngine.compare` — the model Triton serves —
through the engine's public names only.

Scoring is strict (it replaces the lenient per-pair scorer of `benchmarks/change_engine.py`
for the figure of record):
- a labelled change is **detected** only by a reported change on the **same patient side**
  with the **same direction** (new/worsened vs improved/resolved); type and zone are then
  scored per true finding (type exact: nodule is not mass);
- **urgent recall** is per urgent finding: an urgent claim on its side;
- **false urgent** is per pair without an urgent label;
- every reported change that matches no label is an **extra claim**; a stable, normal or
  devices-only pair with any disease change reported is **called changed**;
- support devices are never disease: they are neither required nor counted as extra claims;
- safety cases expecting "not compared" (lateral, another person) pass only when the result
  says "Not compared"; every other pair must be compared (a refusal is a miss);
- every rate carries a 95 % Wilson interval.

The **figure of record** is the worst generator held out from everything the engine was built
or tuned on (`TRAINED_ON`): the reader was trained on `cxrpairs`, and engine choices were made on
the `thorax3d`, `atlas2d` and `slabs` validation sets, so `ssmfield` and `sdfphantom` (both written
blind) are held out. ssmfield's seed-777001 failure census informed engine 0.4.14's rules, so only
its never-read seeds count, and sdfphantom (first run by the record) is the cleaner of the two.

    .venv/bin/python -m modeldev.generators.thorax3d --seed 1 --n 40 --out /tmp/t3d
    .venv/bin/python -m modeldev.evaluate /tmp/t3d:thorax3d /tmp/a2d:atlas2d [--json out.json]
        [--param READER_CHANGE_P=0.4 --param BSPLINE=False]   # another EngineParams value, shipped one untouched

Each pair's engine CPU time (`time.process_time` around `compare`, one thread) is kept in the JSON and
its median printed per set: the issue's "< 1 s per pair" bar is read here.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

CHANGED = frozenset({"new", "worsened", "improved", "resolved"})
WORSE = frozenset({"new", "worsened"})
DEVICE = "support_device"
QUIET_CASES = frozenset({"stable", "normal", "devices_only"})
NOT_COMPARED_PREFIX = "Not compared"
# Generators whose pairs informed the engine (training, tuning or any choice). A set from any
# other generator is held out; the figure of record is the worst held-out one. cxrpairs trained
# the reader; thorax3d, atlas2d and slabs chose engines 0.4.10-0.4.14 through their seed-1001 (and 888001)
# validation sets, so a fresh seed of theirs is no longer held out; ssmfield and sdfphantom (written
# blind) are: ssmfield at never-read seeds only (777001's census informed 0.4.14), sdfphantom first run
# by the record.
TRAINED_ON = frozenset({"cxrpairs", "thorax3d", "atlas2d", "slabs"})
Z95 = 1.959964  # two-sided 95 % normal quantile for the Wilson interval
# The bars on the held-out generator of record (rate, ">=" or "<=").
BARS: dict[str, tuple[float, str]] = {
    "urgent_recall": (0.95, ">="), "false_urgent": (0.05, "<="), "detected": (0.90, ">="),
    "type": (0.85, ">="), "zone": (0.85, ">="), "quiet_called_changed": (0.10, "<="),
}


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """95 % Wilson score interval of k successes in n (None when n is 0)."""
    if n == 0:
        return None
    p = k / n
    den = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PairScore:
    """One pair's strict tallies (counts, so sets add up)."""

    pair_id: str
    case: str
    changes: int = 0
    detected: int = 0
    type_right: int = 0
    zone_right: int = 0
    urgent_labels: int = 0
    urgent_found: int = 0
    urgent_pair: bool = False
    flagged_urgent: bool = False
    quiet: bool = False
    called_changed: bool = False
    extra_claims: int = 0
    expect_not_compared: bool = False
    not_compared: bool = False
    safety_ok: bool = True
    misses: list[str] = field(default_factory=list)


def _polarity(change: str) -> str:
    return "worse" if change in WORSE else "better"


def score_pair(pair_id: str, case: str, expect: str, labels: list[dict[str, Any]],
               findings: list[dict[str, Any]], notes: list[str]) -> PairScore:
    """Strict score of one engine answer against one pair's labels (pure; table-tested)."""
    ps = PairScore(pair_id, case)
    ps.expect_not_compared = expect == "not_compared"
    ps.not_compared = any(n.startswith(NOT_COMPARED_PREFIX) for n in notes)
    if ps.expect_not_compared:
        ps.safety_ok = ps.not_compared and not any(f["change"] in CHANGED for f in findings)
        if not ps.safety_ok:
            ps.misses.append("expected 'not compared', got a comparison")
        return ps
    disease = [lb for lb in labels if lb["finding"] != DEVICE]
    true_changes = [lb for lb in disease if lb["change"] in CHANGED]
    claims = [f for f in findings if f["change"] in CHANGED and f["finding"] != DEVICE]
    ps.changes = len(true_changes)
    ps.quiet = not true_changes
    if ps.not_compared:
        ps.safety_ok = False
        ps.misses.append("refused: " + next(n for n in notes if n.startswith(NOT_COMPARED_PREFIX)))
    used: set[int] = set()
    for lb in true_changes:
        options = [(i, f) for i, f in enumerate(claims) if i not in used and f["side"] == lb["side"]
                   and _polarity(f["change"]) == _polarity(lb["change"])]
        if not options:
            ps.misses.append(f"missed {lb['change']} {lb['side']} {lb['finding']} {lb.get('zone')}")
            continue
        i, f = max(options, key=lambda o: (o[1]["finding"] == lb["finding"], o[1]["zone"] == lb.get("zone")))
        used.add(i)
        ps.detected += 1
        ps.type_right += f["finding"] == lb["finding"]
        ps.zone_right += f["zone"] == lb.get("zone")
        if f["finding"] != lb["finding"] or f["zone"] != lb.get("zone"):
            ps.misses.append(f"{lb['change']} {lb['side']} {lb['finding']} {lb.get('zone')} read as "
                             f"{f['finding']} {f['zone']}")
    ps.extra_claims = len(claims) - len(used)
    ps.called_changed = ps.quiet and bool(claims)
    urgent_labels = [lb for lb in disease if lb.get("urgent")]
    ps.urgent_labels = len(urgent_labels)
    ps.urgent_pair = bool(urgent_labels)
    ps.flagged_urgent = any(f.get("urgent") for f in findings)
    for lb in urgent_labels:
        if any(f.get("urgent") and f["side"] == lb["side"] for f in findings):
            ps.urgent_found += 1
        else:
            ps.misses.append(f"urgent {lb['change']} {lb['side']} {lb['finding']} not flagged on its side")
    if ps.called_changed:
        ps.misses.append("quiet pair called changed: " + ", ".join(f"{f['change']} {f['side']} {f['finding']}"
                                                                   for f in claims))
    return ps


def summarise(scores: list[PairScore]) -> dict[str, dict[str, Any]]:
    """Every rate with its numerator, denominator and Wilson interval."""

    def rate(k: int, n: int) -> dict[str, Any]:
        return {"k": k, "n": n, "rate": (k / n) if n else None, "ci95": wilson(k, n)}

    scored = [s for s in scores if not s.expect_not_compared]
    changes = sum(s.changes for s in scored)
    non_urgent = [s for s in scored if not s.urgent_pair]
    quiet = [s for s in scored if s.quiet]
    safety = [s for s in scores if s.case not in ("change", "stable", "normal")]
    return {
        "urgent_recall": rate(sum(s.urgent_found for s in scored), sum(s.urgent_labels for s in scored)),
        "false_urgent": rate(sum(s.flagged_urgent for s in non_urgent), len(non_urgent)),
        "detected": rate(sum(s.detected for s in scored), changes),
        "type": rate(sum(s.type_right for s in scored), changes),
        "zone": rate(sum(s.zone_right for s in scored), changes),
        "quiet_called_changed": rate(sum(s.called_changed for s in quiet), len(quiet)),
        "extra_claims_per_pair": {"k": sum(s.extra_claims for s in scored), "n": len(scored),
                                  "rate": (sum(s.extra_claims for s in scored) / len(scored)) if scored else None,
                                  "ci95": None},
        "safety_cases_passed": rate(sum(s.safety_ok for s in safety), len(safety)),
    }


def _interval_days(cur: Any, prior: Any) -> int | None:
    def day(ds: Any) -> date | None:
        v = str(getattr(ds, "StudyDate", "") or "")
        try:
            return date(int(v[:4]), int(v[4:6]), int(v[6:8]))
        except ValueError:
            return None

    a, b = day(cur), day(prior)
    return (a - b).days if a and b else None


def run_set(folder: Path, engine: Any, size: int, limit: int | None = None,
            cpu: list[float] | None = None) -> list[tuple[dict, PairScore, list]]:
    """Each pair through load_image and the engine, as the worker runs it; each pair's engine CPU
    seconds appended to `cpu` when given."""
    import pydicom

    from comparison import CompareContext, load_image

    rows = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for rec in rows[:limit]:
        cur_path, pri_path = folder / rec["current"], folder / rec["prior"]
        cur, pri = load_image(cur_path, size=size), load_image(pri_path, size=size)
        days = _interval_days(pydicom.dcmread(cur_path, stop_before_pixels=True),
                              pydicom.dcmread(pri_path, stop_before_pixels=True))
        ctx = CompareContext(interval_days=days, pixel_spacing_mm=cur.spacing_mm,
                             current_view=getattr(cur, "comparison_view", None),
                             prior_view=getattr(pri, "comparison_view", None),
                             orientation_known=(getattr(cur, "orientation_known", None)
                                                and getattr(pri, "orientation_known", None)))
        t0 = time.process_time()
        try:
            res = engine.compare(cur.pixels, pri.pixels, ctx).result
            found = [{"finding": str(f.finding), "side": str(f.side) if f.side else None,
                      "zone": str(f.zone) if f.zone else None, "change": str(f.change), "urgent": bool(f.urgent),
                      "confidence": float(f.confidence)} for f in res.findings]
            notes = list(res.notes)
        except Exception as exc:  # an engine failure is a scored miss with its reason
            found, notes = [], [f"error: {type(exc).__name__}: {exc}"[:200]]
        if cpu is not None:
            cpu.append(time.process_time() - t0)
        score = score_pair(rec["pair_id"], rec["case"], rec.get("expect", "compare"), rec["findings"], found, notes)
        out.append((rec, score, found))
    return out


def _fmt(r: dict[str, Any]) -> str:
    if r["rate"] is None:
        return "—"
    ci = r["ci95"]
    return f"{r['k']}/{r['n']} = {r['rate']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def logo_table(summaries: dict[str, dict[str, dict[str, Any]]], echo: Any = print) -> dict[str, Any]:
    """Print the leave-one-generator-out table; return the figure of record (worst held-out)."""
    keys = list(BARS) + ["extra_claims_per_pair", "safety_cases_passed"]
    echo("| generator | held out | " + " | ".join(keys) + " |")
    echo("|---" * (len(keys) + 2) + "|")
    for gen, summ in summaries.items():
        echo(f"| {gen} | {'no (trained/tuned on)' if gen in TRAINED_ON else 'yes'} | "
             + " | ".join(_fmt(summ[k]) if k != "extra_claims_per_pair" else
                          (f"{summ[k]['rate']:.2f}" if summ[k]["rate"] is not None else "—") for k in keys) + " |")
    held = {g: s for g, s in summaries.items() if g not in TRAINED_ON}
    record: dict[str, Any] = {}
    for k, (bar, how) in BARS.items():
        vals = [(s[k]["rate"], g) for g, s in held.items() if s[k]["rate"] is not None]
        if not vals:
            continue
        worst = min(vals) if how == ">=" else max(vals)
        ok = worst[0] >= bar if how == ">=" else worst[0] <= bar
        record[k] = {"worst": worst[0], "generator": worst[1], "bar": f"{how} {bar}", "met": ok}
    echo("figure of record (worst held-out generator): " + ", ".join(
        f"{k} {v['worst']:.2f} ({v['generator']}, bar {v['bar']}: {'met' if v['met'] else 'NOT met'})"
        for k, v in record.items()))
    return record


def engine_params(assignments: list[str]) -> Any:
    """The shipped `EngineParams` with each NAME=VALUE applied (`dataclasses.replace`; VALUE a Python
    literal); an unknown name is an error, never a silently ignored setting."""
    from comparison.thresholds import DEFAULT_PARAMS

    names = {f.name for f in dataclasses.fields(DEFAULT_PARAMS)}
    changes: dict[str, Any] = {}
    for item in assignments:
        name, _, value = item.partition("=")
        if name not in names:
            raise SystemExit(f"--param {item}: no engine parameter {name!r}")
        changes[name] = ast.literal_eval(value)
    return dataclasses.replace(DEFAULT_PARAMS, **changes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="FOLDER:GENERATOR (a folder with labels.jsonl)")
    ap.add_argument("--size", type=int, default=512, help="prepared image size (the worker's image_size)")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each set")
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    ap.add_argument("--reader", type=Path, default=None, help="other reader weights (a fold's); default: shipped")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="an engine parameter other than shipped (comparison.thresholds.EngineParams), repeatable")
    args = ap.parse_args(argv)

    from comparison import Reader, RegistrationEngine

    params = engine_params(args.param)
    engine = (RegistrationEngine(reader=Reader(args.reader), params=params) if args.reader
              else RegistrationEngine(params=params))
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    dump: dict[str, Any] = {}
    for spec in args.sets:
        folder, _, gen = spec.partition(":")
        cpu: list[float] = []
        results = run_set(Path(folder), engine, args.size, args.limit, cpu)
        summaries[gen or Path(folder).name] = summarise([s for _, s, _ in results])
        dump[gen] = [{"pair_id": s.pair_id, "case": s.case, "misses": s.misses, "found": found, "cpu_s": round(t, 3)}
                     for (_, s, found), t in zip(results, cpu)]
        print(f"{gen}: engine CPU per pair median {statistics.median(cpu):.2f} s, p90 "
              f"{sorted(cpu)[int(0.9 * (len(cpu) - 1))]:.2f} s over {len(cpu)} pairs")
        if args.verbose:
            for _, s, _ in results:
                for m in s.misses:
                    print(f"  {gen} {s.pair_id} [{s.case}]: {m}")
    record = logo_table(summaries)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summaries": summaries, "record": record, "pairs": dump}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
