"""DICOM TLS on the node's port (issue 14), tested with DCMTK's `storescu +tls`: a client with a
certificate from our CA stores; one without a certificate, with another CA's, or without TLS is
refused and the node keeps serving; silent TLS connections do not hold up the others (the
handshake runs in each association's thread, under the PDU deadline). With a certificate map
(`dicom_tls_client_aes`, issue 27) a certificate stores only as the calling AE titles mapped to its
subject CN: CR01's certificate cannot store as PACS."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node import StorageNode
from dicom_node.tls import TlsConfigError
from priorwatch.settings import Settings, as_env
from tests.conftest import require_binary

from .conftest import CR, CT, StudyMaker, make_settings
from .tlscerts import Certs, client_cert, make_certs

HOST = "127.0.0.1"
STORESCU = "/usr/bin/storescu"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_node(tmp_path: Path, certs: Certs) -> Iterator[StorageNode]:
    settings = make_settings(tmp_path, dicom_tls_cert=certs.server_cert, dicom_tls_key=certs.server_key,
                             dicom_tls_ca=certs.ca, dicom_tls_require_client_cert=True, dicom_pdu_timeout_s=2.0,
                             dicom_artim_timeout_s=2.0)
    node = StorageNode(settings).start()
    try:
        yield node
    finally:
        node.stop()


def _storescu(node: StorageNode, files: list[Path], tls: list[str], calling: str = "TLSSCU") -> tuple[int, float, str]:
    require_binary(STORESCU)
    t0 = time.monotonic()
    p = subprocess.run([STORESCU, "-aet", calling, "-aec", node.settings.ae_title, *tls, HOST, str(node.port),
                        *map(str, files)], env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, time.monotonic() - t0, p.stdout + p.stderr


def _mutual(c: Certs) -> list[str]:
    return ["+tls", str(c.client_key), str(c.client_cert), "+cf", str(c.ca)]


def test_storescu_over_tls_with_our_ca_stores(tls_node: StorageNode, certs: Certs, maker: StudyMaker) -> None:
    files = maker.study(4, CT) + maker.study(1, CR)  # small ones and a 7.2 MB one (many TLS records)
    rc, took, out = _storescu(tls_node, files, _mutual(certs))
    print(f"\nstorescu +tls, 5 instances (4 CT + 7.2 MB CR): rc={rc}, {took:.2f}s")
    assert rc == 0, out
    assert tls_node.counts["stored"] == 5


@pytest.mark.parametrize("how", ["no-client-cert", "other-ca", "plain-tcp"])
def test_clients_we_cannot_verify_are_refused_and_the_node_keeps_serving(tls_node: StorageNode, certs: Certs,
                                                                         maker: StudyMaker, how: str) -> None:
    [path] = maker.study(1, CT)
    bad = {
        "no-client-cert": ["+tla", "+cf", str(certs.ca)],
        "other-ca": ["+tls", str(certs.stranger_key), str(certs.stranger_cert), "+cf", str(certs.ca)],
        "plain-tcp": [],
    }[how]
    rc, _, out = _storescu(tls_node, [path], bad)
    assert rc != 0, out
    assert tls_node.counts["stored"] == 0
    rc, _, out = _storescu(tls_node, [path], _mutual(certs))
    assert rc == 0, out
    assert tls_node.counts["stored"] == 1


def test_silent_tls_connections_do_not_hold_up_a_good_client(tls_node: StorageNode, certs: Certs,
                                                             maker: StudyMaker) -> None:
    silent = [socket.create_connection((HOST, tls_node.port), timeout=10) for _ in range(8)]
    try:
        time.sleep(0.2)
        [path] = maker.study(1, CT)
        rc, took, out = _storescu(tls_node, [path], _mutual(certs))
        print(f"\nstorescu +tls with 8 silent TLS connections held: rc={rc}, {took:.2f}s")
        assert rc == 0 and took < 5.0, out
        s = silent[0]
        s.settimeout(5.0)  # a silent one is let go when its ARTIM timer runs out (2 s here)
        assert s.recv(1) == b""
    finally:
        for s in silent:
            s.close()


# -- certificate -> calling AE titles (issue 27) ------------------------------------------------
CLIENT_AES = {"CR01": ["CR01"], "pacs.example": ["PACS"]}
CALLING_REFUSED = "Calling AE Title Not Recognized"  # DCMTK's words for A-ASSOCIATE-RJ reason 3


@pytest.fixture(scope="module")
def mapped(certs: Certs) -> dict[str, tuple[Path, Path]]:
    """Client certificates from the node's CA by subject CN: CR01 and pacs.example."""
    return {cn: client_cert(certs.ca.parent, cn) for cn in ("CR01", "pacs.example")}


