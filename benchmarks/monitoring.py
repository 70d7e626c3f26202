"""Time to compute a full monitoring snapshot over 10k and 100k simulated studies.

Median of 3 runs after a warm-up. Prints each phase and the 100k/10k ratio (a near-linear snapshot gives ~10x). The same
150 days are simulated at 10x the daily volume, so every window grows 10x too.

    .venv/bin/python benchmarks/monitoring.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
# Run as a script, this file's folder would shadow the `monitoring` package: use the repo root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from monitoring import simulate  # noqa: E402
from monitoring.dataset import load_frame  # noqa: E402
from monitoring.labeler import label_report  # noqa: E402
from monitoring.settings import MonitoringSettings  # noqa: E402
from monitoring.snapshot import compute  # noqa: E402
from priorwatch.db import init_db  # noqa: E402
from priorwatch.settings import Settings  # noqa: E402

DAYS = 150
REPEAT = 3


def one(n: int, tmp: Path) -> dict[str, float]:
    s = Settings(data_dir=tmp / f"n{n}")
    engine = init_db(s)
    gen = simulate.generate(date(2025, 1, 6), DAYS, n // DAYS, event_day=90, lateral_day=111)
    simulate.write(engine, gen)
    ms = MonitoringSettings()
    as_of = datetime(2025, 1, 6) + timedelta(days=DAYS)
    loads, computes = [], []
    for _ in range(REPEAT):
        label_report.cache_clear()  # labels from cold each time (templated texts still repeat within a run)
        t0 = time.perf_counter()
        frame = load_frame(engine, until=as_of)
        t1 = time.perf_counter()
        compute(frame, as_of, ms, with_evidently=True, html_path=tmp / f"n{n}.html")
        t2 = time.perf_counter()
        loads.append(t1 - t0)
        computes.append(t2 - t1)
    lo, co = statistics.median(loads), statistics.median(computes)
    return {"n": gen.n_studies, "load_label_s": lo, "compute_s": co, "total_s": lo + co}


def warm_up(tmp: Path) -> None:
    """Imports (Evidently is heavy) and first-call costs, outside the timed runs."""
    s = Settings(data_dir=tmp / "warm")
    engine = init_db(s)
    simulate.write(engine, simulate.generate(date(2025, 1, 6), 40, 20, event_day=None, lateral_day=None))
    compute(load_frame(engine), datetime(2025, 2, 15), MonitoringSettings(), with_evidently=True,
            html_path=tmp / "warm.html")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        warm_up(Path(d))
        res = [one(n, Path(d)) for n in args.sizes]
    print(f"{'studies':>8} {'load+label s':>13} {'compute s':>10} {'total s':>8} {'per 1k studies s':>17}")
    for r in res:
        print(f"{r['n']:>8} {r['load_label_s']:>13.2f} {r['compute_s']:>10.2f} {r['total_s']:>8.2f} "
              f"{1000 * r['total_s'] / r['n']:>17.3f}")
    if len(res) >= 2:
        a, b = res[0], res[-1]
        print(f"growth {b['n'] / a['n']:.0f}x studies -> {b['total_s'] / a['total_s']:.1f}x time "
              f"(load+label {b['load_label_s'] / a['load_label_s']:.1f}x, compute {b['compute_s'] / a['compute_s']:.1f}x)")


if __name__ == "__main__":
    main()
