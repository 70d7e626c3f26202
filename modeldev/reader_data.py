"""Reader training pairs from any BRIEF.md pair-set folder (issue 28: train across generators).

Each pair takes production's path, as `modeldev.evaluate` does: `load_image` on both DICOM
files (orientation, view, spacing), then `RegistrationEngine.align`; it is saved in the form
`benchmarks.reader_train` reads (`benchmarks.reader_data._save`). Pairs the engine must not
compare (lateral, another person) are skipped; support devices are not reader labels.

    .venv/bin/python -m modeldev.generators.atlas2d --seed 101 --n 400 --out /tmp/a2d-train
    .venv/bin/python -m modeldev.reader_data --folder /tmp/a2d-train --out artifacts/reader/a2d
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

READER_FINDINGS = ("nodule", "mass", "consolidation", "effusion", "pneumothorax")  # what the reader types
PREPARE_SIZE = 512  # the worker's image_size


def _label(f: dict) -> dict:
    """A BRIEF.md finding in the reader's label form (cxrpairs': `size_mm` is the current size, the
    prior's when resolved)."""
    current, prior = f.get("size_mm_current"), f.get("size_mm_prior")
    return {"finding": f["finding"], "side": f["side"], "zone": f["zone"], "change": f["change"],
            "urgent": bool(f["urgent"]), "size_mm": current if current else prior, "prior_size_mm": prior}


def build(folder: Path, out: Path, limit: int | None = None) -> int:
    from benchmarks.reader_data import _save
    from comparison import RegistrationEngine, load_image

    engine = RegistrationEngine()
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines() if line.strip()]
    made = 0
    for rec in rows[:limit]:
        if rec.get("expect", "compare") != "compare":
            continue
        path = out / f"{rec['generator']}-{rec['pair_id']}.npz"
        if path.exists():
            continue
        try:
            cur = load_image(folder / rec["current"], size=PREPARE_SIZE)
            pri = load_image(folder / rec["prior"], size=PREPARE_SIZE)
            labels = [_label(f) for f in rec["findings"]
                      if f["finding"] in READER_FINDINGS and f["side"] in ("right", "left")]
            _save(path, engine.align(cur.pixels, pri.pixels), cur, labels, {"pair_id": rec["pair_id"],
                                                                            "case": rec["case"]})
            made += 1
        except Exception as exc:  # a pair that cannot be built is skipped, and said
            print(f"{rec['pair_id']}: {type(exc).__name__}: {exc}", flush=True)
    return made


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int)
    a = ap.parse_args(argv)
    print(f"built {build(a.folder, a.out, a.limit)} pairs into {a.out}")


if __name__ == "__main__":
    main()
