"""Scale curve: N studies through the whole pipeline (DICOM in, node, PostgreSQL + Redis,
workers fetching from the node, two Triton servers, results stored) with 1, 2 and 4 worker
processes. Prints studies/hour and p95 study-complete -> result for each, and the ratio of
each to 1 worker (the peer measured in the same run).

    .venv/bin/python -m benchmarks.scale --studies 60 --workers 1 2 4

Run as root, each worker is in a network namespace (and a mount namespace) of its own, as on
another machine: it has only its own loopback and reaches PostgreSQL, Redis, the Tritons and
the node's store through one Unix-socket bridge per service (socat at both ends; their CPU is
counted). Worker i uses Triton i % 2. Each worker process runs one job at a time; each Triton
serves the registration model with `--triton-instances` model instances (default: the shipped
config's count).

The CPU bound printed beside each row: this machine's cores divided by the CPU seconds one study
cost in that run (Triton + workers + node and sender + bridges, from /proc), times 3600: the
studies/hour these cores could give if they did nothing else and were never idle. The curve
flattens where that bound is reached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cluster import Cluster


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else (xs[0] if xs else float("nan"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=60, help="even: a prior and a current per patient")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--broker", default="redis", choices=["redis", "rabbitmq"])
    ap.add_argument("--triton-instances", type=int, default=None,
                    help="registration model instances per Triton (default: the shipped config's count)")
    ap.add_argument("--tritons", type=int, default=2, help="Triton servers; worker i uses server i %% tritons")
    ap.add_argument("--no-netns", action="store_true", help="workers share the host's network namespace")
    ap.add_argument("--timeout", type=float, default=1800.0)
    a = ap.parse_args()
    rows: list[tuple[int, float, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="pw-scale-") as tmp:
        studies = Cluster.make_studies(Path(tmp) / "input", a.studies // 2)
        n = len(studies)
        netns = not a.no_netns and os.geteuid() == 0
        per_triton = a.triton_instances or Cluster.shipped_instances()
        print(f"{n} studies, broker {a.broker}, {a.tritons} Triton servers x {per_triton} model instance(s), "
              f"workers in own network namespaces: {netns}, {os.cpu_count()} cores, "
              f"load average before {os.getloadavg()[0]:.1f}", flush=True)
        for k in a.workers:
            with Cluster(Path(tmp) / f"k{k}", workers=k, broker=a.broker, triton_instances=a.triton_instances,
                         tritons=a.tritons, netns=netns) as c:
                time.sleep(3.0)  # workers connected before the burst
                cpu0 = c.cpu_seconds()
                c.send(studies)
                jobs = c.wait(n, a.timeout)
                cpu = {k: (v - cpu0[k]) / n for k, v in c.cpu_seconds().items()}
                lat = [r[3] for r in c.results()]
                span = c.span_s()
                failed = sum(j.state == "failed" for j in jobs)
            per = sum(cpu.values())
            bound = (os.cpu_count() or 1) / per * 3600
            rows.append((k, n / span * 3600, p95(lat), failed, bound))
            print(f"  {k} worker(s): {rows[-1][1]:.0f} studies/h, p95 complete->result {rows[-1][2]:.1f}s, "
                  f"{len(lat)} results, {failed} failed; CPU s/study: Triton {cpu['triton']:.2f}, workers "
                  f"{cpu['workers']:.2f}, node and sender {cpu['node']:.2f}, bridges {cpu['bridges']:.2f} -> "
                  f"{os.cpu_count()} cores / {per:.2f} s x 3600 = CPU bound {bound:.0f} studies/h; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    base = rows[0]
    print(f"{'workers':>8} {'studies/h':>10} {'x 1 worker':>10} {'p95 s':>8} {'x 1 worker':>10} {'CPU bound/h':>12} "
          f"{'of bound':>9}")
    for k, rate, lat95, _, bound in rows:
        print(f"{k:>8} {rate:>10.0f} {rate / base[1]:>10.2f} {lat95:>8.1f} {lat95 / base[2]:>10.2f} {bound:>12.0f} "
              f"{rate / bound:>9.0%}")
    return 0 if all(r[3] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
