"""Longitudinal benchmark of the registration engine on labelled pairs made from real images.

`priorwatch benchmark` (or `benchmarks/longitudinal.py`) draws every lesion type x change
(new, worsened, stable, improved, resolved) plus lesion-free stable pairs, `--n` times with
different seeds, sides and zones, from pydicom-data's real chest CR (`RG1_UNCR.dcm`, see
`comparison.synthetic`). The current of each pair gets realistic nuisance: rotation,
shift, scale, exposure (gain, offset, gamma), noise and — with `--matrix-variation v` — a
different matrix and pixel spacing (factor drawn from [1 - v, 1 + v]).

It runs the engine in-process on `load_image` output and scores: per finding type
sensitivity and specificity, change-direction accuracy, side / zone localisation, urgent
recall and false-urgent rate, seconds per pair (engine only, and the same pair's DICOM
decoding as the peer measured in the same run), and the expected calibration error of
the raw and of the calibrated confidence (`comparison.calibration`). A second, small run
compares the other chest radiographs pydicom-data ships (the RG1 image's JPEG 2000 lossless
and lossy and implicit-VR encodings: the same patient, so every one of them is a stable pair
against `RG1_UNCR.dcm`); any finding there is a false positive. pydicom-data has no other
chest radiograph (RG2 / RG3 are extremities), so no other anatomy can be benchmarked offline.

Scoring of any results file against a labelled set in the MS-CXR-T layout lives in
`comparison.mscxrt`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comparison import calibration, synthetic
from comparison.preprocess import load_image
from comparison.registration import CompareContext, RegistrationEngine
from priorwatch.vocabulary import CHANGED, Change, FindingType, Side, Zone

__all__ = ["BenchCase", "cases", "run", "summarise", "print_table", "real_file_run", "fit_calibration",
           "DEFAULT_SEED", "CALIBRATION_SEED"]

DEFAULT_SEED = 2024
CALIBRATION_SEED = 7  # the calibration set: never the benchmark's seed
REAL_CHEST_FILES = ("RG1_UNCI.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm")


@dataclass(frozen=True)
class BenchCase:
    lesion: FindingType | None
    change: Change
    side: Side
    zone: Zone
    seed: int
    matrix: float = 1.0


def cases(n: int, seed: int = DEFAULT_SEED, matrix_variation: float = 0.0) -> list[BenchCase]:
    """`n` repetitions of the 5 x 5 lesion x change grid plus 5 lesion-free stable pairs."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 <= matrix_variation <= 0.6:
        raise ValueError("matrix_variation must be within 0..0.6")
    rng = np.random.default_rng(seed)
    out: list[BenchCase] = []
    pair_seed = 1000 + 100_000 * (seed % 10_000)

    def matrix() -> float:
        return float(1.0 + rng.uniform(-matrix_variation, matrix_variation)) if matrix_variation > 0 else 1.0

    for _ in range(n):
        for lesion in synthetic.LESIONS:
            for change in synthetic.CHANGES:
                side = Side.right if rng.random() < 0.5 else Side.left
                zone = Zone.lower if lesion == FindingType.effusion else (
                    Zone.upper if lesion == FindingType.pneumothorax else [Zone.upper, Zone.middle, Zone.lower][int(rng.integers(3))])
                out.append(BenchCase(lesion, change, side, zone, pair_seed, matrix()))
                pair_seed += 1
        for _ in range(5):
            out.append(BenchCase(None, Change.stable, Side.right, Zone.middle, pair_seed, matrix()))
            pair_seed += 1
    return out


def _finding_row(f: Any, raw: float | None) -> dict[str, Any]:
    return dict(finding=f.finding.value, change=f.change.value, side=f.side.value if f.side else None,
                zone=f.zone.value if f.zone else None, urgent=f.urgent,
                raw_confidence=round(float(raw if raw is not None else f.confidence), 4),
                confidence=round(float(calibration.calibrate(raw)) if raw is not None else f.confidence, 4))


