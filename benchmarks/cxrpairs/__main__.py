"""Write a split of cxrpairs to disk: python -m benchmarks.cxrpairs --split dev --out DIR [--n N] [--scale S]."""

from __future__ import annotations

import argparse

from benchmarks.cxrpairs.generate import SPLIT_SEEDS, write_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", choices=list(SPLIT_SEEDS), default="dev")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="matrix scale (0.25 = a quarter-size matrix)")
    a = ap.parse_args()
    recs = write_grid(a.split, a.out, a.n, a.scale)
    print(f"wrote {len(recs)} pairs of {a.split} to {a.out}")


if __name__ == "__main__":
    main()
