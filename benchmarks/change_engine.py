"""Evaluation of the registration change engine on the independent cxrpairs grids (issue 11).

The pairs come from `benchmarks.cxrpairs`, which imports nothing from `comparison/`; this
harness is the only place that touches the engine, through its public API only:
`prepare_dataset` for each DICOM study, `RegistrationEngine().compare(current, prior, ctx)`.

    .venv/bin/python benchmarks/change_engine.py --split dev --size 1000
    .venv/bin/python benchmarks/change_engine.py --split all --json artifacts/change_engine.json
    priorwatch evaluate --split heldout --n 30

Scoring (per labelled change, a missed change counts as wrong on every column):
- change detected: the engine reported any changed finding (new/worsened/improved/resolved).
- the engine's changed findings are matched to the label by the best (type, side, zone,
  direction) agreement; direction right = same polarity (new/worsened = worse,
  improved/resolved = better); "exact change" also asks for the same word.
- type right: the same finding (strict). "type (nodule~mass)" accepts nodule for mass and
  mass for nodule: both are a round well-defined opacity split only by the 30 mm cut, so a
  size error near the cut is not a typing error of the sign. The strict column is the headline.
- zone right: the predicted zone is in the label's accepted zones (cxrpairs.labels).
- urgent recall over pairs with an urgent label; false-urgent rate over the other pairs.
- stable/normal called changed: pairs whose labels hold no change but the engine reported one.
- extra changed findings: changed findings not matched to any label, per pair.
- ECE: 10-bin expected calibration error of every reported finding's confidence, a finding
  being correct when it matched a label with the right type, side and direction (changed) or a
  stable label of the same type and side (stable).
- time: CPU seconds (process time, BLAS/OpenMP pools held to one thread, so one core even
  on a loaded machine) of the engine's compare per pair, against the DICOM decode (dcmread +
  pixel data) and against decode + prepare of the same two studies.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # numpy, pydicom and the generator load lazily: `priorwatch` imports this module at start
    import pydicom

    from benchmarks.cxrpairs.generate import Pair

CHANGED = ("new", "worsened", "improved", "resolved")
WORSE = ("new", "worsened")
ROUND_GROUP = {"nodule": "round", "mass": "round"}  # the documented compatible group
FULL_SIZE_LONG_SIDE = 2200  # long side (px) of a cxrpairs matrix at scale 1.0
PREPARE_SIZE = 512  # the size the production pipeline prepares images at
ECE_BINS = 10
# The independent grids this harness scores, with their table titles (the names are cxrpairs.SPLIT_SEEDS's
# keys, checked by a test; not imported here because `priorwatch` loads this module at start).
SPLITS = {"dev": "DEV (tuning grid)", "heldout": "HELD-OUT", "heldout2": "HELD-OUT 2 (drawn at stop 13)",
          "heldout3": "HELD-OUT 3 (drawn at stop 14)", "heldout4": "HELD-OUT 4 (drawn at stop 14, after 3 was read)",
          "heldout5": "HELD-OUT 5 (drawn at stop 15)", "heldout6": "HELD-OUT 6 (drawn at stop 16)",
          "heldout7": "HELD-OUT 7 (drawn at stop 17)",
          "heldout8": "HELD-OUT 8 (drawn at stop 18)", "heldout9": "HELD-OUT 9 (drawn at stop 19)", "real": "REAL-CR"}
ALL_SPLITS = ("dev", "heldout", "real")  # what "all" runs: the three tables

# The "done when" targets on the held-out grid (printed next to every figure).
TARGETS = {
    "urgent_recall": (">=", 0.95),
    "false_urgent": ("<=", 0.10),
    "detected": (">=", 0.95),
    "direction": (">=", 0.90),
    "type": (">=", 0.85),
    "side": (">=", 0.95),
    "zone": (">=", 0.85),
    "stable_called_changed": ("<=", 0.10),
}


@dataclass
class PairScore:
    pair_id: str
    seed: int
    background: str
    expected: list[dict]
    got: list[dict]
    urgent_label: bool
    urgent_pred: bool
    per_label: list[dict] = field(default_factory=list)
    called_changed: bool = False
    extra_changed: int = 0
    error: str | None = None
    t_decode: float = 0.0
    t_prepare: float = 0.0
    t_engine: float = 0.0
    calib: list[tuple[float, bool]] = field(default_factory=list)


def _polarity(change: str) -> str:
    return "worse" if change in WORSE else "better"


def _same_type(a: str, b: str, group: bool) -> bool:
    return a == b or (group and ROUND_GROUP.get(a, a) == ROUND_GROUP.get(b, b))


def _f(x) -> str:
    return getattr(x, "value", x) if x is not None else None


def score_pair(labels: list[dict], findings: list[dict], urgent_pred: bool) -> dict:
    """Score one pair's findings (dicts of finding/side/zone/change/urgent/confidence) against its labels."""
    changed_labels = [lb for lb in labels if lb["change"] in CHANGED]
    stable_labels = [lb for lb in labels if lb["change"] == "stable"]
    preds = [f for f in findings if f["change"] in CHANGED]
    used: set[int] = set()
    per_label = []
    for lb in changed_labels:
        best, best_key = None, None
        for i, p in enumerate(preds):
            key = (
                _same_type(p["finding"], lb["finding"], False),
                _same_type(p["finding"], lb["finding"], True),
                p["side"] == lb["side"],
                p["zone"] in lb["zones"],
                _polarity(p["change"]) == _polarity(lb["change"]),
                i not in used,
            )
            if best_key is None or key > best_key:
                best, best_key = i, key
        if best is None:
            per_label.append({"detected": False, "direction": False, "exact_change": False, "type": False,
                              "type_group": False, "side": False, "zone": False, "matched": None})
            continue
        used.add(best)
        p = preds[best]
        per_label.append({
            "detected": True,
            "direction": _polarity(p["change"]) == _polarity(lb["change"]),
            "exact_change": p["change"] == lb["change"],
            "type": p["finding"] == lb["finding"],
            "type_group": _same_type(p["finding"], lb["finding"], True),
            "side": p["side"] == lb["side"],
            "zone": p["zone"] in lb["zones"],
            "matched": best,
        })
    calib = []
    for i, p in enumerate(preds):
        ok = False
        for lb, pl in zip(changed_labels, per_label):
            if pl["matched"] == i:
                ok = pl["type"] and pl["side"] and pl["direction"]
        calib.append((float(p["confidence"]), ok))
    for p in findings:
        if p["change"] == "stable":
            ok = any(_same_type(p["finding"], lb["finding"], True) and p["side"] == lb["side"] for lb in stable_labels)
            calib.append((float(p["confidence"]), ok))
    return {
        "per_label": per_label,
        "called_changed": bool(preds) and not changed_labels,
        "extra_changed": len(preds) - len(used),
        "urgent_label": any(lb["urgent"] for lb in labels),
        "urgent_pred": bool(urgent_pred),
        "calib": calib,
    }


