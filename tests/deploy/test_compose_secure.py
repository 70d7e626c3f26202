"""The production compose stack is secure by default (issue 27), read from its files: only DICOM,
MLLP and the HTTPS proxy are published; Triton publishes nothing and has no model control; the
node's DICOM and MLLP ports have TLS with client certificates. `compose/smoke.sh` checks the same
on a running stack; this keeps the files from drifting where Docker is not at hand (CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


def _services() -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"])


def _env() -> dict[str, str]:
    lines = (COMPOSE / "priorwatch.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_only_dicom_mllp_and_https_are_published() -> None:
    published = {name: svc.get("ports", []) for name, svc in _services().items() if svc.get("ports")}
    assert published == {"node": ["11112:11112", "2575:2575"], "proxy": ["443:8443"]}


def test_triton_has_no_model_control() -> None:
    command = " ".join(str(_services()["triton"]["command"]).split())
    assert "--model-control-mode=none" in command
    assert "--load-model" not in command


def test_dicom_and_mllp_speak_tls_with_client_certificates() -> None:
    env = _env()
    for prefix in ("PRIORWATCH_DICOM_TLS_", "PRIORWATCH_MONITORING_HL7_TLS_"):
        assert [env.get(prefix + k) for k in ("CERT", "KEY", "CA")] == [
            "/etc/priorwatch/tls/server.crt", "/etc/priorwatch/tls/server.key", "/etc/priorwatch/tls/ca.crt"]
    assert "PRIORWATCH_DICOM_TLS_REQUIRE_CLIENT_CERT" not in env  # its default: required
    assert env["PRIORWATCH_DASHBOARD_PUBLIC_URL"].startswith("https://")
    assert env["PRIORWATCH_DASHBOARD_COOKIE_SECURE"] == "true"


def test_the_proxy_serves_tls_1_2_and_up_only() -> None:
    conf = (COMPOSE / "nginx" / "dashboard.conf.template").read_text()
    assert "listen ${PW_PROXY_LISTEN} ssl;" in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
