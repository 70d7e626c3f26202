"""Added latency from "study complete" to "comparison started" with the prior in a real PACS.

Each run: a new patient's 2-image chest study (PA + lateral) arrives at the node over C-STORE;
its 2-image prior sits in Orthanc. The time from the node closing the study (Study.completed_at)
to the worker starting the comparison with the prior in hand (Comparison.engine_started_at)
covers queueing, the C-FIND, the retrieval and the prior choice. Printed as p50 / p95 per
retrieval method, against the target of 1 s at p95. A first study warms the worker up and
is not counted.

    .venv/bin/python benchmarks/pipeline_latency.py [--studies 10] [--methods c-get c-move wado-rs]

With `--history N` (issue 29): time from "study complete" to the stored result (Comparison.created_at)
for N patients whose 4-study history (baseline, one between, most recent, current: a nodule that
appears and grows) sits in Orthanc (C-GET), against N patients with only the most recent prior
there; the two kinds alternate in one run of one runtime. Printed as the ratio of the medians,
against the target of 2x.

    .venv/bin/python benchmarks/pipeline_latency.py --history 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from sqlmodel import select  # noqa: E402

from comparison import synthetic  # noqa: E402
from dicom_node import send_files  # noqa: E402
from priorwatch.db import session_scope  # noqa: E402
from priorwatch.models import Comparison, Job, JobState, Study  # noqa: E402
from priorwatch.settings import Settings  # noqa: E402
from tests.peers import Orthanc  # noqa: E402
from workers.runtime import Runtime, free_port  # noqa: E402

NODE_AE = "PRIORWATCH"


def with_lateral(paths: list[Path]) -> list[Path]:
    """The study's PA plus a lateral (same pixels, its own UIDs): a 2-image chest study."""
    ds = pydicom.dcmread(paths[0])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID, ds.ViewPosition, ds.InstanceNumber = generate_uid(), "LL", 2
    lat = paths[0].with_name(paths[0].stem + "-lat.dcm")
    ds.save_as(lat, enforce_file_format=True)
    return [paths[0], lat]


def run(method: str, n: int, root: Path) -> list[float]:
    node_port = free_port()
    # One extra study first, not counted: the worker's first task imports and connects.
    pairs = [synthetic.make_pair(root / method / f"p{i}", f"PW-LAT-{method}-{i}", seed=100 + i) for i in range(n + 1)]
    latencies: list[float] = []
    with Orthanc(root / method / "orthanc", modalities={"pw": (NODE_AE, "127.0.0.1", node_port)}) as pacs:
        for pair in pairs:
            for p in with_lateral(list(pair.prior_paths)):
                pacs.upload(p)
        settings = Settings(
            data_dir=root / method / "data", dicom_port=node_port, ae_title=NODE_AE, completion_grace_s=0.2,
            triton_grpc_port=free_port(), triton_http_port=free_port(), triton_metrics_port=free_port(),
            queue_name=f"pw-{uuid.uuid4().hex[:8]}", pacs_ae_title=pacs.aet, pacs_port=pacs.dicom_port,
            pacs_retrieve=method, pacs_dicomweb_url=pacs.dicomweb_url,
        )
        with Runtime(settings) as rt:
            for i, pair in enumerate(pairs):  # one at a time: latency, not throughput
                send_files(with_lateral(list(pair.current_paths)), "127.0.0.1", node_port, NODE_AE, calling_ae="CR01")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    with session_scope(rt.settings) as s:
                        done = s.exec(select(Job).where(Job.state.in_([JobState.done, JobState.failed]))).all()  # type: ignore[attr-defined]
                    if len(done) > i:
                        break
                    time.sleep(0.05)
        with session_scope(settings) as s:
            for comp in s.exec(select(Comparison).order_by(Comparison.id)).all()[1:]:
                study = s.get(Study, comp.study_id)
                if comp.prior_study_id is None or study is None or study.completed_at is None:
                    print(f"!! {method}: a study got no prior ({comp.no_prior_reason})", file=sys.stderr)
                    continue
                latencies.append((comp.engine_started_at - study.completed_at).total_seconds())  # type: ignore[operator]
    return latencies


