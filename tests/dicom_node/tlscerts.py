"""Throwaway DICOM TLS certificates made with `openssl` in a test's tmp dir: a CA, a server
certificate for localhost/127.0.0.1 and a client certificate, both signed by the CA, and a
client certificate from another CA (which a node must refuse); `client_cert` issues more client
certificates from the same CA, by subject CN (the name `dicom_tls_client_aes` maps to AE titles)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_binary


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by another CA
    stranger_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def _leaf(d: Path, name: str, ca: str, san: str, cn: str | None = None) -> None:
    _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn or name}", "-keyout", f"{name}.key",
         "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
         "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)


def make_certs(d: Path) -> Certs:
    require_binary("openssl")
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    _leaf(d, "client", "ca", "DNS:priorwatch-client")
    _leaf(d, "stranger", "otherca", "DNS:stranger")
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
                 d / "stranger.crt", d / "stranger.key")


def client_cert(d: Path, cn: str) -> tuple[Path, Path]:
    """A client certificate (and key) for subject CN `cn`, signed by `make_certs(d)`'s CA."""
    name = "client-" + "".join(ch if ch.isalnum() else "_" for ch in cn)
    _leaf(d, name, "ca", "DNS:priorwatch-client", cn=cn)
    return d / f"{name}.crt", d / f"{name}.key"
