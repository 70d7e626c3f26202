"""Starvation probes against the node as its own process (`python -m dicom_node`, default
limits), as issue 14 ran them: 40 connections that each send a 6-byte PDU header and hold; a
header claiming 200 bytes followed by 4 bytes; headers claiming a 1 GiB PDU (an association
request and a P-DATA). Under each (and all at once) DCMTK's storescu sends one good study; the
script prints how long it took and the node's memory (RSS of the node and its receivers).

    .venv/bin/python scripts/starvation_probe.py [--receive-processes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from dicom_node import echo  # noqa: E402
from priorwatch.settings import Settings, as_env  # noqa: E402
from tests.conftest import free_port  # noqa: E402

HOST = "127.0.0.1"


def _rss_mb(pid: int) -> float:
    """RSS of `pid` and its children (the receiving processes), MB."""
    total = 0
    pids = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def _study(d: Path) -> Path:
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    p = d / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p


def _good(port: int, d: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/storescu", "-aet", "GOODSCU", "-aec", "PRIORWATCH", HOST, str(port), str(_study(d))],
                       env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=120)
    return p.returncode, round(time.monotonic() - t0, 3)


def _open(port: int, payload: bytes, n: int = 1) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(payload)
        out.append(s)
    return out


PROBES = {
    "40 stalled 6-byte headers": lambda port: _open(port, b"\x01\x00\x00\x00\x00\xc8", 40),
    "header claiming 200 bytes + 4 bytes": lambda port: _open(port, b"\x01\x00\x00\x00\x00\xc8\x00\x01\x00\x00"),
    "1 GiB claims (A-ASSOCIATE-RQ and P-DATA)": lambda port: (
        _open(port, struct.pack(">BBL", 0x01, 0, 1 << 30) + bytes(1 << 20))
        + _open(port, struct.pack(">BBL", 0x04, 0, 1 << 30) + bytes(1 << 20))),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--receive-processes", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-starve-") as tmp:
        d = Path(tmp)
        settings = Settings(data_dir=d / "data", dicom_port=free_port(), receive_processes=args.receive_processes)
        settings.ensure_dirs()
        env = {**os.environ, **{k: str(v) for k, v in as_env(settings).items()}, "PYTHONPATH": str(REPO)}
        env.pop("PRIORWATCH_CONFIG", None)
        node = subprocess.Popen([sys.executable, "-m", "dicom_node"], env=env, cwd=REPO,
                                stdout=open(d / "node.log", "w"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while echo(HOST, settings.dicom_port, settings.ae_title, timeout=1) != 0:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise RuntimeError("node did not start")
                time.sleep(0.2)
            port = settings.dicom_port
            rc, took = _good(port, d)  # warm-up
            figures: dict[str, object] = {"settings": {
                "pdu_timeout_s": settings.dicom_pdu_timeout_s, "artim_timeout_s": settings.dicom_artim_timeout_s,
                "max_pdu_bytes": settings.dicom_max_pdu_bytes, "receive_processes": args.receive_processes}}
            rss0 = _rss_mb(node.pid)
            rc, took = _good(port, d)
            figures["baseline"] = {"storescu_rc": rc, "accept_s": took, "rss_mb": rss0}
            for name, probe in [*PROBES.items(), ("all at once", None)]:
                before = _rss_mb(node.pid)
                socks = (probe(port) if probe else [s for p in PROBES.values() for s in p(port)])
                time.sleep(0.5)
                rc, took = _good(port, d)
                peak = _rss_mb(node.pid)
                figures[name] = {"storescu_rc": rc, "accept_s": took, "rss_before_mb": before, "rss_after_mb": peak,
                                 "rss_delta_mb": round(peak - before, 1)}
                for s in socks:
                    s.close()
                time.sleep(0.5)
            figures["rss_end_mb"] = _rss_mb(node.pid)
            figures["rss_end_delta_vs_baseline_mb"] = round(figures["rss_end_mb"] - rss0, 1)  # type: ignore[operator]
        finally:
            node.terminate()
            node.wait(20)
    print(json.dumps(figures, indent=1))
    ok = all(v["storescu_rc"] == 0 and v["accept_s"] < 5 and v["rss_delta_mb"] < 64
             for k, v in figures.items() if isinstance(v, dict) and "rss_delta_mb" in v)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
