"""C-STORE ingest rate: our node vs DCMTK storescp vs Orthanc, same sender (pynetdicom SCU).

Each receiver runs as its own process on a free loopback port (TCP_NODELAY=1 for DCMTK and
Orthanc), fresh for every run; the sender is DCMTK storescu by default. Small instances are a real chest CR downsampled to ~0.45 MB;
large ones the real CR itself (~7.2 MB); every instance has its own UIDs. Prints instances/s,
MB/s and the ratios ours/storescp and ours/Orthanc.

    .venv/bin/python benchmarks/ingest.py [--small 200] [--large 20] [--parallel 1 4]
        [--sender storescu|pynetdicom] [--repeat 3]

Each cell is the median of --repeat runs, each on a fresh receiver after a short warm-up send.
"study" rows send 2-instance small studies, a new association per study (what a modality
does), so they also weigh each receiver's association set-up. With the storescu sender each
study is also a new storescu process (~20-25 ms CPU each, more than Orthanc's whole cost per
study here): that sender's start is in every receiver's time and bounds the ratios.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from dicom_node import echo, send_files  # noqa: E402
from priorwatch.settings import Settings, as_env  # noqa: E402

HOST = "127.0.0.1"
# DCMTK's, by path: with the venv first on PATH, `storescu` is pynetdicom's (other arguments).
DCMTK_STORESCU = shutil.which("storescu", path="/usr/bin") or "/usr/bin/storescu"
DCMTK_STORESCP = shutil.which("storescp", path="/usr/bin") or "/usr/bin/storescp"


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
        deadline = time.monotonic() + 30
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

    def command(self) -> tuple[list[str], dict[str, str]]:
        self.aet = "PRIORWATCH"
        s = Settings(data_dir=self.work / "data", dicom_port=self.port, ae_title=self.aet,
                     quiet_period_s={"default": 600.0}, completion_grace_s=2.0)
        env = {**os.environ, **as_env(s), "PYTHONPATH": str(REPO), "PRIORWATCH_LOG_LEVEL": "WARNING"}
        env.pop("PRIORWATCH_CONFIG", None)
        return [sys.executable, "-m", "dicom_node"], env


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


def _storescu(paths: list[Path], port: int, aet: str, calling: str) -> list[int]:
    """DCMTK's storescu as the sender: one process per call. Per instance it costs little; each
    start costs ~20-25 ms of CPU (measured here, issue 32), which "study" rows pay per study."""
    rc = subprocess.run([DCMTK_STORESCU, "-aet", calling, "-aec", aet, HOST, str(port), *map(str, paths)],
                        env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True).returncode
    return [0 if rc == 0 else -1] * len(paths)


def run_once(cls: type[Receiver], work: Path, files: list[Path], parallel: int, sender: str = "storescu",
             warmup: list[Path] | None = None, per_association: int = 0) -> tuple[float, int]:
    """Send `files` over `parallel` senders; each sender uses one association for all its files,
    or (`per_association` > 0) a new association for every `per_association` files, as a
    modality sending one study at a time does."""
    recv = cls(work).start()
    send_fn = _storescu if sender == "storescu" else (
        lambda paths, port, aet, calling: send_files(paths, HOST, port, aet, calling_ae=calling))
    try:
        if warmup:  # first association, first database connection, imports: not the steady rate
            send_fn(warmup, recv.port, recv.aet, "WARMUP")
        chunks = [files[i::parallel] for i in range(parallel)]
        results: list[list[int]] = [[] for _ in range(parallel)]

        def send(i: int) -> None:
            step = per_association or len(chunks[i]) or 1
            for k in range(0, len(chunks[i]), step):
                results[i] += send_fn(chunks[i][k:k + step], recv.port, recv.aet, f"BENCH{i}")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(parallel)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
    finally:
        recv.stop()
    ok = sum(1 for r in results for s in r if s == 0)
    return dt, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=200, help="small instances per run (~0.45 MB)")
    ap.add_argument("--large", type=int, default=20, help="large instances per run (~7.2 MB)")
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 4], help="associations in parallel")
    ap.add_argument("--receivers", nargs="+", default=["ours", "storescp", "orthanc"])
    ap.add_argument("--sender", choices=["storescu", "pynetdicom"], default="storescu",
                    help="the same sender for every receiver (storescu: C, never the bottleneck)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    ap.add_argument("--studies", type=int, default=60,
                    help="also send this many 2-instance small studies, one association per study (0: skip)")
    args = ap.parse_args()
    classes = {"ours": Ours, "storescp": StoreSCP, "orthanc": Orthanc}
    rows = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        root = Path(tmp)
        data = {"small": make_instances(root / "src-small", args.small, "small"),
                "large": make_instances(root / "src-large", args.large, "large"),
                "study": make_instances(root / "src-study", 2 * args.studies, "small")}
        warm = {"small": make_instances(root / "warm-small", 20, "small"),
                "large": make_instances(root / "warm-large", 2, "large")}
        warm["study"] = warm["small"]
        for size, files in data.items():
            if not files:
                continue
            mb = sum(p.stat().st_size for p in files) / 1e6
            for par in args.parallel:
                rates: dict[str, tuple[float, float]] = {}
                for name in args.receivers:
                    times = []
                    for rep in range(args.repeat):
                        dt, ok = run_once(classes[name], root / f"{name}-{size}-{par}-{rep}", files, par,
                                          args.sender, warm[size], per_association=2 if size == "study" else 0)
                        if ok != len(files):
                            print(f"!! {name}: {ok}/{len(files)} stored", file=sys.stderr)
                        times.append(dt)
                        shutil.rmtree(root / f"{name}-{size}-{par}-{rep}", ignore_errors=True)
                    dt = sorted(times)[len(times) // 2]
                    rates[name] = (len(files) / dt, mb / dt)
                    print(f"{size:5s} x{len(files):4d} ({mb / len(files):.2f} MB) assoc={par}  {name:9s} "
                          f"{rates[name][0]:8.1f} inst/s {rates[name][1]:8.1f} MB/s", flush=True)
                ours = rates.get("ours", (0, 0))[0]
                ratio = "  ".join(f"ours/{k}={ours / v[0]:.2f}" for k, v in rates.items() if k != "ours" and v[0])
                print(f"      -> {ratio}", flush=True)
                rows.append((size, par, rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
