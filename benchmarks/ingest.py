"""C-STORE ingest rate: our node vs DCMTK storescp vs Orthanc, the same sender for each.

Each receiver runs as its own process on a free loopback port (TCP_NODELAY=1 for DCMTK and
Orthanc), fresh for every run. Small instances are a real chest CR downsampled to ~0.45 MB;
large ones the real CR itself (~7.2 MB); every instance has its own UIDs. Prints instances/s,
MB/s, the receiver's CPU (its process tree, from /proc, while sending) and the ratios
ours/storescp and ours/Orthanc, then one table of ours/Orthanc per row and sender.

    .venv/bin/python -m benchmarks.ingest [--small 200] [--large 20] [--studies 60]
        [--parallel 1 4] [--sender storescu raw] [--repeat 3] [--only small large study]

Senders (both by default, each for every receiver):
- storescu: DCMTK's, one process per association. It proposes ~130 presentation contexts and
  its start costs ~20-25 ms of CPU (measured here, issue 32), which "study" rows pay per study:
  in every receiver's time, it bounds those rows' ratios.
- raw: `benchmarks.rawscu`, PDUs encoded before the clock starts and replayed over a socket,
  checking the A-ASSOCIATE-AC and every C-STORE-RSP status; it proposes what a modality does
  (the classes it sends). Each receiver gets the same bytes but for the Called AE title and
  the P-DATA fragmenting (the maximum PDU length that receiver states).
- pynetdicom: our own SCU (`dicom_node.send_files`), on request.

Receivers: ours (the node as settings say), ours-lean / ours-pynetdicom (the node on a named accept
path, `PRIORWATCH_NODE_ACCEPT`), storescp, orthanc; the table has a column per sender and our path.

Each cell is the median of --repeat runs, each on a fresh receiver after a warm-up send.
"study" rows send 2-instance small studies, a new association per study (what a modality
does), so they also weigh each receiver's association set-up and release.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from benchmarks import rawscu  # noqa: E402
from dicom_node import echo, send_files  # noqa: E402
from priorwatch.settings import Settings, as_env  # noqa: E402

HOST = "127.0.0.1"
# DCMTK's, by path: with the venv first on PATH, `storescu` is pynetdicom's (other arguments).
DCMTK_STORESCU = shutil.which("storescu", path="/usr/bin") or "/usr/bin/storescu"
DCMTK_STORESCP = shutil.which("storescp", path="/usr/bin") or "/usr/bin/storescp"


# A receiver must answer C-ECHO within this of its start: our node imports for ~1 s on a quiet
# machine, 6-8 s with a load average of 10 (measured here), and the run must not die of that.
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def make_instances(out: Path, n: int, size: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    src = dcmread(get_testdata_file("RG1_UNCR.dcm"))
    if size == "small":
        arr = src.pixel_array[::4, ::4].copy()
        src.Rows, src.Columns = arr.shape
        src.PixelData = arr.tobytes()
        src.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    study = generate_uid()
    paths = []
    for i in range(n):
        sop = generate_uid()
        src.StudyInstanceUID = study
        src.SOPInstanceUID = sop
        src.file_meta.MediaStorageSOPInstanceUID = sop
        p = out / f"{size}{i:05d}.dcm"
        src.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


class Receiver:
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.aet = "RECEIVER"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> "Receiver":
        self.work.mkdir(parents=True, exist_ok=True)
        cmd, env = self.command()
        self.log = open(self.work / "log.txt", "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {(self.work / 'log.txt').read_text()[-2000:]}")
            if echo(HOST, self.port, self.aet, timeout=1) == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Ours(Receiver):
    name = "ours"
    accept: str | None = None  # Settings.node_accept; None: the environment's or the default

    def command(self) -> tuple[list[str], dict[str, str]]:
        self.aet = "PRIORWATCH"
        extra = {"node_accept": self.accept} if self.accept else {}
        s = Settings(data_dir=self.work / "data", dicom_port=self.port, ae_title=self.aet,
                     quiet_period_s={"default": 600.0}, completion_grace_s=2.0, **extra)
        env = {**os.environ, **as_env(s), "PYTHONPATH": str(REPO), "PRIORWATCH_LOG_LEVEL": "WARNING"}
        env.pop("PRIORWATCH_CONFIG", None)
        return [sys.executable, "-m", "dicom_node"], env


class OursLean(Ours):
    """Our node on its own accept path (`dicom_node.lean`), whatever the environment says."""
    name = "ours-lean"
    accept = "lean"


class OursPynetdicom(Ours):
    """Our node on pynetdicom's accept path (`dicom_node.netfast`), whatever the environment says."""
    name = "ours-pynetdicom"
    accept = "pynetdicom"