def run_history(n: int, root: Path) -> tuple[list[float], list[float]]:
    """Complete -> result seconds for patients with one prior and with three (alternating, one runtime)."""
    import datetime as dt

    from tests.history_series import write_series

    today = dt.date.today()
    dates = [today - dt.timedelta(days=d) for d in (600, 330, 60, 0)]
    node_port = free_port()
    plans = [(i, 1 if i % 2 == 0 else 3) for i in range(2 * n + 1)]  # the first, one prior, warms up
    single: list[float] = []
    multi: list[float] = []
    with Orthanc(root / "history" / "orthanc", modalities={"pw": (NODE_AE, "127.0.0.1", node_port)}, dicomweb=False) as pacs:
        series = {}
        for i, k in plans:
            st = write_series(root / "history" / "series", f"PW-HLAT-{i}", "nodule", [0.0, 0.5, 0.75, 1.0], dates, seed=i)
            series[i] = st
            for prior in st[3 - k:3]:
                pacs.upload(prior.path)
        settings = Settings(
            data_dir=root / "history" / "data", dicom_port=node_port, ae_title=NODE_AE, completion_grace_s=0.2,
            triton_grpc_port=free_port(), triton_http_port=free_port(), triton_metrics_port=free_port(),
            queue_name=f"pw-{uuid.uuid4().hex[:8]}", pacs_ae_title=pacs.aet, pacs_port=pacs.dicom_port,
            pacs_retrieve="c-get",
        )
        with Runtime(settings) as rt:
            for j, (i, _) in enumerate(plans):
                send_files([series[i][3].path], "127.0.0.1", node_port, NODE_AE, calling_ae="CR01")
                _wait_jobs(rt.settings, j + 1)
        with session_scope(settings) as s:
            comps = s.exec(select(Comparison).order_by(Comparison.id)).all()
            for comp, (i, k) in list(zip(comps, plans))[1:]:
                study = s.get(Study, comp.study_id)
                assert study is not None and study.completed_at is not None
                (single if k == 1 else multi).append((comp.created_at - study.completed_at).total_seconds())
    return single, multi


def _wait_jobs(settings: Settings, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            done = s.exec(select(Job).where(Job.state.in_([JobState.done, JobState.failed]))).all()  # type: ignore[attr-defined]
        if len(done) >= n:
            return
        time.sleep(0.05)
    raise RuntimeError("a job did not finish in time")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=["c-get", "c-move", "wado-rs"])
    ap.add_argument("--history", type=int, default=0, help="patients per kind for the 3-prior vs 1-prior ratio")
    args = ap.parse_args()
    if args.history:
        load0 = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="pw-latency-") as tmp:
            one, three = run_history(args.history, Path(tmp))
        m1, m3 = statistics.median(one), statistics.median(three)
        # the machine's load beside the ratio: both kinds alternate in one run, but a loaded machine changes what a
        # parallel comparison gains (the 1-minute load average at the start and at the end, and the CPU count)
        print(f"complete->result, 1 prior: median {m1:.2f} s (n={len(one)}); 3 priors: median {m3:.2f} s "
              f"(n={len(three)}); ratio {m3 / m1:.2f}x (target <= 2x: {'met' if m3 / m1 <= 2.0 else 'NOT met'}); "
              f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        return 0
    with tempfile.TemporaryDirectory(prefix="pw-latency-") as tmp:
        for method in args.methods:
            lat = run(method, args.studies, Path(tmp))
            if not lat:
                print(f"{method:8s} no measurements")
                continue
            p95 = pct(lat, 0.95)
            print(f"{method:8s} complete->comparison started: p50 {statistics.median(lat):.3f} s  p95 {p95:.3f} s"
                  f"  (n={len(lat)}; target p95 < 1 s: {'met' if p95 < 1.0 else 'NOT met'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
