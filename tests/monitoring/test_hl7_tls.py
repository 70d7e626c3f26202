"""MLLP over TLS (issue 27): with a certificate, key and CA the listener files a signed report sent
over TLS by a client whose certificate our CA signed, and files nothing from a plain-TCP sender or
a TLS sender without a certificate (certificates made with `openssl`, as the node's TLS tests do)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from monitoring.hl7 import HL7TlsConfigError, MLLPListener, frame
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine
from priorwatch.models import SignedReport, Study
from priorwatch.settings import Settings
from tests.dicom_node.tlscerts import Certs, make_certs

from .test_hl7 import msa, oru


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("hl7certs"))


@pytest.fixture
def tls_listener(pw_settings: Settings, certs: Certs) -> Iterator[MLLPListener]:
    with Session(get_engine(pw_settings)) as s:
        s.add(Study(study_uid="2.25.1", patient_id="P1", issuer="HOSP", accession="ACC1", institution="SITE_A"))
        s.commit()
    ms = MonitoringSettings(timezone="UTC", hl7_read_timeout_s=3.0, hl7_tls_cert=certs.server_cert,
                            hl7_tls_key=certs.server_key, hl7_tls_ca=certs.ca)
    with MLLPListener(pw_settings, ms, host="127.0.0.1", port=0) as lst:
        yield lst


def _client(certs: Certs, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return ctx


def _exchange(sock: socket.socket, message: str) -> bytes:
    """Send one framed message; what comes back until the ACK's end or the connection's."""
    sock.sendall(frame(message))
    buf = b""
    while not buf.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def _reports(settings: Settings) -> int:
    with Session(get_engine(settings)) as s:
        return len(s.exec(select(SignedReport)).all())


def test_report_over_tls_with_our_ca_is_filed(tls_listener: MLLPListener, certs: Certs, pw_settings: Settings) -> None:
    with socket.create_connection(("127.0.0.1", tls_listener.port), timeout=10) as raw:
        with _client(certs, with_cert=True).wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.version() in ("TLSv1.2", "TLSv1.3")
            ack = _exchange(sock, oru())
    assert msa(ack) == ("AA", "MSG1")
    assert _reports(pw_settings) == 1


def test_plain_tcp_sender_gets_no_ack_and_nothing_is_filed(tls_listener: MLLPListener, pw_settings: Settings) -> None:
    with socket.create_connection(("127.0.0.1", tls_listener.port), timeout=10) as sock:
        got = _exchange(sock, oru())
    assert b"MSA" not in got
    assert _reports(pw_settings) == 0


def test_tls_sender_without_a_certificate_is_refused(tls_listener: MLLPListener, certs: Certs,
                                                     pw_settings: Settings) -> None:
    with socket.create_connection(("127.0.0.1", tls_listener.port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            # TLS 1.3 reports the missing certificate at the first read, 1.2 during the handshake.
            with _client(certs, with_cert=False).wrap_socket(raw, server_hostname="localhost") as sock:
                _exchange(sock, oru())
    assert _reports(pw_settings) == 0


def test_a_certificate_without_its_key_does_not_start(pw_settings: Settings, certs: Certs) -> None:
    ms = MonitoringSettings(timezone="UTC", hl7_tls_cert=certs.server_cert)
    with pytest.raises(HL7TlsConfigError, match="hl7_tls_key"):
        MLLPListener(pw_settings, ms, host="127.0.0.1", port=0).start()
