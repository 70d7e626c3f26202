"""DICOM TLS towards the PACS (issue 14). Orthanc with DICOM TLS (our certificate required)
answers our C-FIND, C-GET and C-MOVE (its sub-association comes to our node over TLS) and files
what we store. DCMTK's dcmqrscp (3.6.7) has no TLS option of its own: it is reached through a
TLS front (socat with our CA, client certificate required) for C-FIND and C-GET. The same PACS
without TLS on our side cannot be reached."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from dicom_node import Ingest, StorageNode, send_files
from dicom_node.pacs import PacsUnavailable, RetrieveMethod
from dicom_node.query import find_studies
from priorwatch.models import Study, StudyRole
from priorwatch.settings import Settings
from tests.conftest import free_port, require_binary
from tests.dicom_node.tlscerts import Certs, make_certs
from tests.pacs.conftest import NODE_AE, write_study
from tests.peers import DcmQrScp, Orthanc
from workers.deliver import pacs_config
from workers.fetch import fetch_priors

PID, ISSUER = "PW-TLS-1", "HOSP-A"


class TlsFront:
    """socat terminating TLS (client certificate required) in front of a plain DICOM port."""

    def __init__(self, target_port: int, certs: Certs) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["socat", f"OPENSSL-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork,cert={certs.server_cert},"
             f"key={certs.server_key},cafile={certs.ca},verify=1", f"TCP:127.0.0.1:{target_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("socat did not listen")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class TlsPacs:
    kind: str
    aet: str
    port: int  # where we reach it over TLS
    certs: Certs
    node_port: int
    prior_uid: str
    a_file: Path


@pytest.fixture(scope="module", params=["orthanc", "dcmqrscp+socat"])
def tls_pacs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPacs]:
    tmp = tmp_path_factory.mktemp("tlspacs")
    certs = make_certs(tmp / "certs")
    files = tmp / "files"
    files.mkdir()
    prior_uid, f1 = write_study("CT_small.dcm", files, patient_id=PID, issuer=ISSUER, date="20240101",
                                modality="CR", body="CHEST", n=2)
    node_port = free_port()
    if request.param == "orthanc":
        require_binary("Orthanc")
        o = Orthanc(tmp / "orthanc", modalities={"priorwatch": (NODE_AE, "127.0.0.1", node_port)}, dicomweb=False,
                    tls=(certs.server_key, certs.server_cert, certs.ca))
        o.start()
        try:
            for p in f1:
                o.upload(p)
            yield TlsPacs("orthanc", o.aet, o.dicom_port, certs, node_port, prior_uid, f1[0])
        finally:
            o.stop()
    else:
        require_binary("dcmqrscp")
        require_binary("socat")
        d = DcmQrScp(tmp / "pacs")
        d.start()
        front = TlsFront(d.port, certs)
        try:
            d.load(f1)
            yield TlsPacs("dcmqrscp+socat", d.aet, front.port, certs, node_port, prior_uid, f1[0])
        finally:
            front.stop()
            d.stop()


def _settings(tmp: Path, t: TlsPacs, method: str, tls: bool = True) -> Settings:
    s = Settings(data_dir=tmp / "data", ae_title=NODE_AE, dicom_port=t.node_port, receive_processes=1,
                 dicom_tls_cert=t.certs.server_cert, dicom_tls_key=t.certs.server_key, dicom_tls_ca=t.certs.ca,
                 pacs_ae_title=t.aet, pacs_port=t.port, pacs_retrieve=method, pacs_tls=tls, pacs_timeout_s=10)
    s.ensure_dirs()
    return s


def _current() -> Study:
    return Study(study_uid="2.25.77", patient_id=PID, issuer=ISSUER, modality="CR", body_part="CHEST",
                 study_date=date(2025, 6, 1))


@pytest.mark.parametrize("method", ["c-get", "c-move"])
def test_prior_found_and_fetched_over_tls(tls_pacs: TlsPacs, tmp_path: Path, method: str) -> None:
    t = tls_pacs
    if t.kind == "dcmqrscp+socat" and method == "c-move":
        pytest.skip("dcmqrscp's own C-MOVE sub-association cannot use TLS (no TLS in dcmqrscp 3.6.7)")
    settings = _settings(tmp_path, t, method)
    pacs = pacs_config(settings)
    assert pacs is not None and pacs.tls is not None and pacs.retrieve == RetrieveMethod(method)
    with StorageNode(settings, monitor=False) as node:  # TLS too: Orthanc's C-MOVE comes in over TLS
        sink = Ingest(settings, create_schema=False).sink(role=StudyRole.prior.value, calling_ae=t.aet)
        out = fetch_priors(_current(), pacs, settings, sink)
        print(f"\n{t.kind} over TLS, {method}: fetched {len(out.fetched)} prior(s)")
        assert out.fetched == [t.prior_uid]
        assert node.counts["stored"] == (2 if method == "c-move" else 0)  # C-GET's land in the sink
        # A store to the PACS (as the SR's delivery does) goes over TLS as well.
        assert send_files([t.a_file], "127.0.0.1", t.port, t.aet, NODE_AE, tls_args=pacs.tls) == [0]


def test_tls_pacs_without_tls_on_our_side_is_unreachable(tls_pacs: TlsPacs, tmp_path: Path) -> None:
    pacs = pacs_config(_settings(tmp_path, tls_pacs, "c-get", tls=False))
    assert pacs is not None and pacs.tls is None
    with pytest.raises(PacsUnavailable):
        find_studies(pacs.model_copy(update={"timeout_s": 3}), PID, ISSUER, NODE_AE)
