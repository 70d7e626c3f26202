"""Proof: workers without a shared disk. K worker processes, each with its own private data dir
and the node's data dir hidden from it (its own mount namespace), on PostgreSQL with Redis and
with RabbitMQ; N studies (a prior and a current per patient) must give exactly one result each,
every current compared with its prior (fetched from the node too), no failed job, no file left
in any worker's cache.

    .venv/bin/python -m benchmarks.no_shared_disk --studies 200 --workers 3 --broker redis rabbitmq
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.cluster import Cluster


def run(broker: str, studies: list[list[Path]], workers: int, root: Path, timeout_s: float) -> tuple[bool, str]:
    n = len(studies)
    t0 = time.monotonic()
    with Cluster(root, workers=workers, broker=broker) as c:
        c.send(studies)
        t_sent = time.monotonic() - t0
        jobs = c.wait(n, timeout_s)
        results = c.results()
        per_worker = c.jobs_per_worker()
        leftovers = c.leftover_cache_files()
        isolated = c.isolated
    elapsed = time.monotonic() - t0
    per_study = Counter(uid for uid, *_ in results)
    sent_uids = {u for u in (s.study_uid for s in c.sent)}
    failed = [j for j in jobs if j.state == JobState_failed()]
    currents = [r for r in results if r[2] == "done"]
    ok = (set(per_study) == sent_uids and all(v == 1 for v in per_study.values()) and not failed
          and len(currents) == n // 2 and all(r[1] for r in currents) and leftovers == 0
          and sum(per_worker.values()) == n and all(v > 0 for v in per_worker.values()))
    line = (f"{broker}: {n} studies, {workers} workers (node disk hidden: {isolated}): "
            f"{len(results)} results for {len(per_study)} studies (max per study {max(per_study.values(), default=0)}), "
            f"{len(currents)} compared with their prior, {len(failed)} failed, cache files left {leftovers}, "
            f"jobs per worker {dict(per_worker)}; sent in {t_sent:.1f}s, all done in {elapsed:.1f}s "
            f"({n / elapsed * 3600:.0f} studies/h) -> {'OK' if ok else 'FAIL'}")
    return ok, line


def JobState_failed() -> str:  # noqa: N802 - tiny helper keeps the import local
    from priorwatch.models import JobState

    return JobState.failed.value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=200, help="even: a prior and a current per patient")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--broker", nargs="+", default=["redis", "rabbitmq"], choices=["redis", "rabbitmq"])
    ap.add_argument("--timeout", type=float, default=1800.0)
    a = ap.parse_args()
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="pw-noshare-") as tmp:
        t = time.monotonic()
        studies = Cluster.make_studies(Path(tmp) / "input", a.studies // 2)
        print(f"made {len(studies)} studies in {time.monotonic() - t:.1f}s", flush=True)
        for broker in a.broker:
            ok, line = run(broker, studies, a.workers, Path(tmp) / broker, a.timeout)
            print(line, flush=True)
            all_ok &= ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