def _finding_dict(f) -> dict:
    return {
        "finding": _f(f.finding), "side": _f(f.side), "zone": _f(f.zone), "change": _f(f.change),
        "urgent": bool(f.urgent), "confidence": round(float(f.confidence), 3),
    }


def _roundtrip(ds: "pydicom.Dataset") -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def prepared_pair(pair: "Pair", size: int = PREPARE_SIZE) -> tuple:
    """(current, prior) as the pipeline receives them: written as DICOM files, read back and
    prepared (`PreparedImage`), so pixel spacing, MONOCHROME1 and VOI LUT take the real path."""
    import pydicom

    from comparison import prepare_dataset

    return tuple(prepare_dataset(pydicom.dcmread(io.BytesIO(_roundtrip(ds))), size=size)
                 for ds in (pair.current, pair.prior))


def run_pair(pair: "Pair", engine, prepare_size: int = PREPARE_SIZE) -> PairScore:
    """Send one pair through decode, prepare and the engine; score it."""
    import pydicom

    from comparison import CompareContext
    from comparison import prepare_dataset

    labels = [lb.as_dict() for lb in pair.labels]
    raw = {role: _roundtrip(ds) for role, ds in (("prior", pair.prior), ("current", pair.current))}
    clock = time.process_time  # CPU time: one thread, robust to other load on the machine
    t0 = clock()
    for b in raw.values():
        pydicom.dcmread(io.BytesIO(b)).pixel_array
    t1 = clock()
    prepared = {role: prepare_dataset(pydicom.dcmread(io.BytesIO(b)), size=prepare_size) for role, b in raw.items()}
    t2 = clock()
    spec = pair.spec
    ps = PairScore(spec.pair_id, spec.seed, spec.background, labels, [], any(lb["urgent"] for lb in labels), False,
                   t_decode=t1 - t0, t_prepare=t2 - t1)
    cur, pri = prepared["current"], prepared["prior"]
    try:
        t3 = clock()
        out = engine.compare(
            cur.pixels, pri.pixels, CompareContext(pixel_spacing_mm=cur.spacing_mm, interval_days=pair.interval_days)
        )
        ps.t_engine = clock() - t3
        res = out.result
        ps.got = [_finding_dict(f) for f in res.findings]
        urgent_pred = bool(res.urgent)
    except Exception as exc:  # an engine failure is a scored miss, listed with its reason
        ps.error = f"{type(exc).__name__}: {exc}"[:300]
        urgent_pred = False
    s = score_pair(labels, [g for g in ps.got if g["change"] != "no_prior"], urgent_pred)
    ps.urgent_pred = s["urgent_pred"]
    ps.per_label, ps.called_changed, ps.extra_changed, ps.calib = (
        s["per_label"], s["called_changed"], s["extra_changed"], s["calib"])
    return ps


