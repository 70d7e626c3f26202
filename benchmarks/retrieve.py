"""Prior retrieval rate from a real Orthanc: ours (C-GET, C-MOVE, WADO-RS) vs DCMTK getscu / movescu.

One fresh Orthanc (TCP_NODELAY=1) holds two studies: a "large" one (the real chest CR
RG1_UNCR.dcm, ~7.2 MB, re-UIDed N times) and a "small" one (CT_small.dcm, ~39 kB, re-UIDed
M times). Every method pulls the whole study, into a fresh destination each repetition:

  ours c-get   CGetRetriever into Ingest(settings).sink(role="prior")  (spool + SQLite index)
  ours c-move  CMoveRetriever to a running StorageNode (Orthanc opens the association)
  ours wado-rs WadoRsRetriever into the same Ingest sink
  (c-get null sink)  diagnostic: our C-GET into a sink that keeps nothing (transport only)
  getscu       DCMTK getscu -S, files written to a folder
  movescu      DCMTK movescu -S to a DCMTK storescp (both TCP_NODELAY=1)

DCMTK runs with TCP_NODELAY=1 and -pdu 131072 (Orthanc's MaximumPduLength); its times include
process start (~10 ms). Ours runs with production settings (fsync on). Methods are
interleaved per repetition; the median rate is reported, with ratios ours/DCMTK.

    .venv/bin/python benchmarks/retrieve.py [--large 2] [--small 100] [--reps 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from dicom_node import Ingest, StorageNode, send_files  # noqa: E402
from dicom_node.pacs import PacsConfig  # noqa: E402
from dicom_node.retrieve import CGetRetriever, CMoveRetriever, WadoRsRetriever  # noqa: E402
from priorwatch.settings import Settings  # noqa: E402
from tests.peers import Orthanc  # noqa: E402

HOST = "127.0.0.1"
NODE_AE, GET_AE, MOVE_AE, STORESCP_AE = "PRIORWATCH", "GETSCU", "MOVESCU", "STORESCP"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def make_study(out: Path, source: str, n: int) -> tuple[str, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    ds = dcmread(get_testdata_file(source))
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.InstanceNumber = "PW-BENCH", i + 1
        p = out / f"{i:05d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return study, paths


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("receiver exited early")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def count_files(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file())


class Bench:
    def __init__(self, root: Path, orthanc: Orthanc, node_port: int, storescp_port: int) -> None:
        self.root = root
        self.o = orthanc
        self.node_port = node_port
        self.storescp_port = storescp_port
        self.pacs = PacsConfig(ae_title=orthanc.aet, port=orthanc.dicom_port, dicomweb_url=orthanc.dicomweb_url,
                               timeout_s=60)
        self.n = 0

    def _dir(self, name: str) -> Path:
        self.n += 1
        d = self.root / "runs" / f"{name}-{self.n}"
        d.mkdir(parents=True)
        return d

    def _settings(self, d: Path, port: int = 0) -> Settings:
        s = Settings(data_dir=d / "data", dicom_port=port or free_port(), ae_title=NODE_AE,
                     prior_source_aes=[self.o.aet], quiet_period_s={"default": 600.0})
        s.ensure_dirs()
        return s

    # each returns (seconds, instances received)
    def ours_get(self, study: str) -> tuple[float, int]:
        ingest = Ingest(self._settings(self._dir("get")))
        sink = ingest.sink(role="prior", calling_ae=self.o.aet)
        t0 = time.perf_counter()
        CGetRetriever().retrieve(self.pacs, study, sink, NODE_AE)
        return time.perf_counter() - t0, ingest.counts["stored"]

    def null_get(self, study: str) -> tuple[float, int]:
        """Diagnostic: our C-GET into a sink that keeps nothing (transport only, no ingest)."""
        got = [0]

        def sink(raw: bytes) -> int:
            got[0] += 1
            return 0

        t0 = time.perf_counter()
        CGetRetriever().retrieve(self.pacs, study, sink, NODE_AE)
        return time.perf_counter() - t0, got[0]

    def ours_wado(self, study: str) -> tuple[float, int]:
        ingest = Ingest(self._settings(self._dir("wado")))
        sink = ingest.sink(role="prior", calling_ae=self.o.aet)
        t0 = time.perf_counter()
        WadoRsRetriever().retrieve(self.pacs, study, sink, NODE_AE)
        return time.perf_counter() - t0, ingest.counts["stored"]

    def ours_move(self, study: str) -> tuple[float, int]:
        node = StorageNode(self._settings(self._dir("move"), self.node_port)).start()
        try:
            t0 = time.perf_counter()
            CMoveRetriever(NODE_AE).retrieve(self.pacs, study, lambda b: 0, NODE_AE)
            dt = time.perf_counter() - t0
            return dt, node.counts["stored"]
        finally:
            node.stop()

    def getscu(self, study: str) -> tuple[float, int]:
        out = self._dir("getscu")
        cmd = [shutil.which("getscu") or "getscu", "-S", "-aet", GET_AE, "-aec", self.o.aet, "-pdu", "131072",
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", "-od", str(out),
               HOST, str(self.o.dicom_port)]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=DCMTK_ENV, check=True, capture_output=True)
        return time.perf_counter() - t0, count_files(out)

    def movescu(self, study: str) -> tuple[float, int]:
        out = self._dir("movescu")
        scp = subprocess.Popen([shutil.which("storescp") or "storescp", "-aet", STORESCP_AE, "-od", str(out),
                                "-pdu", "131072", str(self.storescp_port)],
                               env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(self.storescp_port, scp)
            cmd = [shutil.which("movescu") or "movescu", "-S", "-aet", MOVE_AE, "-aec", self.o.aet,
                   "-aem", STORESCP_AE, "-pdu", "131072",
                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", HOST, str(self.o.dicom_port)]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=DCMTK_ENV, check=True, capture_output=True)
            dt = time.perf_counter() - t0
            return dt, count_files(out)
        finally:
            scp.terminate()
            scp.wait(10)


METHODS: list[tuple[str, str]] = [  # (label, Bench method)
    ("ours c-get", "ours_get"),
    ("getscu", "getscu"),
    ("ours c-move", "ours_move"),
    ("movescu>storescp", "movescu"),
    ("ours wado-rs", "ours_wado"),
    ("(c-get null sink)", "null_get"),
]
RATIOS = [("ours c-get", "getscu"), ("ours c-move", "movescu>storescp"), ("ours wado-rs", "getscu"),
          ("ours c-move", "ours c-get"),
          ("ours c-get", "(c-get null sink)")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", type=int, default=2, help="instances of the real CR (~7.2 MB each)")
    ap.add_argument("--small", type=int, default=100, help="instances of CT_small (~39 kB each)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per method and study (median reported)")
    ap.add_argument("--latency-studies", type=int, default=10,
                    help="2-image chest studies for the complete->comparison latency (0: skip)")
    args = ap.parse_args()
    for exe in ("Orthanc", "getscu", "movescu", "storescp"):
        if shutil.which(exe) is None and not (exe == "Orthanc" and Path("/usr/sbin/Orthanc").exists()):
            print(f"{exe} is not installed (scripts/install.sh)", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pw-bench-retrieve-") as tmp:
        root = Path(tmp)
        studies = {}
        if args.large:
            studies["large"] = make_study(root / "src-large", "RG1_UNCR.dcm", args.large)
        if args.small:
            studies["small"] = make_study(root / "src-small", "CT_small.dcm", args.small)
        node_port, storescp_port = free_port(), free_port()
        orthanc = Orthanc(root / "orthanc", modalities={
            "priorwatch": (NODE_AE, HOST, node_port), "getscu": (GET_AE, HOST, 1),
            "movescu": (MOVE_AE, HOST, 1), "storescp": (STORESCP_AE, HOST, storescp_port),
        })
        orthanc.start()
        try:
            for _, paths in studies.values():
                st = send_files(paths, HOST, orthanc.dicom_port, orthanc.aet, calling_ae="BENCHLOAD")
                assert all(s == 0 for s in st), st
            bench = Bench(root, orthanc, node_port, storescp_port)
            print(f"Orthanc {orthanc.aet} on {HOST}:{orthanc.dicom_port}; {args.reps} repetitions, median rate\n")
            print(f"{'study':24s} {'method':18s} {'inst/s':>9s} {'MB/s':>8s} {'median s':>9s}  runs")
            table: dict[tuple[str, str], float] = {}
            for size, (uid, paths) in studies.items():
                n = len(paths)
                mb = sum(p.stat().st_size for p in paths) / 1e6
                bench.ours_wado(uid)  # warm Orthanc's disk cache, untimed
                times: dict[str, list[float]] = {m: [] for m, _ in METHODS}
                for _ in range(args.reps):
                    for label, meth in METHODS:
                        dt, got = getattr(bench, meth)(uid)
                        if got != n:
                            print(f"!! {label}: {got}/{n} instances received", file=sys.stderr)
                        times[label].append(dt)
                shutil.rmtree(root / "runs", ignore_errors=True)
                head = f"{size} {n} x {mb / n:.2f} MB"
                for label, _ in METHODS:
                    med = statistics.median(times[label])
                    table[(size, label)] = n / med
                    runs = " ".join(f"{t:.2f}" for t in times[label])
                    print(f"{head:24s} {label:18s} {n / med:9.1f} {mb / med:8.1f} {med:9.3f}  [{runs}]", flush=True)
                    head = ""
            print("\nratios (rate, ours / peer)")
            for size in studies:
                print(f"  {size:6s} " + "  ".join(f"{a}/{b}={table[(size, a)] / table[(size, b)]:.2f}" for a, b in RATIOS))
        finally:
            orthanc.stop()
        if args.latency_studies:
            from benchmarks.pipeline_latency import pct, run

            print(f"\nstudy complete -> comparison started, prior in Orthanc ({args.latency_studies} studies each)")
            for method in ("c-get", "c-move", "wado-rs"):
                lat = run(method, args.latency_studies, root / "latency")
                if lat:
                    print(f"  {method:8s} p50 {statistics.median(lat):.3f} s  p95 {pct(lat, 0.95):.3f} s  "
                          f"(target p95 < 1 s: {'met' if pct(lat, 0.95) < 1.0 else 'NOT met'})", flush=True)
    print(f"\ntotal {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
