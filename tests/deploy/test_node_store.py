"""The node's HTTP service and a worker's fetch from it: real HTTP on loopback, real files."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlmodel import select

from comparison import synthetic
from dicom_node import Ingest
from dicom_node.serve_store import node_service
from priorwatch.db import init_db, session_scope
from priorwatch.metrics import classify_failure
from priorwatch.models import Instance
from priorwatch.settings import Settings
from tests.conftest import free_port
from workers.errors import PermanentError, TransientError
from workers.node_fetch import InstanceFiles, cache_root

TOKEN = "s3cret-token"


def _node(tmp_path: Path) -> tuple[Settings, Instance]:
    settings = Settings(data_dir=tmp_path / "node", node_token=TOKEN, node_http_port=0, dicom_port=free_port())
    init_db(settings)
    pair = synthetic.make_pair(tmp_path / "in", "PWSTORE1", seed=1, with_prior=False)
    ingest = Ingest(settings)
    for p in pair.current_paths:
        ingest.store(Path(p).read_bytes(), calling_ae="CR01")
    with session_scope(settings) as s:
        inst = s.exec(select(Instance)).first()
    assert inst is not None
    return settings, inst


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_node_serves_a_stored_instance_only_with_the_token(tmp_path: Path) -> None:
    settings, inst = _node(tmp_path)
    with node_service(settings) as svc:
        base = f"http://127.0.0.1:{svc.port}"
        status, body = _get(f"{base}/instances/{inst.id}", TOKEN)
        assert status == 200 and body == Path(inst.path).read_bytes()
        assert _get(f"{base}/instances/{inst.id}", None)[0] == 401
        assert _get(f"{base}/instances/{inst.id}", "wrong")[0] == 401
        assert _get(f"{base}/instances/999999", TOKEN)[0] == 404
        assert _get(f"{base}/livez", None)[0] == 200
        # /readyz checks the DICOM port too: nothing listens on it here, so not ready, and says why.
        status, body = _get(f"{base}/readyz", None)
        assert status == 503 and b"dicom" in body
        status, body = _get(f"{base}/metrics", None)
        assert status == 200 and b"priorwatch_instances_received_total 1.0" in body


def test_node_never_serves_a_file_outside_its_spool(tmp_path: Path) -> None:
    settings, inst = _node(tmp_path)
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(b"not the node's")
    with session_scope(settings) as s:
        row = s.get(Instance, inst.id)
        assert row is not None
        row.path = str(outside)
        s.add(row)
    with node_service(settings) as svc:
        assert _get(f"http://127.0.0.1:{svc.port}/instances/{inst.id}", TOKEN)[0] == 404


def test_worker_fetches_into_its_own_dir_and_cleans_up(tmp_path: Path) -> None:
    settings, inst = _node(tmp_path)
    with node_service(settings) as svc:
        worker = Settings(data_dir=tmp_path / "worker", worker_fetch="node", node_token=TOKEN,
                          node_url=f"http://127.0.0.1:{svc.port}")
        recorded = "/nonexistent/spool/of/the/node.dcm"  # what the index records: not on this disk
        with InstanceFiles(worker, job_id=7) as files:
            local = Path(files.path(inst.id, recorded))
            assert local.is_relative_to(cache_root(worker))
            assert local.read_bytes() == Path(inst.path).read_bytes()
        assert not local.exists() and list(cache_root(worker).iterdir()) == []
        bad = worker.model_copy(update={"node_token": "wrong"})
        with pytest.raises(PermanentError, match="token"), InstanceFiles(bad, job_id=8) as files:
            files.path(inst.id, recorded)
        assert list(cache_root(worker).iterdir()) == []
    gone = worker.model_copy(update={"node_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(TransientError, match="unreachable"), InstanceFiles(gone, job_id=9) as files:
        files.path(inst.id, recorded)


def test_node_fetch_without_url_or_token_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="node_url and node_token"):
        InstanceFiles(Settings(data_dir=tmp_path, worker_fetch="node"), job_id=1)


def test_failure_reasons_are_a_few_fixed_labels() -> None:
    assert classify_failure("comparison engine unavailable: deadline") == "engine_unavailable"
    assert classify_failure("gave up after 6 attempts: PACS unreachable") == "pacs"
    assert classify_failure("node store refused this worker's token") == "node_fetch"
    assert classify_failure("something about patient DOE^JOHN") == "other"