def run(n: int = 1, seed: int = DEFAULT_SEED, out_path: Path | None = None, size: int = 512,
        matrix_variation: float = 0.25, engine: Any = None, real_files: bool = True, quiet: bool = False,
        selected: list[BenchCase] | None = None) -> dict[str, Any]:
    """Generate, compare and score; returns {"summary", "pairs", "real_files"} (also written as JSON).
    `selected` replaces the generated grid (a quick run over a few chosen cases)."""
    eng = engine if engine is not None else RegistrationEngine(calibrated=False)
    raw_mode = not getattr(eng, "calibrated", True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        for i, c in enumerate(selected if selected is not None else cases(n, seed, matrix_variation)):
            spec = synthetic.make_pair(tmp, f"BENCH{i:04d}", c.lesion, c.change, c.side, c.zone, seed=c.seed, matrix=c.matrix)
            t = time.perf_counter()
            cur_img = load_image(spec.current_paths[0], size=size)
            pri = load_image(spec.prior_paths[0], size=size).pixels
            t_load = time.perf_counter() - t
            t = time.perf_counter()
            res = eng.compare(cur_img.pixels, pri, CompareContext(interval_days=spec.interval_days,
                                                                 pixel_spacing_mm=cur_img.spacing_mm)).result
            dt = time.perf_counter() - t
            rows.append(dict(
                lesion=spec.lesion.value if spec.lesion else None, change=spec.change.value,
                side=spec.side.value if spec.side else None, zone=spec.zone.value if spec.zone else None,
                urgent=spec.urgent, seed=c.seed, matrix=round(c.matrix, 3), seconds=dt, load_seconds=t_load,
                predicted_urgent=res.urgent,
                findings=[_finding_row(f, f.confidence if raw_mode else None) for f in res.findings],
            ))
            for p in Path(tmp, f"BENCH{i:04d}").glob("*.dcm"):
                p.unlink()
    real = real_file_run(eng, size) if real_files else []
    summary = summarise(rows, real)
    summary.update(n=n, seed=seed, matrix_variation=matrix_variation, size=size)
    if not quiet:
        print_table(summary)
    doc = {"summary": summary, "pairs": rows, "real_files": real}
    if out_path:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(doc, indent=1))
        if not quiet:
            print(f"wrote {out_path}")
    return doc


def real_file_run(eng: Any, size: int = 512) -> list[dict[str, Any]]:
    """The other real chest radiographs in pydicom-data against RG1_UNCR: stable pairs."""
    from pydicom.data import get_testdata_file

    base = get_testdata_file(synthetic.BASE_FILE)
    out = []
    if base is None:
        return out
    prior = load_image(base, size=size).pixels
    for name in REAL_CHEST_FILES:
        p = get_testdata_file(name)
        if p is None:
            continue
        t = time.perf_counter()
        res = eng.compare(load_image(p, size=size).pixels, prior, CompareContext()).result
        out.append(dict(file=name, prior=synthetic.BASE_FILE, expected="stable", seconds=time.perf_counter() - t,
                        findings=[f"{f.finding.value} {f.side.value if f.side else ''} {f.change.value}" for f in res.findings]))
    return out


def _correct(r: dict[str, Any], f: dict[str, Any]) -> bool:
    return (r["lesion"] is not None and r["change"] in [c.value for c in CHANGED] and f["finding"] == r["lesion"]
            and f["side"] == r["side"] and f["change"] == r["change"])


