"""Longitudinal benchmark of the registration engine on labelled synthetic pairs.

Every lesion type x change (new, worsened, stable, improved, resolved) plus lesion-free
stable pairs, each with random pose / exposure / noise nuisance on the current, `--n`
times with different seeds, sides and zones. Runs the engine in-process and prints per
finding type sensitivity / specificity, change-direction accuracy, side and zone
localisation, urgent recall and false-urgent rate, seconds per pair; writes JSON.

    .venv/bin/python benchmarks/longitudinal.py --n 1 --out artifacts/longitudinal.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from comparison import CompareContext, RegistrationEngine, load_image, synthetic
from priorwatch.vocabulary import Change, FindingType, Side, Zone

CHANGED = (Change.new, Change.worsened, Change.improved, Change.resolved)


def cases(n: int) -> list[dict]:
    rng = np.random.default_rng(2024)
    out = []
    seed = 1000
    for rep in range(n):
        for lesion in synthetic.LESIONS:
            for change in synthetic.CHANGES:
                side = Side.right if rng.random() < 0.5 else Side.left
                zone = Zone.lower if lesion == FindingType.effusion else (
                    Zone.upper if lesion == FindingType.pneumothorax else [Zone.upper, Zone.middle, Zone.lower][int(rng.integers(3))])
                out.append(dict(lesion=lesion, change=change, side=side, zone=zone, seed=seed))
                seed += 1
        for _ in range(5):
            out.append(dict(lesion=None, change=Change.stable, side=Side.right, zone=Zone.middle, seed=seed))
            seed += 1
    return out


def run(n: int, out_path: Path | None, size: int = 512) -> dict:
    eng = RegistrationEngine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        for i, c in enumerate(cases(n)):
            spec = synthetic.make_pair(tmp, f"BENCH{i:04d}", c["lesion"], c["change"], c["side"], c["zone"], seed=c["seed"])
            cur = load_image(spec.current_paths[0], size=size).pixels
            pri = load_image(spec.prior_paths[0], size=size).pixels
            t = time.perf_counter()
            res = eng.compare(cur, pri, CompareContext(interval_days=spec.interval_days)).result
            dt = time.perf_counter() - t
            rows.append(dict(
                lesion=spec.lesion.value if spec.lesion else None, change=spec.change.value,
                side=spec.side.value if spec.side else None, zone=spec.zone.value if spec.zone else None,
                urgent=spec.urgent, seconds=dt, predicted_urgent=res.urgent,
                findings=[dict(finding=f.finding.value, change=f.change.value, side=f.side.value if f.side else None,
                               zone=f.zone.value if f.zone else None, urgent=f.urgent, confidence=round(f.confidence, 3))
                          for f in res.findings],
            ))
            for p in Path(tmp, f"BENCH{i:04d}").glob("*.dcm"):
                p.unlink()
    return summarise(rows, out_path)


def summarise(rows: list[dict], out_path: Path | None) -> dict:
    per_type: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    types = [t.value for t in synthetic.LESIONS]
    dir_ok = dir_n = side_ok = zone_ok = loc_n = 0
    urg_tp = urg_p = false_urg = non_urg = 0
    for r in rows:
        changed = r["lesion"] is not None and r["change"] in [c.value for c in CHANGED]
        claimed = [f for f in r["findings"] if f["change"] != "stable"]
        for t in types:
            gt = changed and r["lesion"] == t
            pred = any(f["finding"] == t for f in claimed)
            per_type[t]["tp" if gt and pred else "fn" if gt else "fp" if pred else "tn"] += 1
        # change direction: the finding of the right type (else the strongest claim) has the right change
        dir_n += 1
        if changed:
            match = [f for f in claimed if f["finding"] == r["lesion"]] or claimed
            dir_ok += bool(match) and match[0]["change"] == r["change"]
            typed = [f for f in claimed if f["finding"] == r["lesion"]]
            if typed:
                loc_n += 1
                side_ok += typed[0]["side"] == r["side"]
                zone_ok += typed[0]["zone"] == r["zone"]
        else:
            dir_ok += not claimed
        if r["urgent"]:
            urg_p += 1
            urg_tp += r["predicted_urgent"]
        else:
            non_urg += 1
            false_urg += r["predicted_urgent"]
    ratio = lambda a, b: (a / b) if b else float("nan")  # noqa: E731
    summary = {
        "pairs": len(rows),
        "per_type": {t: {"sensitivity": ratio(d["tp"], d["tp"] + d["fn"]), "specificity": ratio(d["tn"], d["tn"] + d["fp"]),
                         **{k: d[k] for k in ("tp", "fn", "fp", "tn")}} for t, d in per_type.items()},
        "change_direction_accuracy": ratio(dir_ok, dir_n),
        "side_accuracy": ratio(side_ok, loc_n), "zone_accuracy": ratio(zone_ok, loc_n), "localised": loc_n,
        "urgent_recall": ratio(urg_tp, urg_p), "urgent_positives": urg_p,
        "false_urgent_rate": ratio(false_urg, non_urg),
        "seconds_per_pair_mean": float(np.mean([r["seconds"] for r in rows])),
        "seconds_per_pair_p95": float(np.percentile([r["seconds"] for r in rows], 95)),
    }
    print(f"{'finding':<15}{'sens':>7}{'spec':>7}{'tp':>5}{'fn':>5}{'fp':>5}{'tn':>5}")
    for t, d in summary["per_type"].items():
        print(f"{t:<15}{d['sensitivity']:>7.2f}{d['specificity']:>7.2f}{d['tp']:>5}{d['fn']:>5}{d['fp']:>5}{d['tn']:>5}")
    print(f"pairs {summary['pairs']}; change-direction accuracy {summary['change_direction_accuracy']:.2f}; "
          f"side {summary['side_accuracy']:.2f} / zone {summary['zone_accuracy']:.2f} over {loc_n} typed detections")
    print(f"urgent recall {summary['urgent_recall']:.2f} ({urg_p} urgent pairs); false-urgent rate {summary['false_urgent_rate']:.2f}")
    print(f"seconds per pair (engine, in-process, size 512): mean {summary['seconds_per_pair_mean']:.2f}, p95 {summary['seconds_per_pair_p95']:.2f}")
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({"summary": summary, "pairs": rows}, indent=1))
        print(f"wrote {out_path}")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1, help="repetitions of the lesion x change grid (30 pairs each)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("artifacts/longitudinal.json"))
    a = ap.parse_args()
    run(a.n, a.out, a.size)


if __name__ == "__main__":
    main()
