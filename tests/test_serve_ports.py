"""`priorwatch serve` checks every port it will listen on before it starts anything, and names
each conflict in one line (which listener, which setting, which address).

Before: an HL7 port already taken was found only when the HL7 service started, after Triton, the
worker and the node (~54 s), and the error did not name the port. The 5 s below is a generous
bound on an exit (the command's own start-up is ~1 s of CPU), not a speed measurement.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from priorwatch.ports import ListenPort, PortConflict, check
from priorwatch.settings import Settings, as_env
from workers.runtime import Runtime

from .conftest import free_port

REPO = Path(__file__).resolve().parents[1]
EXIT_BOUND_S = 5.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _settings(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        data_dir=tmp_path / "data", dicom_port=free_port(), triton_grpc_port=free_port(),
        triton_http_port=free_port(), triton_metrics_port=free_port(), receive_processes=1)
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def _serve(settings: Settings, hl7_port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{k: str(v) for k, v in as_env(settings).items()},
           "PRIORWATCH_MONITORING_HL7_ENABLED": "true", "PRIORWATCH_MONITORING_HL7_PORT": str(hl7_port),
           "PYTHONPATH": str(REPO)}
    env.pop("PRIORWATCH_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "priorwatch.cli", "serve"], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=EXIT_BOUND_S)
    finally:
        if proc.poll() is None:  # it went on starting things: end all of it
            os.killpg(proc.pid, signal.SIGTERM)
            proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_serve_with_the_hl7_port_taken_exits_naming_it_before_starting_anything(
        tmp_path: Path, taken_port: int) -> None:
    settings = _settings(tmp_path)

    done = _serve(settings, taken_port)

    assert done.returncode == 2
    named = [line for line in done.stderr.splitlines() if f"127.0.0.1:{taken_port}" in line]
    assert named == [f"  HL7/MLLP listener: 127.0.0.1:{taken_port} is already in use "
                     f"(setting PRIORWATCH_MONITORING_HL7_PORT)"]
    assert not (settings.data_dir / "logs").exists()  # no child was started (their logs live there)


def test_each_taken_port_is_named_on_its_own_line(tmp_path: Path, taken_port: int) -> None:
    """DICOM and HL7 both taken: two lines, one per setting; the free ones are not named."""
    settings = _settings(tmp_path, dicom_port=taken_port)

    done = _serve(settings, taken_port)

    assert done.returncode == 2
    lines = [line.strip() for line in done.stderr.splitlines() if "already in use" in line]
    assert lines == [
        f"DICOM Storage SCP: 127.0.0.1:{taken_port} is already in use (setting PRIORWATCH_DICOM_PORT)",
        f"HL7/MLLP listener: 127.0.0.1:{taken_port} is already in use (setting PRIORWATCH_MONITORING_HL7_PORT)",
    ]
    assert f"port {taken_port} is wanted twice: by DICOM Storage SCP (PRIORWATCH_DICOM_PORT) and HL7/MLLP " \
           f"listener (PRIORWATCH_MONITORING_HL7_PORT)" in done.stderr


def test_the_plan_lists_every_listener_serve_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIORWATCH_MONITORING_HL7_ENABLED", "true")
    monkeypatch.setenv("PRIORWATCH_MONITORING_HL7_PORT", "12575")
    from monitoring.settings import get_monitoring_settings

    get_monitoring_settings.cache_clear()
    try:
        settings = _settings(tmp_path, node_http_port=12580, worker_http_port=12590)
        plan = Runtime(settings, beat=True, services=True).ports()
    finally:
        get_monitoring_settings.cache_clear()
    assert sorted(p.setting for p in plan) == sorted([
        "PRIORWATCH_DICOM_PORT", "PRIORWATCH_TRITON_GRPC_PORT", "PRIORWATCH_TRITON_HTTP_PORT",
        "PRIORWATCH_TRITON_METRICS_PORT", "PRIORWATCH_WORKER_HTTP_PORT", "PRIORWATCH_NODE_HTTP_PORT",
        "PRIORWATCH_MONITORING_HL7_PORT"])
    assert {p.port for p in plan if p.setting.endswith(("HL7_PORT", "NODE_HTTP_PORT", "WORKER_HTTP_PORT"))} == {
        12575, 12580, 12590}


def test_a_remote_triton_takes_no_local_port(tmp_path: Path) -> None:
    settings = _settings(tmp_path, triton_url="triton.example:8001")
    plan = Runtime(settings, services=False).ports()
    assert [p.setting for p in plan] == ["PRIORWATCH_DICOM_PORT"]


def test_two_settings_on_one_free_port_are_a_conflict() -> None:
    port = free_port()
    with pytest.raises(PortConflict) as info:
        check([ListenPort("node HTTP store", "PRIORWATCH_NODE_HTTP_PORT", "127.0.0.1", port),
               ListenPort("worker HTTP (health, metrics)", "PRIORWATCH_WORKER_HTTP_PORT", "127.0.0.1", port)])
    assert (f"port {port} is wanted twice: by node HTTP store (PRIORWATCH_NODE_HTTP_PORT) and worker HTTP "
            f"(health, metrics) (PRIORWATCH_WORKER_HTTP_PORT)") in str(info.value)
