"""Strict evaluation of the longitudinal history (issue 29) on series written by a generator.

A series folder (`modeldev/generators/<gen> --series`) holds `series.jsonl` and `<series>/<k>.dcm`,
oldest first. Each series takes the production path: `load_image` on every study, a context built
as the worker builds it, and `comparison.compare_history` with the in-process `RegistrationEngine`
(the model Triton serves), the last study being the current.

Scoring, per labelled lesion (matched to a reported finding on the **same patient side** and the
same type family — lung opacity or the finding itself; an unmatched lesion fails everything):
- **interval direction**: for each consecutive pair of studies in which the lesion is present on at
  least one, the labelled direction (appeared, grew, stable, shrank, resolved) against the one read
  from the finding's `history` (sizes and states); `SIZE_TOLERANCE` decides "stable" on both sides;
- **first seen**: the finding's `first_seen` against the first study the lesion is present on;
- **size**: each study where the lesion is present, the reported `size_mm` within 20 % or 3 mm
  (the issue's bar) — a study the engine did not measure there counts as wrong;
- **stable nodule**: a lesion labelled `stable` over >= 2 years must carry `stable_months` >= 24;
- **recurrent**: a lesion labelled `recurrent` must not be reported simply as `new`: its trajectory
  words say "recurrent";
- every reported disease finding matching no lesion is an **extra claim**.

    .venv/bin/python -m modeldev.generators.thorax3d --series --seed 5 --n 20 --out /tmp/s3d
    .venv/bin/python -m modeldev.series_eval /tmp/s3d:thorax3d [--json out.json] [-v] [--in-order] [--old-history]

`--in-order` runs each series as production meets it: every study from the second on compared with its
history, with the stored result of its most recent prior carried forward; only the last study is scored.
Without it only the last study is compared, with no earlier result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldev.evaluate import wilson

# Diameter changes within this are "stable": the issue's own size tolerance (20 % or 3 mm) read as
# the smallest change a reader would call a change; the same rule for labels and for the engine.
SIZE_TOLERANCE_FRACTION = 0.20
SIZE_TOLERANCE_MM = 3.0
STABLE_BAR_MONTHS = 24  # "a solid nodule stable for >= 2 years" (issue 29)
PLEURAL = frozenset({"effusion", "pneumothorax"})
BARS = {"direction": 0.90, "first_seen": 0.90, "size": 0.85}


def family(finding: str) -> str:
    return finding if finding in PLEURAL else ("device" if finding == "support_device" else "opacity")


def close(a: float, b: float) -> bool:
    return abs(a - b) <= max(SIZE_TOLERANCE_FRACTION * b, SIZE_TOLERANCE_MM)


def direction(before: float | None, after: float | None) -> str | None:
    """The change between two studies' sizes (None = absent)."""
    if before is None and after is None:
        return None
    if before is None:
        return "appeared"
    if after is None:
        return "resolved"
    if close(after, before):
        return "stable"
    return "grew" if after > before else "shrank"


@dataclass
class SeriesScore:
    series_id: str
    direction: list[bool] = field(default_factory=list)
    first_seen: list[bool] = field(default_factory=list)
    size: list[bool] = field(default_factory=list)
    stable: list[bool] = field(default_factory=list)
    recurrent: list[bool] = field(default_factory=list)
    extra: int = 0
    misses: list[str] = field(default_factory=list)


def _engine_sizes(f: dict[str, Any], uids: list[str]) -> list[float | None | str]:
    """The finding's size per study (oldest first): mm, None (absent) or "?" (not assessable/not there)."""
    by = {h["study_uid"]: h for h in f.get("history") or []}
    out: list[float | None | str] = []
    for uid in uids:
        h = by.get(uid)
        if h is None or h["state"] == "not_assessable":
            out.append("?")
        elif h["state"] == "absent":
            out.append(None)
        else:
            out.append(h["size_mm"] if h["size_mm"] is not None else "?")
    if not by:  # no history at all: only the current's own size is known
        out[-1] = f.get("size_mm") if f.get("size_mm") is not None else "?"
    return out


