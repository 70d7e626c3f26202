"""The long fault run: kill -9 of the worker, of serve, of tritonserver, and of Redis without
persistence, each mid-run with N studies (default 40), on the embedded default and on server
mode (PostgreSQL on 127.0.0.1 + our own redis-server). Real parts throughout: `priorwatch serve`,
tritonserver, DCMTK `storescu`, a webhook receiver that checks HMAC signatures and counts calls.

Prints, per run: studies, results, duplicates, failed jobs, urgent results, webhook calls
(distinct keys), the highest attempt count, the supervisor's restart lines, and how long the
site took from the kill to the last result, next to the same site's time for the same studies
without a fault (the peer). No operator action: a killed `serve` is started again as systemd
would, a killed Redis is started again empty on its port as its service manager would.

    .venv/bin/python -m benchmarks.faults                    # every scenario, 40 studies
    .venv/bin/python -m benchmarks.faults --only redis -n 60
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tests.faults.harness import OwnRedis, Site, WebhookReceiver, make_cases, no_orphans, send_cases, \
    site_settings, wait_running, wait_settled

PG_DSN = "host=127.0.0.1 dbname=test user=postgres"


@contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    schema = f"pw_faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def run(name: str, n: int, mode: str, fault: Callable[[Site, object], str] | None, workdir: Path,
        deaths: int = 0) -> dict[str, object]:
    """One site, N studies sent, the fault struck once mid-run; returns the figures."""
    hook = WebhookReceiver()
    redis: OwnRedis | None = None
    with (pg_schema() if mode == "server" else nullcontext()) as db_url:
        extra: dict[str, object] = {}
        if mode == "server":
            redis = OwnRedis(workdir / "redis").start()
            extra = {"database_url": db_url, "broker_url": redis.url}
        settings = site_settings(workdir / "data", hook, **extra)
        cases = make_cases(workdir / "input", n)
        site = Site(settings, workdir).start()
        note = ""
        t_kill = None
        try:
            t0 = time.monotonic()
            send_cases(cases, settings.dicom_port)
            if fault is not None:
                wait_running(settings, min_done=max(3, n // 8))
                t_kill = time.monotonic()
                note = fault(site, redis)
            o = wait_settled(settings, hook, n, timeout=60 + 15 * n)
            t_end = time.monotonic()
        finally:
            site.stop()
            hook.close()
            if redis is not None:
                redis.kill9()
    lines = site.output().splitlines()
    restarts = [ln for ln in lines if ln.startswith("priorwatch: ")]
    resent = {"lease_expired": sum("stopped (lease expired); sent again" in ln for ln in lines),
              "never_started": sum("handed to the broker but not started; sent again" in ln for ln in lines)}
    return {
        "run": name, "mode": mode, "studies": o.studies, "results": o.comparisons,
        "duplicates": sum(v - 1 for v in o.per_study.values() if v > 1), "failed_jobs": o.jobs_failed,
        "urgent": len(o.urgent_ids), "webhook_calls": len(o.hits), "webhook_keys": len({h.key for h in o.hits}),
        "bad_signatures": sum(not h.signature_ok for h in o.hits), "unsent": o.deliveries_unsent,
        "max_attempts": max(o.attempts) if o.attempts else 0,
        "seconds_total": round(t_end - t0, 1),
        "seconds_after_kill": round(t_end - t_kill, 1) if t_kill else None,
        "resent": resent, "redelivered": o.redeliveries, "problems": o.problems(n, deaths),
        "note": note, "supervisor": restarts,
    }


def kill_child(what: str) -> Callable[[Site, object], str]:
    def f(site: Site, _redis: object) -> str:
        pid = site.kill9(what)
        return f"kill -9 {what} pid {pid}"
    return f


def kill_serve(site: Site, _redis: object) -> str:
    family = [pid for pid, _ in site.descendants()]
    pid = site.kill9("serve")
    left = no_orphans(family)
    t = time.monotonic()
    site.start()
    return f"kill -9 serve pid {pid}; {len(family)} descendants, {len(left)} left after 10 s; restarted in {time.monotonic() - t:.1f}s"


def kill_redis(_site: Site, redis: object) -> str:
    assert isinstance(redis, OwnRedis)
    redis.kill9()
    time.sleep(2.0)  # down for a moment, then back empty on its port (no RDB, no AOF)
    redis.start()
    return "kill -9 redis-server (no persistence), back empty after 2 s"


# (mode, fault, sender deaths): the last is how many processes the fault kills while they may hold a
# webhook send in flight (the worker: 1; serve and its worker: 2). Each such send is repeated with its
# Idempotency-Key, so that many notices may arrive twice; any other repeat is a problem.
SCENARIOS: dict[str, tuple[str, Callable[[Site, object], str] | None, int]] = {
    "baseline-embedded": ("embedded", None, 0),
    "worker-embedded": ("embedded", kill_child("worker"), 1),
    "serve-embedded": ("embedded", kill_serve, 2),
    "triton-embedded": ("embedded", kill_child("tritonserver"), 0),
    "baseline-server": ("server", None, 0),
    "redis-server": ("server", kill_redis, 0),
    "worker-server": ("server", kill_child("worker"), 1),
    "serve-server": ("server", kill_serve, 2),
    "triton-server": ("server", kill_child("tritonserver"), 0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=40, help="studies per run")
    ap.add_argument("--only", nargs="*", help="substrings of scenario names to run")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--keep-logs", type=Path, help="copy each run's logs into this folder")
    args = ap.parse_args()
    names = [k for k in SCENARIOS if not args.only or any(o in k for o in args.only)]
    results = []
    for name in names:
        mode, fault, deaths = SCENARIOS[name]
        with tempfile.TemporaryDirectory(prefix=f"pw-faults-{name}-") as d:
            try:
                r = run(name, args.n, mode, fault, Path(d), deaths)
            finally:
                if args.keep_logs:  # serve's output and every log of the site, for a post-mortem
                    dest = args.keep_logs / name
                    dest.mkdir(parents=True, exist_ok=True)
                    for f in [*Path(d).glob("serve-*.out"), *(Path(d) / "data" / "logs").glob("*")]:
                        if f.is_file():
                            shutil.copy(f, dest / f.name)
        results.append(r)
        print(json.dumps(r), flush=True)
    base = {r["mode"]: r["seconds_total"] for r in results if str(r["run"]).startswith("baseline")}
    print(f"\n{'run':20s} {'studies':>7s} {'results':>7s} {'dup':>4s} {'fail':>4s} {'urgent':>6s} {'calls':>5s} "
          f"{'keys':>4s} {'maxatt':>6s} {'total s':>8s} {'vs no fault':>11s}  ok")
    for r in results:
        ratio = f"{r['seconds_total'] / base[r['mode']]:.2f}x" if r["mode"] in base else "-"  # type: ignore[operator]
        print(f"{r['run']:20s} {r['studies']:7d} {r['results']:7d} {r['duplicates']:4d} {r['failed_jobs']:4d} "
              f"{r['urgent']:6d} {r['webhook_calls']:5d} {r['webhook_keys']:4d} {r['max_attempts']:6d} "
              f"{r['seconds_total']:8.1f} {ratio:>11s}  {'yes' if not r['problems'] else r['problems']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    raise SystemExit(0 if all(not r["problems"] for r in results) else 1)


if __name__ == "__main__":
    main()