def summarise(rows: list[dict[str, Any]], real: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    per_type: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    types = [t.value for t in synthetic.LESIONS]
    dir_ok = dir_n = side_ok = zone_ok = loc_n = 0
    urg_tp = urg_p = false_urg = non_urg = 0
    raw_c, cal_c, ok = [], [], []
    for r in rows:
        changed = r["lesion"] is not None and r["change"] in [c.value for c in CHANGED]
        claimed = [f for f in r["findings"] if f["change"] != "stable"]
        for t in types:
            gt = changed and r["lesion"] == t
            pred = any(f["finding"] == t for f in claimed)
            per_type[t]["tp" if gt and pred else "fn" if gt else "fp" if pred else "tn"] += 1
        # change direction: the finding of the right type (else the strongest claim) has the right change;
        # a pair without a change is right when nothing is claimed
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
        for f in claimed:
            raw_c.append(f["raw_confidence"])
            cal_c.append(f["confidence"])
            ok.append(_correct(r, f))

    def ratio(a: float, b: float) -> float:
        return (a / b) if b else float("nan")

    secs = [r["seconds"] for r in rows]
    loads = [r.get("load_seconds", 0.0) for r in rows]
    return {
        "pairs": len(rows),
        "per_type": {t: {"sensitivity": ratio(d["tp"], d["tp"] + d["fn"]), "specificity": ratio(d["tn"], d["tn"] + d["fp"]),
                         **{k: d[k] for k in ("tp", "fn", "fp", "tn")}} for t, d in ((t, per_type[t]) for t in types)},
        "change_direction_accuracy": ratio(dir_ok, dir_n),
        "side_accuracy": ratio(side_ok, loc_n), "zone_accuracy": ratio(zone_ok, loc_n), "localised": loc_n,
        "urgent_recall": ratio(urg_tp, urg_p), "urgent_positives": urg_p,
        "false_urgent_rate": ratio(false_urg, non_urg),
        "claims": len(ok), "claims_correct": int(sum(ok)),
        "ece_raw": calibration.expected_calibration_error(raw_c, ok) if ok else float("nan"),
        "ece_calibrated": calibration.expected_calibration_error(cal_c, ok) if ok else float("nan"),
        "seconds_per_pair_mean": float(np.mean(secs)) if secs else float("nan"),
        "seconds_per_pair_p95": float(np.percentile(secs, 95)) if secs else float("nan"),
        "load_seconds_per_pair_mean": float(np.mean(loads)) if loads else float("nan"),
        "real_files": len(real or []), "real_files_with_findings": sum(bool(x["findings"]) for x in (real or [])),
    }


def print_table(s: dict[str, Any]) -> None:
    print(f"{'finding':<15}{'sens':>7}{'spec':>7}{'tp':>5}{'fn':>5}{'fp':>5}{'tn':>5}")
    for t, d in s["per_type"].items():
        print(f"{t:<15}{d['sensitivity']:>7.2f}{d['specificity']:>7.2f}{d['tp']:>5}{d['fn']:>5}{d['fp']:>5}{d['tn']:>5}")
    print(f"pairs {s['pairs']}; change-direction accuracy {s['change_direction_accuracy']:.2f}; "
          f"side {s['side_accuracy']:.2f} / zone {s['zone_accuracy']:.2f} over {s['localised']} typed detections")
    print(f"urgent recall {s['urgent_recall']:.2f} ({s['urgent_positives']} urgent pairs); false-urgent rate {s['false_urgent_rate']:.2f}")
    print(f"confidence ECE over {s['claims']} claims ({s['claims_correct']} right): raw {s['ece_raw']:.3f} -> calibrated {s['ece_calibrated']:.3f}")
    mean, load = s["seconds_per_pair_mean"], s["load_seconds_per_pair_mean"]
    print(f"seconds per pair (engine, in-process): mean {mean:.2f}, p95 {s['seconds_per_pair_p95']:.2f}; "
          f"= {mean / load if load else float('nan'):.1f}x the DICOM decoding of the same pair ({load:.2f} s)")
    if s.get("real_files"):
        print(f"other real chest files vs RG1_UNCR (stable): {s['real_files_with_findings']} of {s['real_files']} with a finding")


def fit_calibration(n: int = 4, seed: int = CALIBRATION_SEED, matrix_variation: float = 0.25,
                    out_path: Path | None = None) -> dict[str, Any]:
    """Run the raw engine on a calibration set (a seed other than the benchmark's) and fit Platt (A, B)."""
    if seed == DEFAULT_SEED:
        raise ValueError("fit the calibration on another seed than the benchmark's")
    doc = run(n, seed, None, matrix_variation=matrix_variation, real_files=False, quiet=True)
    raw, ok = [], []
    for r in doc["pairs"]:
        for f in r["findings"]:
            if f["change"] != "stable":
                raw.append(f["raw_confidence"])
                ok.append(_correct(r, f))
    a, b = calibration.fit_platt(raw, ok)
    cal = calibration.calibrate(np.asarray(raw), a, b)
    out = dict(n=n, seed=seed, claims=len(ok), correct=int(sum(ok)), platt_a=a, platt_b=b,
               ece_raw=calibration.expected_calibration_error(raw, ok),
               ece_fitted=calibration.expected_calibration_error(cal, ok))
    print(json.dumps(out, indent=1))
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=1, help="repetitions of the lesion x change grid (30 pairs each)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--matrix-variation", type=float, default=0.25)
    ap.add_argument("--out", type=Path, default=Path("artifacts/longitudinal.json"))
    ap.add_argument("--fit-calibration", action="store_true", help="fit the Platt constants instead (seed != 2024)")
    ap.add_argument("--score", type=Path, help="a results JSON to score against --labels (MS-CXR-T layout)")
    ap.add_argument("--labels", type=Path)
    a = ap.parse_args(argv)
    if a.score or a.labels:
        from comparison import mscxrt

        if not (a.score and a.labels):
            ap.error("--score and --labels go together")
        mscxrt.print_scores(mscxrt.score_files(a.score, a.labels))
        return
    if a.fit_calibration:
        fit_calibration(a.n, a.seed, a.matrix_variation, a.out)
        return
    run(a.n, a.seed, a.out, a.size, a.matrix_variation)


if __name__ == "__main__":
    main()
