"""Strict replay of the engine on saved registered pairs: choose reader weights and cut-offs in seconds (issue 28).

`modeldev.evaluate` (the strict scorer) registers every pair again for every reader it is asked
about (~3 s a pair). The reader and its two cut-offs act only after registration, so this module
runs `modeldev.evaluate.run_set` once, through the shipped engine, keeps what it saw (the context
built as the worker builds it, the whole `Aligned` pair, the current's shape) and then replays
`RegistrationEngine.analyse` on it for any weights and cut-offs (~0.3 s a pair), scored by the same
`modeldev.evaluate.score_pair`. A pair refused before registration (a lateral view) keeps the
recorded answer: no reader is involved there.

    .venv/bin/python -m modeldev.reader_replay save /work/sets/val/t3d-1001 --out /work/artifacts/replay/t3d
    .venv/bin/python -m modeldev.reader_replay score /work/artifacts/replay/t3d:thorax3d ... --weights W \
        [--cuts 0.35,0.3 0.4,0.3]

Validation sets only (never the held-out generator of record): a set whose results chose weights or
cut-offs is validation from then on. Only the engine's public names are used.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path
from typing import Any

SIZE = 512  # the worker's image_size, as modeldev.evaluate's default


class _Recorder:
    """Stands in for the engine in `evaluate.run_set`: runs the real engine and keeps, per pair, the
    context, the registered pair (`align`'s answer, None when refused before it) and the current's shape."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.kept: list[dict[str, Any]] = []
        self._al: Any = None
        align = engine.align

        def recording_align(cur: Any, pri: Any, timings: dict | None = None) -> Any:
            self._al = align(cur, pri, timings)
            return self._al

        engine.align = recording_align

    def compare(self, current: Any, prior: Any, context: Any) -> Any:
        self._al = None
        out = self.engine.compare(current, prior, context)
        self.kept.append({"ctx": context, "al": self._al, "shape": tuple(current.shape), "result": out.result})
        return out


def save(folder: Path, out: Path) -> Path:
    """Run the strict scorer's path once (shipped engine) on one pair set and keep each pair's state."""
    from comparison import RegistrationEngine
    from modeldev.evaluate import run_set

    rec = _Recorder(RegistrationEngine())
    rows = run_set(folder, rec, SIZE)
    out.mkdir(parents=True, exist_ok=True)
    for (row, _score, _found), kept in zip(rows, rec.kept, strict=True):
        with open(out / f"{row['pair_id']}.pkl", "wb") as fh:
            pickle.dump({"rec": row, **kept}, fh, protocol=5)
    return out


class _CachedReader:
    """A reader whose answers are kept per input pair: the cut-offs act after reading, so a grid of
    cut-offs reads each pair once."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.version = reader.version
        self._cache: dict[str, Any] = {}

    def read(self, al: Any, spacing_mm: float, swap_tta: bool | None = None) -> Any:
        key = hashlib.md5(al.cw.tobytes() + al.mapped.tobytes() + repr((spacing_mm, swap_tta)).encode()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.reader.read(al, spacing_mm, swap_tta)
        return self._cache[key]


def _found(result: Any) -> list[dict[str, Any]]:
    return [{"finding": str(f.finding), "side": str(f.side) if f.side else None, "zone": str(f.zone) if f.zone else None,
             "change": str(f.change), "urgent": bool(f.urgent), "confidence": float(f.confidence)} for f in result.findings]


def load(folder: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(folder.glob("*.pkl")):
        with open(p, "rb") as fh:
            out.append(pickle.load(fh))
    return out


def replay(pairs: list[dict[str, Any]], engine: Any) -> list[Any]:
    """Each saved pair through `analyse` with this engine (its reader and parameters),
    strictly scored; a pair refused before registration keeps its recorded answer."""
    from modeldev.evaluate import score_pair

    scores = []
    for p in pairs:
        res = p["result"] if p["al"] is None else engine.analyse(p["al"], p["shape"], p["ctx"]).result
        r = p["rec"]
        scores.append(score_pair(r["pair_id"], r["case"], r.get("expect", "compare"), r["findings"], _found(res),
                                 list(res.notes)))
    return scores


KEYS = ("urgent_recall", "false_urgent", "detected", "type", "zone", "quiet_called_changed", "safety_cases_passed")


def line(summary: dict[str, Any]) -> str:
    return " ".join(f"{k}={summary[k]['k']}/{summary[k]['n']}" for k in KEYS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="run a pair set once through the strict scorer's path and keep each pair")
    s.add_argument("folder", type=Path)
    s.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("score", help="replay saved sets with other reader weights and cut-offs")
    r.add_argument("sets", nargs="+", help="SAVED_DIR:GENERATOR")
    r.add_argument("--weights", type=Path, help="reader weights (default: the shipped ones)")
    r.add_argument("--cuts", nargs="+", default=None, metavar="CHANGE_P,URGENT_P",
                   help="reader cut-off pairs to try (default: those in comparison.thresholds)")
    r.add_argument("--variant", action="append", default=[], metavar="LABEL:NAME=VALUE;...",
                   help="engine parameters other than shipped (modeldev.evaluate.engine_params), repeatable: each variant "
                        "is replayed at every pair of cut-offs")
    r.add_argument("--diff", action="store_true", help="list the pairs whose strict score differs from the first variant's")
    a = ap.parse_args(argv)
    if a.cmd == "save":
        print(f"saved {len(list(save(a.folder, a.out).glob('*.pkl')))} pairs into {a.out}")
        return
    from dataclasses import replace

    from comparison import Reader, RegistrationEngine
    from comparison.thresholds import DEFAULT_PARAMS
    from modeldev.evaluate import summarise

    reader = _CachedReader(Reader(a.weights))
    sets = [(Path(d), g) for d, _, g in (x.partition(":") for x in a.sets)]
    loaded = {g: load(d) for d, g in sets}
    cuts = ([tuple(float(v) for v in c.split(",")) for c in a.cuts] if a.cuts
            else [(DEFAULT_PARAMS.READER_CHANGE_P, DEFAULT_PARAMS.READER_URGENT_P)])
    from modeldev.evaluate import engine_params

    variants = [(lbl, [x for x in spec.split(";") if x]) for lbl, _, spec in (v.partition(":") for v in a.variant)] or [("shipped", [])]
    for cp, up in cuts:  # another engine value per pair of cut-offs; the shipped parameters stay untouched
        for g, pairs in loaded.items():
            first: list[Any] | None = None
            for lbl, assignments in variants:
                params = replace(engine_params(assignments), READER_CHANGE_P=cp, READER_URGENT_P=up)
                scores = replay(pairs, RegistrationEngine(reader=reader, params=params))
                print(f"cuts {cp:.2f},{up:.2f} {g:9s} {lbl:10s} {line(summarise(scores))}", flush=True)
                if a.diff and first is not None:
                    for s0, s1 in zip(first, scores, strict=True):
                        if s0.misses != s1.misses:
                            print(f"    {s1.pair_id} {s1.case}: {'; '.join(s0.misses) or '-'}  ->  {'; '.join(s1.misses) or '-'}")
                first = first if first is not None else scores

if __name__ == "__main__":
    main()
