"""The scale curve's set-up (benchmarks/scale.py), short: a worker in a network namespace of its
own has only its own loopback, cannot reach the host's ports, and still gives results through
the per-service bridges (PostgreSQL, Redis, both Tritons, the node's store)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.cluster import Cluster
from priorwatch.models import JobState


def _in_worker_netns(c: Cluster, *cmd: str) -> subprocess.CompletedProcess[str]:
    pid = c._procs[0].pid  # noqa: SLF001 - the worker's process is the namespace's
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], capture_output=True, text=True, timeout=30)


@pytest.mark.server
@pytest.mark.triton
def test_worker_in_its_own_network_namespace_reaches_the_site_only_through_bridges(tmp_path: Path) -> None:
    studies = Cluster.make_studies(tmp_path / "input", patients=1)
    with Cluster(tmp_path / "site", workers=2, broker="redis", netns=True, tritons=2) as c:
        assert c.isolated, "run as root: the worker needs namespaces of its own"
        links = _in_worker_netns(c, "ip", "-o", "link").stdout.splitlines()
        assert [ln.split(":")[1].strip() for ln in links] == ["lo"]
        # The node's DICOM port is not bridged: from the worker's namespace nothing answers there.
        probe = _in_worker_netns(c, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{c.node_settings.dicom_port}")
        assert probe.returncode != 0
        c.send(studies)
        jobs = c.wait(len(studies), timeout_s=300)
        results = c.results()
    assert [j.error for j in jobs if j.state == JobState.failed] == []
    assert len(results) == 2 and sum(1 for _, prior, status, _ in results if prior and status == "done") == 1
