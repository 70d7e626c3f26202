"""Pick the reader's two cut-offs on the dev grid (never held-out), from saved aligned pairs.

Runs the shipped reader (or `--weights`) on the dev pairs saved by `modeldev.reader_data
--split dev` and scores the engine's findings (the production `_from_reads`) with the
harness's own `score_pair`, for a grid of `READER_CHANGE_P` x `READER_URGENT_P`:

    .venv/bin/python -m modeldev.reader_tune --dev artifacts/reader/dev

`--full` replays the whole engine after registration (`RegistrationEngine.analyse`: change regions,
sign rules, reader, fluid height) on the saved pairs at the shipped settings and lists each pair it
gets wrong with what the reader and the sign rules said: the engine's table for that grid in ~0.3 s a
pair instead of ~3 s (decode and registration are saved), e.g. on dev saved at the benchmark's 2000 px:

    .venv/bin/python -m modeldev.reader_data --split dev --size 2000 --out artifacts/reader/dev2k --count 104
    .venv/bin/python -m modeldev.reader_tune --dev artifacts/reader/dev2k --full

Imports only the engine's public names (`replay_aligned`, `findings_from_reads`, `Reader`,
`comparison.thresholds` and `comparison.calibration`); it moved here from `benchmarks/` in issue 28. Cut-offs
and switches are tried as other `EngineParams` values (`dataclasses.replace(DEFAULT_PARAMS, ...)`), never by
overwriting the shipped ones.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _aligned(path: Path):
    """A pair saved by `modeldev.reader_data`: its labels, the `Aligned` the engine saw, the working spacing."""
    from comparison import replay_aligned

    z = np.load(path)
    al = replay_aligned(z["cw"].astype(np.float32), z["mapped"].astype(np.float32), z["right"], z["left"], z["roi"],
                        float(z["midline"]), float(z["quality"]))
    return json.loads(str(z["labels"])), al, float(z["spacing"])


def _reads(weights: Path | None, dev_dir: Path, swap_tta: bool) -> list[tuple[list[dict], list, object, float, tuple]]:
    from comparison import Reader

    reader = Reader(weights)
    out = []
    for p in sorted(dev_dir.glob("*.npz")):
        labels, al, spacing = _aligned(p)
        out.append((labels, reader.read(al, spacing, swap_tta=swap_tta), al.lungs, al.quality, al.cw.shape))
    return out


def _scored(labels: list[dict], findings: list) -> tuple:
    """The harness's score of one pair's engine findings: (`PairScore`, `score_pair`'s dict)."""
    from benchmarks.change_engine import PairScore, _finding_dict, score_pair

    got = [_finding_dict(f) for f in findings]
    s = score_pair(labels, got, any(f.urgent for f in findings))
    return PairScore("", 0, "synthetic", labels, got, s["urgent_label"], s["urgent_pred"], per_label=s["per_label"],
                     called_changed=s["called_changed"], extra_changed=s["extra_changed"], calib=s["calib"]), s


def full(dev_dir: Path, weights: Path | None, verbose: bool, params: Any) -> dict:
    """The whole engine after registration (`RegistrationEngine.analyse`: regions, sign rules, reader,
    fluid height) on each saved pair, at the shipped settings with these reader weights, scored by
    the harness."""
    from benchmarks.change_engine import summarise
    from comparison import CompareContext, Reader, RegistrationEngine

    eng = RegistrationEngine(reader=Reader(weights), params=params)
    scores = []
    for p in sorted(dev_dir.glob("*.npz")):
        labels, al, spacing = _aligned(p)
        out = eng.analyse(al, al.cw.shape, CompareContext(pixel_spacing_mm=spacing or None))
        res = out.result
        ps, s = _scored(labels, res.findings)
        if verbose and (not all(pl["detected"] and pl["side"] for pl in s["per_label"]) or s["called_changed"]):
            print(p.stem, [(lb["finding"], lb["side"], lb["change"]) for lb in labels if lb["change"] != "stable"], "->",
                  [(g["finding"], g["side"], g["change"], g["confidence"]) for g in ps.got],
                  "| reader p(change)", {r.side: round(r.p_change, 2) for r in out.trace["reads"]},
                  "| rules", [(f.finding.value, f.side.value if f.side else None, f.change.value) for f in out.trace["rules"]])
        scores.append(ps)
    return summarise(scores)


def score(rows, change_p: float, urgent_p: float, keep: list | None = None) -> dict:
    from benchmarks.change_engine import summarise
    from comparison import findings_from_reads
    from comparison.thresholds import DEFAULT_PARAMS

    params = replace(DEFAULT_PARAMS, READER_CHANGE_P=change_p, READER_URGENT_P=urgent_p)
    scores = []
    for labels, reads, lungs, quality, shape in rows:
        ps, s = _scored(labels, findings_from_reads(reads, lungs, quality, shape, params))
        scores.append(ps)
        if keep is not None:
            keep.append(s["calib"])
    return summarise(scores)


def fit(rows, change_p: float, urgent_p: float) -> None:
    """Platt on the reader's raw confidence, judged by two-fold cross-validation inside dev."""
    from comparison.calibration import calibrate, expected_calibration_error, fit_platt

    per_pair: list = []
    score(rows, change_p, urgent_p, keep=per_pair)
    folds = [[c for i, cs in enumerate(per_pair) if i % 2 == k for c in cs] for k in (0, 1)]
    for k in (0, 1):
        train, test = folds[k], folds[1 - k]
        a, b = fit_platt([c for c, _ in train], [ok for _, ok in train])
        conf = np.array([c for c, _ in test])
        ok = np.array([o for _, o in test])
        print(f"fold {k}: fit A={a:.3f} B={b:.3f} on {len(train)}; held half ECE raw "
              f"{expected_calibration_error(conf, ok):.3f} -> {expected_calibration_error(calibrate(conf, a, b), ok):.3f}")
    allc = folds[0] + folds[1]
    a, b = fit_platt([c for c, _ in allc], [o for _, o in allc])
    print(f"all dev ({len(allc)} findings, {sum(o for _, o in allc)} right): A={a:.4f} B={b:.4f}")


def _value(v) -> str:
    v = v.get("value") if isinstance(v, dict) else v
    return "  n/a" if v is None else f"{v:5.2f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=Path, required=True)
    ap.add_argument("--weights", type=Path, help="reader weights (default: the shipped ones)")
    ap.add_argument("--fit", nargs=2, type=float, metavar=("CHANGE_P", "URGENT_P"),
                    help="fit the reader's Platt map at these cut-offs (two-fold check inside dev)")
    ap.add_argument("--tta", choices=("on", "off"), default="on", help="READER_SWAP_TTA for this run")
    ap.add_argument("--full", action="store_true", help="score the whole engine after registration at the shipped "
                                                          "settings (sign rules and fluid height included), and list its misses")
    a = ap.parse_args(argv)
    from comparison.thresholds import DEFAULT_PARAMS

    tta = a.tta == "on"
    keys = ("urgent_recall", "false_urgent", "detected", "direction", "type", "side", "zone", "stable_called_changed", "ece")
    if a.full:
        s = full(a.dev, a.weights, verbose=True, params=replace(DEFAULT_PARAMS, READER_SWAP_TTA=tta))
        print(" ".join(f"{k}={_value(s.get(k))}" + (f" ({v['num']}/{v['den']})" if isinstance(v := s.get(k), dict) else "")
                       for k in keys))
        return
    rows = _reads(a.weights, a.dev, tta)
    if a.fit:
        fit(rows, *a.fit)
        return
    print("change_p urgent_p " + " ".join(k[:12] for k in keys))
    for cp in (0.3, 0.35, 0.4, 0.5):
        for up in (0.3, 0.4, 0.5):
            s = score(rows, cp, up)
            vals = [_value(s.get(k)) for k in keys]
            print(f"{cp:8.2f} {up:8.2f} " + " ".join(f"{v:>12}" for v in vals))


if __name__ == "__main__":
    main()
