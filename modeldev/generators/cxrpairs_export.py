"""Write a `benchmarks.cxrpairs` split in the BRIEF.md pair-set format, so the strict scorer
(`modeldev.evaluate`) reads every generator the same way. cxrpairs is the generator the engine
was trained and tuned on: in the leave-one-generator-out table it is never held out.

    .venv/bin/python -m modeldev.generators.cxrpairs_export --split heldout9 --n 40 --out /tmp/cxr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.cxrpairs.generate import grid, make_pair

NAME = "cxrpairs"


def export(out_dir: Path, *, split: str, n: int | None = None, scale: float = 1.0) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for spec in grid(split, n):
        pair = make_pair(spec, scale=scale)
        folder = out_dir / spec.pair_id
        folder.mkdir(exist_ok=True)
        for role, ds in (("prior", pair.prior), ("current", pair.current)):
            ds.save_as(folder / f"{role}.dcm", enforce_file_format=True)
        findings = [{"finding": lb.finding, "side": lb.side, "zone": lb.zone, "change": lb.change,
                     "size_mm_prior": lb.prior_size_mm, "size_mm_current": lb.size_mm, "urgent": lb.urgent}
                    for lb in pair.labels]
        case = {"changed": "change"}.get(spec.kind, spec.kind)
        lines.append(json.dumps({"pair_id": spec.pair_id, "generator": NAME, "seed": spec.seed, "case": case,
                                 "prior": f"{spec.pair_id}/prior.dcm", "current": f"{spec.pair_id}/current.dcm",
                                 "expect": "compare", "findings": findings, "notes": spec.background}))
    (out_dir / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="heldout9")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    export(a.out, split=a.split, n=a.n, scale=a.scale)


if __name__ == "__main__":
    main()