def ece(calib: list[tuple[float, bool]], bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: mean |accuracy - confidence| over equal-width bins, weighted by count."""
    import numpy as np

    if not calib:
        return None
    conf = np.array([c for c, _ in calib])
    ok = np.array([o for _, o in calib], dtype=float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(ok[m].mean() - conf[m].mean())
    return float(total / len(conf))


def summarise(scores: list[PairScore]) -> dict:
    """Aggregate figures of one split (fractions with their numerators and denominators)."""
    import numpy as np

    labs = [pl for s in scores for pl in s.per_label]

    def frac(num: int, den: int) -> dict:
        return {"value": (num / den) if den else None, "num": num, "den": den}

    urgent_pairs = [s for s in scores if s.urgent_label]
    other_pairs = [s for s in scores if not s.urgent_label]
    quiet = [s for s in scores if not any(lb["change"] in CHANGED for lb in s.expected)]
    out = {
        "pairs": len(scores),
        "urgent_recall": frac(sum(s.urgent_pred for s in urgent_pairs), len(urgent_pairs)),
        "false_urgent": frac(sum(s.urgent_pred for s in other_pairs), len(other_pairs)),
        "detected": frac(sum(pl["detected"] for pl in labs), len(labs)),
        "direction": frac(sum(pl["direction"] for pl in labs), len(labs)),
        "exact_change": frac(sum(pl["exact_change"] for pl in labs), len(labs)),
        "type": frac(sum(pl["type"] for pl in labs), len(labs)),
        "type_group": frac(sum(pl["type_group"] for pl in labs), len(labs)),
        "side": frac(sum(pl["side"] for pl in labs), len(labs)),
        "zone": frac(sum(pl["zone"] for pl in labs), len(labs)),
        "stable_called_changed": frac(sum(s.called_changed for s in quiet), len(quiet)),
        "extra_changed_per_pair": (sum(s.extra_changed for s in scores) / len(scores)) if scores else None,
        "engine_errors": sum(s.error is not None for s in scores),
        "ece": ece([c for s in scores for c in s.calib]),
        "findings_scored_for_ece": sum(len(s.calib) for s in scores),
    }
    te = np.array([s.t_engine for s in scores if s.error is None]) if scores else np.array([])
    td = np.array([s.t_decode for s in scores]) if scores else np.array([])
    tp = np.array([s.t_prepare for s in scores]) if scores else np.array([])
    if te.size and float(np.median(td)) > 0:
        out["time"] = {
            "engine_s_per_pair": float(np.median(te)),
            "decode_s_per_pair": float(np.median(td)),
            "prepare_s_per_pair": float(np.median(tp)),
            "engine_over_decode": float(np.median(te) / np.median(td)),
            "engine_over_decode_prepare": float(np.median(te) / (np.median(td) + np.median(tp))),
        }
    by = {}
    for s in scores:
        for lb, pl in zip([lb for lb in s.expected if lb["change"] in CHANGED], s.per_label):
            d = by.setdefault(lb["finding"], {"n": 0, "detected": 0, "direction": 0, "type": 0, "side": 0, "zone": 0})
            d["n"] += 1
            for k in ("detected", "direction", "type", "side", "zone"):
                d[k] += int(pl[k])
    out["by_finding"] = by
    return out


def wrong_cases(scores: list[PairScore]) -> list[dict]:
    """Every pair with an error on any scored column: seed, what was expected, what came back."""
    bad = []
    for s in scores:
        problems = []
        if s.error:
            problems.append("engine error")
        if s.urgent_label and not s.urgent_pred:
            problems.append("urgent missed")
        if not s.urgent_label and s.urgent_pred:
            problems.append("false urgent")
        if s.called_changed:
            problems.append("stable/normal called changed")
        for pl in s.per_label:
            problems += [k for k in ("detected", "direction", "type", "side", "zone") if not pl[k]]
            if not pl["detected"]:
                break
        if problems:
            bad.append({"pair": s.pair_id, "seed": s.seed, "wrong": sorted(set(problems)),
                        "expected": s.expected, "got": s.got, "error": s.error})
    return bad


def _fmt(v: dict | float | None) -> str:
    if isinstance(v, dict):
        if v["value"] is None:
            return "n/a"
        return f"{v['value']:.2f} ({v['num']}/{v['den']})"
    return "n/a" if v is None else f"{v:.3f}"


def print_table(name: str, summary: dict, wrong: list[dict], echo=print) -> None:
    echo(f"\n== {name}: {summary['pairs']} pairs ==")
    echo(f"{'measure':32s} {'value':>18s}  target (held-out)")
    rows = [
        ("urgent recall", "urgent_recall"), ("false-urgent rate", "false_urgent"),
        ("change detected", "detected"), ("direction right", "direction"), ("exact change word", "exact_change"),
        ("type right", "type"), ("type right (nodule~mass)", "type_group"), ("side right", "side"),
        ("zone right", "zone"), ("stable/normal called changed", "stable_called_changed"),
    ]
    for label, key in rows:
        t = TARGETS.get(key)
        echo(f"{label:32s} {_fmt(summary[key]):>18s}  {(t[0] + ' ' + format(t[1], '.2f')) if t else ''}")
    echo(f"{'extra changed findings / pair':32s} {_fmt(summary['extra_changed_per_pair']):>18s}")
    echo(f"{'ECE of confidences':32s} {_fmt(summary['ece']):>18s}  ({summary['findings_scored_for_ece']} findings)")
    echo(f"{'engine errors':32s} {summary['engine_errors']:>18d}")
    tm = summary.get("time")
    if tm:
        echo(f"{'engine CPU s/pair (median, 1 thr)':32s} {tm['engine_s_per_pair']:>18.3f}")
        echo(f"{'  / DICOM decode of the pair':32s} {tm['engine_over_decode']:>17.2f}x  (decode {tm['decode_s_per_pair']:.3f} s)")
        echo(f"{'  / decode + prepare':32s} {tm['engine_over_decode_prepare']:>17.2f}x  (prepare {tm['prepare_s_per_pair']:.3f} s)")
    if summary["by_finding"]:
        echo(f"{'by finding':14s} {'n':>3s} {'detect':>7s} {'dir':>5s} {'type':>5s} {'side':>5s} {'zone':>5s}")
        for f, d in sorted(summary["by_finding"].items()):
            n = d["n"]
            echo(f"{f:14s} {n:3d} " + " ".join(f"{d[k] / n:{w}.2f}" for k, w in
                                              (("detected", 7), ("direction", 5), ("type", 5), ("side", 5), ("zone", 5))))
    echo(f"-- wrong cases ({len(wrong)}) --")
    for w in wrong:
        exp = "; ".join(f"{e['finding']} {e['side']} {e['zone']} {e['change']}{' URGENT' if e['urgent'] else ''}"
                        f" {e['size_mm']}mm" for e in w["expected"]) or "nothing (normal)"
        got = "; ".join(f"{g['finding']} {g['side']} {g['zone']} {g['change']}{' URGENT' if g['urgent'] else ''}"
                        f" c={g['confidence']:.2f}" for g in w["got"]) or "nothing"
        echo(f"{w['pair']} seed={w['seed']} [{', '.join(w['wrong'])}]\n    expected: {exp}\n    got:      {got}"
             + (f"\n    error: {w['error']}" if w["error"] else ""))


def evaluate(split: str, n: int | None = None, size: int = 2000, prepare_size: int = PREPARE_SIZE,
             progress=None) -> tuple[dict, list[PairScore]]:
    """Run the engine over a split's first n pairs at matrices of ~`size` px long side."""
    from threadpoolctl import threadpool_limits

    from benchmarks.cxrpairs import grid, make_pair
    from comparison import RegistrationEngine

    scale = min(size / FULL_SIZE_LONG_SIDE, 1.5)
    engine = RegistrationEngine()
    scores = []
    with threadpool_limits(1):
        for spec in grid(split, n):
            pair = make_pair(spec, scale=scale)
            scores.append(run_pair(pair, engine, prepare_size))
            if progress:
                progress(len(scores))
    return summarise(scores), scores


def run(splits: list[str], n: int | None, size: int, json_out: str | None, echo=print, prepare_size: int = PREPARE_SIZE) -> dict:
    report = {"size": size, "prepare_size": prepare_size, "splits": {}}
    for split in splits:
        t0 = time.perf_counter()
        summary, scores = evaluate(split, n, size, prepare_size,
                                   progress=lambda k: k % 10 == 0 and print(f"{split}: {k} pairs", file=sys.stderr))
        wrong = wrong_cases(scores)
        print_table(SPLITS[split], summary, wrong, echo)
        echo(f"({time.perf_counter() - t0:.0f} s for the split, generation included)")
        report["splits"][split] = {"summary": summary, "wrong": wrong,
                                   "pairs": [{"pair": s.pair_id, "expected": s.expected, "got": s.got,
                                              "per_label": s.per_label, "urgent_pred": s.urgent_pred}
                                             for s in scores]}
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=1, default=str))
        echo(f"wrote {json_out}")
    return report


