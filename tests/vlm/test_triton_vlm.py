"""End to end through the real local Triton: the production model code (model_repository/vlm)
loads the tiny random LLaVA folder; the worker-side client sends a real pair over gRPC.
Asserts plumbing, shapes, parsing, batching, error split, fallback and guard: never the text."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from comparison.vlm import TritonProcess, VlmComparator, VlmTritonClient, compare_with_fallback
from comparison.vlm.client import EngineError, EngineUnavailable
from comparison.vlm.engine import model_identity
from comparison.vlm.serving import free_port
from priorwatch.vocabulary import Change, ComparisonResult, Evidence, FindingResult, FindingType, Side, Zone
from tests.vlm.conftest import Ctx

pytestmark = pytest.mark.triton


@dataclass
class RegOut:
    result: ComparisonResult
    heatmap: np.ndarray | None = None


class FakeRegistration:
    """Evidence of a new right lower change (the real engine is tested in its own room)."""

    def __init__(self) -> None:
        self.calls = 0

    def compare(self, current: np.ndarray, prior: np.ndarray | None, context: object) -> RegOut:
        self.calls += 1
        findings = [] if prior is None else [FindingResult(
            finding=FindingType.other, side=Side.right, zone=Zone.lower, change=Change.new, confidence=0.9,
            evidence=Evidence(side=Side.right, zone=Zone.lower, box=(1, 2, 3, 4), score=0.4))]
        return RegOut(ComparisonResult(
            engine="registration", engine_version="reg-test", model="registration", model_version="r0",
            has_prior=prior is not None, findings=findings, draft_text="registration draft"),
            heatmap=np.zeros((4, 4), np.uint8))


def test_real_pair_through_triton(triton: TritonProcess, real_pair: tuple[np.ndarray, np.ndarray],
                                  tiny_model_dir: Path) -> None:
    cur, prior = real_pair
    assert cur.dtype == np.float32 and cur.ndim == 2 and max(cur.shape) == 256
    with VlmTritonClient(triton.grpc_url, timeout_s=60) as client:
        assert client.is_ready()
        out = client.compare(cur, prior, Ctx(interval_days=30, reason="cough", prior_report="Clear lungs."))
    r = out.result
    assert r.engine == "vlm" and r.model == "tiny-llava" and r.model_version == model_identity(tiny_model_dir)[1]
    assert r.has_prior and r.draft_text and isinstance(r.structured, bool)
    assert isinstance(out.raw_text, str)
    if not r.structured:  # random weights: almost surely prose, shown as it came
        assert any("not valid JSON" in n for n in r.notes)


def test_no_prior_and_lateral(triton: TritonProcess, real_pair: tuple[np.ndarray, np.ndarray]) -> None:
    cur, _ = real_pair
    with VlmTritonClient(triton.grpc_url) as client:
        assert client.compare(cur, None, Ctx(interval_days=5)).result.has_prior is False
        assert client.compare(cur, cur, None, current_lateral=cur[:, ::-1]).result.has_prior


def test_guarded_comparison_with_registration_evidence(triton: TritonProcess,
                                                       real_pair: tuple[np.ndarray, np.ndarray]) -> None:
    cur, prior = real_pair
    reg = FakeRegistration()
    comparator = VlmComparator(reg, VlmTritonClient(triton.grpc_url))
    out = comparator.compare(cur, prior, Ctx(interval_days=30))
    comparator.close()
    assert out.result.engine == "vlm" and not out.result.fallback
    assert "evidence registration reg-test" in out.result.engine_version
    assert out.heatmap is not None and out.evidence is not None and reg.calls == 1
    assert all(f.guard is not None for f in out.result.findings)
    # The registration evidence of a new change is never lost: claimed, or noted as not described.
    assert out.result.findings or any("did not describe" in n for n in out.result.notes)


def test_concurrent_requests_are_batched(triton: TritonProcess) -> None:
    import tritonclient.grpc as grpcclient

    img = (np.random.default_rng(1).random((96, 80)) * 255).astype(np.uint8)
    stats = grpcclient.InferenceServerClient(triton.grpc_url)
    before = stats.get_inference_statistics("vlm", as_json=True)["model_stats"][0]
    results: list[ComparisonResult] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with VlmTritonClient(triton.grpc_url) as c:
                results.append(c.compare(img, img, Ctx(interval_days=1)).result)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 8
    after = stats.get_inference_statistics("vlm", as_json=True)["model_stats"][0]
    stats.close()
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert inferences == 8
    assert executions < inferences  # dynamic batching gathered some requests into one generate


def test_bad_input_is_an_engine_error_not_retried(triton: TritonProcess) -> None:
    client = VlmTritonClient(triton.grpc_url, retries=3, backoff_s=5.0)
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="CURRENT"):
        client.compare(np.zeros((4, 4), np.uint8), None, None)
    assert time.monotonic() - t0 < 4.0  # no back-off for an input the model rejects
    client.close()


def test_slow_triton_falls_back_to_registration(triton: TritonProcess,
                                                real_pair: tuple[np.ndarray, np.ndarray]) -> None:
    cur, prior = real_pair
    slow = VlmTritonClient(triton.grpc_url, timeout_s=0.001, retries=1, backoff_s=0.01)
    with pytest.raises(EngineUnavailable, match="DEADLINE"):
        slow.compare(cur, prior, None)
    out = compare_with_fallback(cur, prior, Ctx(interval_days=2), registration=FakeRegistration(), vlm=slow)
    slow.close()
    assert out.result.fallback and out.result.engine == "registration"
    assert any("VLM draft not available" in n for n in out.result.notes)
    assert out.vlm_error and out.heatmap is not None


def test_triton_down_retries_then_falls_back(real_pair: tuple[np.ndarray, np.ndarray]) -> None:
    cur, prior = real_pair
    down = VlmTritonClient(f"127.0.0.1:{free_port()}", timeout_s=2, retries=2, backoff_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(EngineUnavailable):
        down.compare(cur, prior, None)
    assert time.monotonic() - t0 >= 0.05 + 0.1  # two back-offs: 0.05 s then 0.1 s
    out = compare_with_fallback(cur, prior, None, registration=FakeRegistration(), vlm=down)
    down.close()
    r = out.result
    assert r.fallback and r.engine == "registration" and r.findings[0].zone == Zone.lower
    assert any("VLM unavailable" in n for n in r.notes)


def test_vlm_entry_without_a_model_folder_fails_alone(tmp_path: Path) -> None:
    t = TritonProcess(models=["vlm"], env={"PRIORWATCH_VLM_MODEL_DIR": ""}, log_path=tmp_path / "t.log",
                      startup_timeout_s=60)
    with pytest.raises(RuntimeError, match="exited"):
        t.start()
    assert "no VLM model folder configured" in (tmp_path / "t.log").read_text()


def test_same_repository_serves_registration_and_vlm(triton: TritonProcess) -> None:
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(triton.grpc_url)
    assert c.is_model_ready("registration") and c.is_model_ready("vlm")
    c.close()


def test_registration_loads_without_a_vlm_folder(tmp_path: Path) -> None:
    with TritonProcess(models=["registration"], env={"PRIORWATCH_VLM_MODEL_DIR": ""},
                       log_path=tmp_path / "t.log") as t:
        import tritonclient.grpc as grpcclient

        c = grpcclient.InferenceServerClient(t.grpc_url)
        assert c.is_model_ready("registration") and not c.is_model_ready("vlm")
        c.close()


def test_guard_against_the_real_registration_engine(triton: TritonProcess,
                                                    real_pair: tuple[np.ndarray, np.ndarray]) -> None:
    reg_mod = pytest.importorskip("comparison.registration")
    cur, prior = real_pair
    ctx = reg_mod.CompareContext(interval_days=30, reason="cough")
    with VlmTritonClient(triton.grpc_url) as vlm:
        out = compare_with_fallback(cur, prior, ctx, registration=reg_mod.RegistrationEngine(), vlm=vlm)
    r = out.result
    assert r.engine == "vlm" and not r.fallback and r.has_prior
    assert f"evidence registration {reg_mod.ENGINE_VERSION}" in r.engine_version
    assert out.evidence is not None and out.evidence.engine == "registration"
    assert all(f.guard is not None for f in r.findings)
    assert r.urgent or not out.evidence.urgent  # urgent evidence is never lost
