from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comparison import (CompareContext, EngineError, EngineUnavailable, LocalTriton, RegistrationEngine,
                        TritonComparator, load_image, synthetic)
from tests.conftest import free_port

pytestmark = pytest.mark.triton


def _summary(r):  # type: ignore[no-untyped-def]
    return [(f.finding, f.side, f.zone, f.change, f.urgent) for f in r.findings]


def test_triton_serves_the_same_findings_as_in_process(demo: list[synthetic.PairSpec], tmp_path: Path) -> None:
    spec = demo[1]  # new left pneumothorax
    cur = load_image(spec.current_paths[0]).pixels
    pri = load_image(spec.prior_paths[0]).pixels
    ctx = CompareContext(interval_days=3)
    local = RegistrationEngine().compare(cur, pri, ctx)
    with LocalTriton(grpc_port=free_port(), http_port=free_port(), metrics_port=None,
                     log_path=tmp_path / "triton.log") as tr:
        client = TritonComparator(tr.grpc_url, timeout_s=60)
        assert client.is_ready()
        remote = client.compare(cur, pri, ctx)
        assert _summary(remote.result) == _summary(local.result)
        assert remote.result.urgent and remote.result.draft_text == local.result.draft_text
        assert remote.heatmap is not None and remote.heatmap.shape == cur.shape
        none = client.compare(cur, None, CompareContext())
        assert not none.result.has_prior and none.heatmap is None
        with pytest.raises(EngineError) as bad:
            client.compare(np.full((8, 8), 3.0, np.float32), None)
        assert not isinstance(bad.value, EngineUnavailable)
        client.close()
    assert "successfully loaded 'registration'" in (tmp_path / "triton.log").read_text()


def test_stopped_server_raises_engine_unavailable(tmp_path: Path) -> None:
    tr = LocalTriton(grpc_port=free_port(), http_port=free_port(), metrics_port=None, log_path=tmp_path / "t.log")
    tr.start()
    url = tr.grpc_url
    tr.stop()
    assert not tr.is_running()
    client = TritonComparator(url, timeout_s=5)
    assert not client.is_ready()
    with pytest.raises(EngineUnavailable):
        client.compare(np.random.default_rng(0).random((64, 64)).astype(np.float32), None)


def test_bad_model_repository_fails_fast_with_the_log(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "registration"
    (repo / "1").mkdir(parents=True)
    (repo / "config.pbtxt").write_text('name: "registration"\nbackend: "python"\nthis is not protobuf\n')
    from comparison import TritonStartError

    with pytest.raises(TritonStartError) as err:
        LocalTriton(model_repository=tmp_path / "repo", grpc_port=free_port(), http_port=free_port(),
                    metrics_port=None, startup_timeout_s=30).start()
    assert "registration" in str(err.value)
