"""serve's supervisor, for real: it refuses a taken port with a clear message; its Triton answers
only on loopback and refuses model unload; a tritonserver killed with -9 is restarted with a
printed line and serves again; a serve killed with -9 leaves no child behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from priorwatch.settings import as_env
from tests.faults.harness import Site, WebhookReceiver, no_orphans, site_settings


def test_serve_refuses_a_taken_port_and_names_it(tmp_path: Path) -> None:
    hook = WebhookReceiver()
    settings = site_settings(tmp_path / "data", hook)
    hook.close()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.triton_http_port))
        squatter.listen()
        env = {**os.environ, **{k: str(v) for k, v in as_env(settings).items()}}
        r = subprocess.run([str(Path(sys.executable).parent / "priorwatch"), "serve"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert r.returncode == 2
    assert f"Triton HTTP: 127.0.0.1:{settings.triton_http_port}" in r.stderr
    assert "already in use" in r.stderr and "DICOM:" not in r.stderr  # only the taken one is named


def _post(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _ready(http: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http}/v2/models/registration/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.triton
def test_triton_is_restarted_refuses_unload_and_nothing_outlives_a_killed_serve(tmp_path: Path) -> None:
    hook = WebhookReceiver()
    settings = site_settings(tmp_path / "data", hook)
    http = f"http://127.0.0.1:{settings.triton_http_port}"
    site = Site(settings, tmp_path).start()
    try:
        assert _ready(http)
        assert _post(f"{http}/v2/repository/models/registration/unload") >= 400
        assert _post(f"{http}/v2/repository/models/registration/load") >= 400
        assert _ready(http), "the model is still served after the refused unload"
        listening = [ln.split()[3] for ln in subprocess.run(["ss", "-ltnH"], capture_output=True, text=True,
                                                             check=True).stdout.splitlines()]
        for port in (settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port):
            addrs = {a.rsplit(":", 1)[0] for a in listening if a.rsplit(":", 1)[1] == str(port)}
            assert addrs and addrs <= {"127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"}, (port, addrs)

        old = site.kill9("tritonserver")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "tritonserver restarted" not in site.output():
            time.sleep(0.2)
        assert "tritonserver exited (signal 9)" in site.output() and "tritonserver restarted" in site.output()
        assert site.child("bin/tritonserver") != old and _ready(http)

        family = [pid for pid, _ in site.descendants()]
        assert len(family) >= 4  # tritonserver (+ its Python stub), worker, beat, receiver
        site.kill9("serve")
        assert no_orphans(family) == []
    finally:
        site.stop()
        hook.close()