def _splits(name: str) -> list[str]:
    return list(ALL_SPLITS) if name == "all" else [name]


def register(app) -> None:
    """`priorwatch benchmark` (the engine's own generator, then the independent dev, held-out
    and real-CR tables; or an MS-CXR-T label set) and `priorwatch evaluate` (independent only).

    Lives here, not in `comparison`, because an evaluation may import what it measures but the
    engine's room may not import its evaluation."""
    import typer

    @app.command(name="evaluate")
    def evaluate_cmd(
        split: str = typer.Option("all", "--split", help=" | ".join([*SPLITS, "all"])),
        n: int = typer.Option(0, "--n", help="first N pairs of each split (0 = all)"),
        size: int = typer.Option(2000, "--size", help="matrix long side in pixels (2000 ~ a real CXR)"),
        json_out: str = typer.Option("", "--json", help="write the full report here"),
    ) -> None:
        """Score the change engine on independent pairs: dev, held-out and real-CR tables."""
        if split not in (*SPLITS, "all"):
            raise typer.BadParameter(f"split must be one of {', '.join(SPLITS)} or all")
        run(_splits(split), n or None, size, json_out or None, echo=typer.echo)

    @app.command(name="benchmark")
    def benchmark_cmd(
        n: int = typer.Option(1, "--n", help="Own generator: repetitions of the lesion x change grid (30 pairs each)."),
        seed: int = typer.Option(2024, "--seed", help="Own generator's seed (the calibration set uses 7)."),
        out: Optional[Path] = typer.Option(Path("artifacts/longitudinal.json"), "--out", help="JSON to write."),
        matrix_variation: float = typer.Option(0.25, "--matrix-variation",
                                               help="Own generator: the current's matrix / spacing differs by up to this factor."),
        size: int = typer.Option(512, "--size", help="Long side of the prepared images (own generator)."),
        split: str = typer.Option("all", "--split", help="Independent pairs: " + " | ".join([*SPLITS, "all", "none"]) + "."),
        pairs: int = typer.Option(0, "--pairs", help="Independent pairs: first N of each split (0 = all)."),
        pair_size: int = typer.Option(2000, "--pair-size", help="Independent pairs: matrix long side in pixels."),
        score: Optional[Path] = typer.Option(None, "--score", help="Score this results JSON (priorwatch results --json)..."),
        labels: Optional[Path] = typer.Option(None, "--labels", help="...against this MS-CXR-T layout labels CSV."),
    ) -> None:
        """Score the registration engine: its own generator's table, then the independent
        generator's dev, held-out and real-CR tables; or (--score/--labels) any results file
        against an MS-CXR-T layout label set."""
        if score is not None or labels is not None:
            if score is None or labels is None:
                raise typer.BadParameter("--score and --labels go together")
            from comparison import mscxrt

            try:
                s = mscxrt.score_files(score, labels)
            except (OSError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from exc
            mscxrt.print_scores(s)
            if out is not None and out != Path("artifacts/longitudinal.json"):
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(s, indent=1))
            return
        if split not in (*SPLITS, "all", "none"):
            raise typer.BadParameter(f"split must be one of {', '.join(SPLITS)}, all or none")
        from comparison import benchmark as bench

        typer.echo("== the engine's own generator (comparison.synthetic) ==")
        try:
            bench.run(n, seed, out, size, matrix_variation)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if split != "none":
            typer.echo("== independent pairs (benchmarks.cxrpairs; tune on dev only) ==")
            run(_splits(split), pairs or None, pair_size, None, echo=typer.echo)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=[*SPLITS, "all"], default="all")
    ap.add_argument("--n", type=int, default=None, help="first N pairs of each split")
    ap.add_argument("--size", type=int, default=2000, help="matrix long side in pixels (2000 ~ a real CXR)")
    ap.add_argument("--prepare-size", type=int, default=PREPARE_SIZE)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    run(_splits(a.split), a.n, a.size, a.json, prepare_size=a.prepare_size)


if __name__ == "__main__":
    main()
