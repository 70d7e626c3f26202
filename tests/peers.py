"""Real DICOM peers started by tests and benchmarks: Orthanc from a JSON config.

Facts (DESIGN.md): Orthanc starts in ~0.2 s; it answers C-FIND/C-MOVE/C-GET only for AEs in
`DicomModalities`; it listens on all interfaces, so we only ever talk to 127.0.0.1; it
stalls ~45 ms per C-STORE unless TCP_NODELAY=1 is in its environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self


def _free_port() -> int:
    from tests.conftest import free_port  # one port registry for the whole test process

    return free_port()


class _Peer:
    """A PACS run as a child process: launched with TCP_NODELAY=1, waited for until it answers,
    stopped (terminate, then kill after 10 s). Written once for Orthanc and dcmqrscp."""

    name = "peer"
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _launch(self, cmd: list[str], log_name: str, log_mode: str, cwd: Path | None = None) -> None:
        """Start `cmd` with its output in `workdir/log_name` (TCP_NODELAY=1: DESIGN.md's 45 ms stall)."""
        log = open(self.workdir / log_name, log_mode)
        self.proc = subprocess.Popen(cmd, env={**os.environ, "TCP_NODELAY": "1"}, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=cwd)

    def _wait_ready(self, ready: Callable[[], bool], log_name: str, pause: float) -> None:
        """Poll `ready()` for 20 s; a peer that exits first is reported with its log's tail."""
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: " + (self.workdir / log_name).read_text()[-2000:])
            if ready():
                return
            time.sleep(pause)
        raise RuntimeError(f"{self.name} did not start in 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Orthanc(_Peer):
    """An Orthanc PACS in a temporary folder, on free loopback ports."""

    name = "Orthanc"

    def __init__(self, workdir: Path, aet: str = "ORTHANC", modalities: dict[str, tuple[str, str, int]] | None = None,
                 dicomweb: bool = True, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.tls = tls  # (key, cert, CA) PEM paths: DICOM TLS on its port and to its modalities
        self.workdir = workdir
        self.aet = aet
        self.dicom_port = _free_port()
        self.http_port = _free_port()
        self.modalities = modalities or {}
        self.dicomweb = dicomweb
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self) -> "Orthanc":
        exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not Path(exe).exists():
            raise FileNotFoundError("Orthanc is not installed (scripts/install.sh installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "Name": "test-pacs",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {k: ({"AET": v[0], "Host": v[1], "Port": v[2], "UseDicomTls": True} if self.tls else list(v))
                                for k, v in self.modalities.items()},
            "MaximumPduLength": 131072,
            "StableAge": 1,
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"] if self.dicomweb else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if self.tls is not None:
            key, cert, ca = self.tls
            cfg.update(DicomTlsEnabled=True, DicomTlsCertificate=str(cert), DicomTlsPrivateKey=str(key),
                       DicomTlsTrustedCertificates=str(ca), DicomTlsRemoteCertificateRequired=True)
        (self.workdir / "orthanc.json").write_text(json.dumps(cfg))
        self._launch([exe, str(self.workdir / "orthanc.json")], "orthanc.log", "wb")
        self._wait_ready(self._answers, "orthanc.log", 0.1)
        return self

    def _answers(self) -> bool:
        try:
            self.rest("/system")
            return True
        except OSError:
            return False

    def rest(self, path: str, data: bytes | None = None, method: str | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def upload(self, path: Path) -> str:
        return str(self.rest("/instances", data=Path(path).read_bytes(), method="POST")["ID"])


class DcmQrScp(_Peer):
    """DCMTK's `dcmqrscp` as a second PACS, in a temporary folder, on a free loopback port.

    Unlike Orthanc it returns no optional C-FIND keys (ModalitiesInStudy,
    NumberOfStudyRelatedInstances, series BodyPartExamined). Its HostTable names the AEs it
    may C-MOVE to; `load()` stores files into it with DCMTK's storescu. It has no TLS option
    (DCMTK 3.6.7): the TLS tests put a TLS front (socat) before it.
    """

    name = "dcmqrscp"

    def __init__(self, workdir: Path, aet: str = "DCMQRSCP", hosts: dict[str, tuple[str, str, int]] | None = None) -> None:
        self.workdir = workdir
        self.aet = aet
        self.port = _free_port()
        self.hosts = hosts or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dicom_port(self) -> int:
        return self.port

    def start(self) -> "DcmQrScp":
        exe = shutil.which("dcmqrscp") or "/usr/bin/dcmqrscp"
        if not Path(exe).exists():
            raise FileNotFoundError("dcmqrscp is not installed (scripts/install.sh installs dcmtk)")
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        hosts = "\n".join(f"{name} = ({aet}, {host}, {port})" for name, (aet, host, port) in self.hosts.items())
        (self.workdir / "dcmqrscp.cfg").write_text(
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 65536\nMaxAssociations = 16\n\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
            f"AETable BEGIN\n{self.aet} {db} RW (500, 1024mb) ANY\nAETable END\n"
        )
        self._launch([exe, "-c", str(self.workdir / "dcmqrscp.cfg"), str(self.port)], "dcmqrscp.log", "ab",
                     cwd=self.workdir)
        # ready = a whole association: a bare connect-and-close confuses dcmqrscp's next one
        self._wait_ready(self._echo, "dcmqrscp.log", 0.05)
        return self

    def _echo(self) -> bool:
        from dicom_node.scu import echo

        return echo("127.0.0.1", self.port, self.aet, "PWREADY", timeout=2) == 0

    def load(self, paths: list[Path], calling_ae: str = "LOADER") -> None:
        """Store `paths` into the archive (DCMTK storescu, as a modality would)."""
        exe = "/usr/bin/storescu"
        cmd = [exe, "-aet", calling_ae, "-aec", self.aet, "127.0.0.1", str(self.port),
               *[str(p) for p in paths]]
        proc = subprocess.run(cmd, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"storescu into dcmqrscp failed ({proc.returncode}): {proc.stderr.decode()[-1000:]}")