def score_series(rec: dict[str, Any], found: list[dict[str, Any]]) -> SeriesScore:
    s = SeriesScore(rec["series_id"])
    uids = [st["study_uid"] for st in rec["studies"]]
    dates = [dt.date.fromisoformat(st["date"]) for st in rec["studies"]]
    used: set[int] = set()
    for les in rec["lesions"]:
        sizes = les["sizes_mm"]
        cands = [i for i, f in enumerate(found) if i not in used and f["side"] == les["side"]
                 and family(f["finding"]) == family(les["finding"])]
        # among the candidates on the right side, the one in the labelled zone first
        cands.sort(key=lambda i: found[i]["zone"] != les["zone"])
        f = found[cands[0]] if cands else None
        if f is not None:
            used.add(cands[0])
        else:
            s.misses.append(f"{les['lesion_id']} {les['finding']} {les['side']} {les['zone']} {les['kind']}: not reported")
        est = _engine_sizes(f, uids) if f else ["?"] * len(uids)
        for k in range(1, len(uids)):
            want = direction(sizes[k - 1], sizes[k])
            if want is None:
                continue
            a, b = est[k - 1], est[k]
            got = None if "?" in (a, b) else direction(a, b)  # type: ignore[arg-type]
            s.direction.append(got == want)
        first = next((dates[k] for k, v in enumerate(sizes) if v is not None), None)
        if first is not None:
            s.first_seen.append(f is not None and f.get("first_seen") == first.isoformat())
        for k, v in enumerate(sizes):
            if v is not None:
                e = est[k]
                s.size.append(isinstance(e, (int, float)) and close(float(e), float(v)))
        span_months = (dates[-1] - dates[0]).days / 30.44
        if les["kind"] == "stable" and les["finding"] in ("nodule", "mass") and span_months >= STABLE_BAR_MONTHS:
            s.stable.append(f is not None and (f.get("stable_months") or 0) >= STABLE_BAR_MONTHS)
        if les["kind"] == "recurrent":
            s.recurrent.append(f is not None and "recurrent" in (f.get("trajectory") or "").lower())
    s.extra = sum(1 for i, f in enumerate(found) if i not in used and f["finding"] != "support_device"
                  and f["change"] != "stable")
    return s


def run_set(folder: Path, engine: Any, size: int, limit: int | None = None, in_order: bool = False,
            full_baseline: bool = True) -> list[tuple[dict, SeriesScore, list]]:
    """Each series through load_image and compare_history, as the worker runs it. `in_order`: every study
    from the second on is compared with its history in turn, as production meets them, each with the
    stored result of its most recent prior (`compare_history(earlier=...)`); only the last is scored.
    Otherwise only the last study is compared, with no earlier result."""
    from comparison import CompareContext, HistoryImage, compare_history, load_image
    from priorwatch.trajectory import StudyRef

    rows = [json.loads(x) for x in (folder / "series.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for rec in rows[:limit]:
        studies = sorted(rec["studies"], key=lambda st: st["index"])
        imgs = [load_image(folder / rec["series_id"] / f"{st['index']}.dcm", size=size) for st in studies]
        dates = [dt.date.fromisoformat(st["date"]) for st in studies]
        try:
            earlier = None
            for k in (range(1, len(studies)) if in_order else [len(studies) - 1]):
                cur = imgs[k]
                priors = [HistoryImage.of(st["study_uid"], d, im) for st, d, im in zip(studies[:k], dates[:k], imgs[:k])]
                ctx = CompareContext(interval_days=(dates[k] - dates[k - 1]).days).with_current(cur)  # as the worker
                res = compare_history(engine, cur.pixels, StudyRef(study_uid=studies[k]["study_uid"], date=dates[k]),
                                      priors, ctx, full_baseline=full_baseline, earlier=earlier).result
                earlier = res
            found = [json.loads(f.model_dump_json()) for f in res.findings]
        except Exception as exc:  # an engine failure is scored as nothing reported, with its reason
            found = []
            rec = {**rec, "error": f"{type(exc).__name__}: {exc}"[:200]}
        out.append((rec, score_series(rec, found), found))
    return out


def summarise(scores: list[SeriesScore]) -> dict[str, Any]:
    def rate(xs: list[bool]) -> dict[str, Any]:
        k, n = sum(xs), len(xs)
        return {"k": k, "n": n, "rate": (k / n) if n else None, "ci95": wilson(k, n)}

    keys = ("direction", "first_seen", "size", "stable", "recurrent")
    out = {k: rate([x for s in scores for x in getattr(s, k)]) for k in keys}
    out["extra_per_series"] = sum(s.extra for s in scores) / max(1, len(scores))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="FOLDER:GENERATOR (a folder with series.jsonl)")
    ap.add_argument("--size", type=int, default=512, help="prepared image size (the worker's image_size)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--in-order", action="store_true",
                    help="compare every study with its history in turn, each with its prior's stored result (production)")
    ap.add_argument("--old-history", action="store_true",
                    help="the engine 0.4.15 history: one full comparison (the most recent prior), the others only measured")
    args = ap.parse_args(argv)
    from comparison import RegistrationEngine

    engine = RegistrationEngine()
    dump: dict[str, Any] = {}
    print("| generator | direction per interval | first seen | size (20 % or 3 mm) | stable >= 2 y | recurrent | extra per series |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.sets:
        folder, gen = spec.rsplit(":", 1)
        rows = run_set(Path(folder), engine, args.size, args.limit, in_order=args.in_order,
                       full_baseline=not args.old_history)
        summ = summarise([s for _, s, _ in rows])
        dump[gen] = {"summary": summ, "series": [{"label": r, "found": f, "misses": s.misses} for r, s, f in rows]}

        def fmt(r: dict[str, Any]) -> str:
            return "—" if r["rate"] is None else f"{r['k']}/{r['n']} = {r['rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"

        print(f"| {gen} | " + " | ".join(fmt(summ[k]) for k in ("direction", "first_seen", "size", "stable", "recurrent"))
              + f" | {summ['extra_per_series']:.2f} |")
        if args.verbose:
            for r, s, _ in rows:
                for m in s.misses:
                    print(f"  {r['series_id']}: {m}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(dump, indent=1, default=str))


if __name__ == "__main__":
    main()
