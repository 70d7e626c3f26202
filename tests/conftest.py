"""Fixtures shared by every room's tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


_ISSUED: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before in this test process. The kernel may give a
    just-closed ephemeral port again, and a test that asks for several ports at once (node, Triton
    gRPC/HTTP/metrics) then wants one port twice (seen: a PortConflict in a clean-clone run)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _ISSUED:
            _ISSUED.add(port)
            return port


def require_binary(name: str) -> str:
    """A missing peer is an install bug: fail, everywhere (a skip would let a broken peer path pass
    wherever `CI` is not set, and `.ci/run` does not set it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; scripts/install.sh must install it")
    return path


@pytest.fixture
def artifacts_dir() -> Path:
    d = Path(os.environ.get("PRIORWATCH_ARTIFACTS", REPO / "artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def child_processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts (append them); any still running at its end are killed and reaped."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