class StoreSCP(Receiver):
    name = "storescp"

    def command(self) -> tuple[list[str], dict[str, str]]:
        out = self.work / "out"
        out.mkdir(parents=True, exist_ok=True)
        return [DCMTK_STORESCP, "-aet", self.aet, "-od", str(out), "--max-pdu", "131072", str(self.port)], {**os.environ, "TCP_NODELAY": "1"}


class Orthanc(Receiver):
    name = "orthanc"

    def command(self) -> tuple[list[str], dict[str, str]]:
        self.aet = "ORTHANC"
        cfg = {
            "Name": "bench", "StorageDirectory": str(self.work / "storage"), "IndexDirectory": str(self.work / "storage"),
            "DicomAet": self.aet, "DicomPort": self.port, "HttpPort": free_port(), "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "MaximumPduLength": 131072, "Plugins": [],
        }
        (self.work / "orthanc.json").write_text(json.dumps(cfg))
        exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        return [exe, str(self.work / "orthanc.json")], {**os.environ, "TCP_NODELAY": "1"}


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` and its live descendants, from /proc: the
    node's extra receiving processes count as the node's."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _storescu(paths: list[Path], port: int, aet: str, calling: str) -> list[int]:
    """DCMTK's storescu as the sender: one process per call. Per instance it costs little; each
    start costs ~20-25 ms of CPU (measured here, issue 32), which "study" rows pay per study."""
    rc = subprocess.run([DCMTK_STORESCU, "-aet", calling, "-aec", aet, HOST, str(port), *map(str, paths)],
                        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True).returncode
    return [0 if rc == 0 else -1] * len(paths)


def _raw_sender(recv: Receiver, warmup: list[Path], studies: list[rawscu.Study], parallel: int
                ) -> Callable[[int, int], list[int]]:
    """Warm the receiver up, learn its maximum PDU, and encode every study's PDUs for it
    before the clock starts; returns send(study index, sender index)."""
    warm = rawscu.prepare(warmup, 2)
    max_pdu = rawscu.probe_max_pdu(warm[0], HOST, recv.port, recv.aet, "WARMUP")
    for st in warm:
        rawscu.send_study(st, HOST, recv.port, recv.aet, "WARMUP", max_pdu)
    for j, st in enumerate(studies):
        st.encode(recv.aet, f"BENCH{j % parallel}", max_pdu)

    def send(j: int, i: int) -> list[int]:
        try:
            return rawscu.send_study(studies[j], HOST, recv.port, recv.aet, f"BENCH{i}", max_pdu)
        except (rawscu.SendError, OSError) as exc:
            print(f"!! raw sender: {exc}", file=sys.stderr)
            return [-1] * len(studies[j].instances)

    return send


def run_once(cls: type[Receiver], work: Path, files: list[Path], parallel: int, sender: str = "storescu",
             warmup: list[Path] | None = None, per_association: int = 0,
             studies: list[rawscu.Study] | None = None) -> tuple[float, int, float]:
    """Send `files` over `parallel` senders; each sender uses one association for all its files,
    or (`per_association` > 0) a new association for every `per_association` files, as a
    modality sending one study at a time does. With the raw sender, `studies` are `files`
    read beforehand (`rawscu.prepare(files, per_association)`).
    Returns (seconds, instances stored with Success, receiver CPU seconds while sending)."""
    recv = cls(work).start()
    step = per_association or max(1, -(-len(files) // parallel))
    try:
        if sender == "raw":
            assert studies is not None
            send_raw = _raw_sender(recv, warmup or files[:2], studies, parallel)
            jobs: list[list[int]] = [list(range(i, len(studies), parallel)) for i in range(parallel)]

            def send(i: int) -> list[int]:
                return [s for j in jobs[i] for s in send_raw(j, i)]
        else:
            send_fn = _storescu if sender == "storescu" else (
                lambda paths, port, aet, calling: send_files(paths, HOST, port, aet, calling_ae=calling))
            if warmup:  # first association, first database connection, imports: not the steady rate
                send_fn(warmup, recv.port, recv.aet, "WARMUP")
            chunks = [files[i::parallel] for i in range(parallel)]

            def send(i: int) -> list[int]:
                out: list[int] = []
                for k in range(0, len(chunks[i]), step if per_association else len(chunks[i]) or 1):
                    out += send_fn(chunks[i][k:k + (step if per_association else len(chunks[i]))],
                                   recv.port, recv.aet, f"BENCH{i}")
                return out

        results: list[list[int]] = [[] for _ in range(parallel)]

        def run(i: int) -> None:
            results[i] = send(i)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(parallel)]
        assert recv.proc is not None
        cpu0 = tree_cpu_s(recv.proc.pid)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        cpu = tree_cpu_s(recv.proc.pid) - cpu0
    finally:
        recv.stop()
    ok = sum(1 for r in results for s in r if s == 0)
    return dt, ok, cpu


SENDERS = ("storescu", "raw", "pynetdicom")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=200, help="small instances per run (~0.45 MB)")
    ap.add_argument("--large", type=int, default=20, help="large instances per run (~7.2 MB)")
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 4], help="associations in parallel")
    ap.add_argument("--receivers", nargs="+", default=["ours", "storescp", "orthanc"],
                    help="ours, ours-lean, ours-pynetdicom (our node on a named accept path), storescp, orthanc")
    ap.add_argument("--sender", choices=SENDERS, nargs="+", default=["storescu", "raw"],
                    help="senders, each used for every receiver (storescu: DCMTK, one process per "
                         "association; raw: benchmarks.rawscu, pre-encoded PDUs)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    ap.add_argument("--studies", type=int, default=60,
                    help="also send this many 2-instance small studies, one association per study (0: skip)")
    ap.add_argument("--only", nargs="+", choices=["small", "large", "study"], default=["small", "large", "study"],
                    help="which rows to run")
    args = ap.parse_args()
    classes = {"ours": Ours, "ours-lean": OursLean, "ours-pynetdicom": OursPynetdicom, "storescp": StoreSCP,
               "orthanc": Orthanc}
    table: list[tuple[str, str, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        root = Path(tmp)
        data = {"small": make_instances(root / "src-small", args.small, "small") if "small" in args.only else [],
                "large": make_instances(root / "src-large", args.large, "large") if "large" in args.only else [],
                "study": make_instances(root / "src-study", 2 * args.studies, "small") if "study" in args.only else []}
        warm = {"small": make_instances(root / "warm-small", 20, "small"),
                "large": make_instances(root / "warm-large", 2, "large")}
        warm["study"] = warm["small"]
        for sender in args.sender:
            for size, files in data.items():
                if not files:
                    continue
                mb = sum(p.stat().st_size for p in files) / 1e6
                per_assoc = 2 if size == "study" else 0
                for par in args.parallel:
                    studies = None
                    if sender == "raw":
                        studies = rawscu.prepare(files, per_assoc or max(1, -(-len(files) // par)))
                    rates: dict[str, float] = {}
                    for name in args.receivers:
                        times, cpus = [], []
                        for rep in range(args.repeat):
                            work = root / f"{name}-{size}-{par}-{rep}"
                            dt, ok, cpu = run_once(classes[name], work, files, par, sender, warm[size],
                                                   per_association=per_assoc, studies=studies)
                            if ok != len(files):
                                print(f"!! {name}: {ok}/{len(files)} stored", file=sys.stderr)
                            times.append(dt)
                            cpus.append(cpu)
                            shutil.rmtree(work, ignore_errors=True)
                        dt = sorted(times)[len(times) // 2]
                        cpu = sorted(cpus)[len(cpus) // 2]
                        rates[name] = len(files) / dt
                        unit = (cpu / (len(files) / 2) * 1e3, "ms CPU/study") if size == "study" else (
                            cpu / len(files) * 1e3, "ms CPU/inst")
                        print(f"{sender:8s} {size:5s} x{len(files):4d} ({mb / len(files):.2f} MB) assoc={par}  "
                              f"{name:9s} {rates[name]:8.1f} inst/s {rates[name] * mb / len(files):8.1f} MB/s "
                              f"{unit[0]:7.2f} {unit[1]}", flush=True)
                    for me in [k for k in rates if k.startswith("ours")]:
                        ours = rates[me]
                        ratio = "  ".join(f"{me}/{k}={ours / v:.2f}" for k, v in rates.items()
                                          if not k.startswith("ours") and v)
                        print(f"      -> {ratio}", flush=True)
                        if "orthanc" in rates and rates["orthanc"]:
                            table.append((sender if me == "ours" else f"{sender}:{me}", size, par, ours / rates["orthanc"]))
    if table:
        print("\nours/Orthanc (inst/s ratio, median of --repeat runs):")
        columns = list(dict.fromkeys(s for s, _, _, _ in table))  # senders, or our accept paths
        print(f"{'row':12s} " + " ".join(f"{s:>24s}" for s in columns))
        for size in ("small", "large", "study"):
            for par in args.parallel:
                cells = {s: r for s, z, p, r in table if z == size and p == par}
                if cells:
                    label = f"{'per-study' if size == 'study' else size} x{par}"
                    print(f"{label:12s} " + " ".join(f"{cells[s]:24.2f}" if s in cells else f"{'-':>24s}"
                                                   for s in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
