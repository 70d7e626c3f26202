"""Cost follows the window: a 7-day monitoring snapshot over a database holding 100k studies
against the same snapshot over one holding 10k, at the same daily volume (so the windows hold
the same studies and only the history differs). A snapshot bounded by its windows takes about
the same time on both; one that reloads the history takes ~10x. Target: <= 1.5x.

Each database is simulated (60 studies a day; the first 28 days are the fixed baseline). Per size:
one cold snapshot (labels not yet cached, baseline not yet read), then the median of 5 warm ones,
after a warm-up snapshot on a small database (imports and first calls).
Also printed: the labelling cache's effect (cold vs warm) and Evidently's share.

    .venv/bin/python benchmarks/monitoring.py [--sizes 10000 100000] [--per-day 60]
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
from monitoring.settings import MonitoringSettings  # noqa: E402
from monitoring.snapshot import compute, load  # noqa: E402
from priorwatch.db import init_db  # noqa: E402
from priorwatch.settings import Settings  # noqa: E402

START = date(2020, 1, 6)
REPEAT = 5


def warm_up(tmp: Path) -> None:
    """Imports and first calls (Evidently, pandas, SQLAlchemy) outside the timed runs."""
    engine = init_db(Settings(data_dir=tmp / "warm"))
    simulate.write(engine, simulate.generate(START, 40, 20, scenario=None, event_day=10**6))
    ms = simulate.scenario_settings(MonitoringSettings(evidently_html=False), START)
    as_of = datetime.combine(START, datetime.min.time()) + timedelta(days=40)
    compute(load(engine, as_of, ms), as_of, ms)


def one(n: int, per_day: int, tmp: Path) -> dict[str, float]:
    engine = init_db(Settings(data_dir=tmp / f"n{n}"))
    days = n // per_day
    t0 = time.perf_counter()
    for k in range(0, days, 100):  # in slices: the generator holds a slice's rows in memory
        d = min(100, days - k)
        gen = simulate.generate(START + timedelta(days=k), d, per_day, scenario=None, event_day=10**6,
                                seed=k, id_base=simulate.next_id_base(engine) - 1)
        simulate.write(engine, gen)
    built = time.perf_counter() - t0
    ms = simulate.scenario_settings(MonitoringSettings(evidently_html=False), START)
    as_of = datetime.combine(START, datetime.min.time()) + timedelta(days=days)

    def snap() -> tuple[float, float, int]:
        a = time.perf_counter()
        frames = load(engine, as_of, ms)
        b = time.perf_counter()
        compute(frames, as_of, ms)
        return b - a, time.perf_counter() - b, len(frames["current"])

    cold_load, cold_compute, n_cur = snap()
    warm = [snap() for _ in range(REPEAT)]
    return {"n": days * per_day, "build_s": built, "n_current": n_cur, "cold_load_s": cold_load,
            "cold_compute_s": cold_compute, "load_s": statistics.median(w[0] for w in warm),
            "compute_s": statistics.median(w[1] for w in warm)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--per-day", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        warm_up(Path(d))
        res = [one(n, args.per_day, Path(d)) for n in args.sizes]
    print(f"{'studies':>8} {'in window':>9} {'cold load s':>11} {'cold comp s':>11} {'warm load s':>11} "
          f"{'warm comp s':>11} {'warm total s':>12}")
    for r in res:
        print(f"{r['n']:>8} {r['n_current']:>9} {r['cold_load_s']:>11.2f} {r['cold_compute_s']:>11.2f} "
              f"{r['load_s']:>11.2f} {r['compute_s']:>11.2f} {r['load_s'] + r['compute_s']:>12.2f}")
    if len(res) >= 2:
        a, b = res[0], res[-1]
        ta, tb = a["load_s"] + a["compute_s"], b["load_s"] + b["compute_s"]
        ca, cb = a["cold_load_s"] + a["cold_compute_s"], b["cold_load_s"] + b["cold_compute_s"]
        print(f"history {b['n'] / a['n']:.0f}x -> 7-day snapshot {tb / ta:.2f}x the time (warm; target <= 1.5x), "
              f"{cb / ca:.2f}x cold")


if __name__ == "__main__":
    main()