def _node(tmp_path: Path, certs: Certs, client_aes: dict[str, list[str]]) -> StorageNode:
    settings = make_settings(tmp_path, dicom_tls_cert=certs.server_cert, dicom_tls_key=certs.server_key,
                             dicom_tls_ca=certs.ca, dicom_tls_require_client_cert=True,
                             dicom_tls_client_aes=client_aes)
    return StorageNode(settings).start()


def _as(cert: tuple[Path, Path], certs: Certs) -> list[str]:
    return ["+tls", str(cert[1]), str(cert[0]), "+cf", str(certs.ca)]


@pytest.mark.parametrize("cn,calling", [("CR01", "PACS"), ("pacs.example", "CR01")])
def test_a_mapped_certificate_cannot_call_as_another_ae(tmp_path: Path, certs: Certs, maker: StudyMaker,
                                                       mapped: dict[str, tuple[Path, Path]], cn: str,
                                                       calling: str) -> None:
    node = _node(tmp_path, certs, CLIENT_AES)
    try:
        [path] = maker.study(1, CT)
        rc, _, out = _storescu(node, [path], _as(mapped[cn], certs), calling=calling)
        assert rc != 0, out
        assert CALLING_REFUSED in out, out
        assert node.counts["stored"] == 0
        assert node.guard.rejected == 1
    finally:
        node.stop()


def test_a_mapped_certificate_stores_as_its_own_ae(tmp_path: Path, certs: Certs, maker: StudyMaker,
                                                   mapped: dict[str, tuple[Path, Path]]) -> None:
    node = _node(tmp_path, certs, CLIENT_AES)
    try:
        rc, _, out = _storescu(node, maker.study(2, CT), _as(mapped["CR01"], certs), calling="CR01")
        assert rc == 0, out
        rc, _, out = _storescu(node, maker.study(1, CT), _as(mapped["pacs.example"], certs), calling="PACS")
        assert rc == 0, out
        assert node.counts["stored"] == 3
    finally:
        node.stop()


def test_a_certificate_not_in_the_map_is_refused(tmp_path: Path, certs: Certs, maker: StudyMaker,
                                                 mapped: dict[str, tuple[Path, Path]]) -> None:
    node = _node(tmp_path, certs, {"CR01": ["CR01"]})
    try:
        # Signed by our CA, but its CN (pacs.example) is not in the map: no AE title is its own.
        rc, _, out = _storescu(node, maker.study(1, CT), _as(mapped["pacs.example"], certs), calling="CR01")
        assert rc != 0, out
        assert CALLING_REFUSED in out, out
        assert node.counts["stored"] == 0
    finally:
        node.stop()


def test_without_a_map_any_certificate_from_our_ca_calls_as_any_ae(tmp_path: Path, certs: Certs,
                                                                  maker: StudyMaker,
                                                                  mapped: dict[str, tuple[Path, Path]]) -> None:
    node = _node(tmp_path, certs, {})
    try:
        rc, _, out = _storescu(node, maker.study(1, CT), _as(mapped["CR01"], certs), calling="PACS")
        assert rc == 0, out
        assert node.counts["stored"] == 1
    finally:
        node.stop()


@pytest.mark.parametrize("tls", ["none", "client-cert-optional"])
def test_a_certificate_map_without_required_client_certificates_does_not_start(tmp_path: Path, certs: Certs,
                                                                               tls: str) -> None:
    kw: dict[str, object] = {} if tls == "none" else dict(
        dicom_tls_cert=certs.server_cert, dicom_tls_key=certs.server_key, dicom_tls_ca=certs.ca,
        dicom_tls_require_client_cert=False)
    with pytest.raises(TlsConfigError, match="dicom_tls_client_aes"):
        StorageNode(make_settings(tmp_path, dicom_tls_client_aes=CLIENT_AES, **kw))


def test_the_map_reaches_the_receiving_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Extra receiving processes read their settings from the environment the node gives them (as_env).
    sent = make_settings(tmp_path, dicom_tls_client_aes=CLIENT_AES)
    for key, value in as_env(sent).items():
        monkeypatch.setenv(key, value)
    assert Settings().dicom_tls_client_aes == CLIENT_AES
