"""Client for the engines Triton serves (gRPC): arrays in, `ComparisonOutput` out.

Imports only the worker/engine contract (`comparison.contract`), never an engine, so a worker
loads it without SimpleITK or torch. Errors are split by what a caller should do:
`EngineUnavailable` (connection refused, server or model not ready, timeout — retry later) and
`EngineError` (the engine rejected this input or answered something unusable — retrying will
not help); both are defined in the contract and re-exported here.
"""

from __future__ import annotations

import json

import numpy as np

from comparison.contract import CompareContext, ComparisonOutput, EngineError, EngineUnavailable
from priorwatch.vocabulary import ComparisonResult

__all__ = ["TritonComparator", "EngineUnavailable", "EngineError"]


_TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
              "StatusCode.ABORTED", "StatusCode.CANCELLED", "StatusCode.UNKNOWN"}
_TRANSIENT_WORDS = ("not ready", "unavailable", "failed to connect", "connection refused", "deadline exceeded",
                    "stub process", "not healthy", "unknown model", "is not found", "timed out")


def _validate(name: str, a: np.ndarray | None) -> np.ndarray:
    if a is None:
        raise EngineError(f"{name} image is missing")
    arr = np.asarray(a)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise EngineError(f"{name} image must be a 2-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise EngineError(f"{name} image must be numeric, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise EngineError(f"{name} image holds NaN or infinite values")
    return arr


class TritonComparator:
    """Calls a comparison model on a Triton server over gRPC (`url` is host:port)."""

    def __init__(self, url: str, model: str = "registration", timeout_s: float = 120.0) -> None:
        self.url = url.removeprefix("grpc://")
        self.model = model
        self.timeout_s = float(timeout_s)
        self._client = None

    def _get(self):  # type: ignore[no-untyped-def]
        if self._client is None:
            import tritonclient.grpc as grpcclient

            self._client = grpcclient.InferenceServerClient(url=self.url, verbose=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def __enter__(self) -> "TritonComparator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_ready(self) -> bool:
        try:
            c = self._get()
            return bool(c.is_server_ready(client_timeout=min(5.0, self.timeout_s)) and
                        c.is_model_ready(self.model, client_timeout=min(5.0, self.timeout_s)))
        except Exception:
            return False

    def compare(self, current: np.ndarray, prior: np.ndarray | None,
                context: CompareContext | None = None) -> ComparisonOutput:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        cur = _validate("current", current)
        has_prior = prior is not None
        pri = _validate("prior", prior) if has_prior else np.zeros((1, 1), np.float32)
        ctx = (context or CompareContext()).model_dump_json()
        inputs = [
            grpcclient.InferInput("CURRENT", list(cur.shape), "FP32"),
            grpcclient.InferInput("PRIOR", list(pri.shape), "FP32"),
            grpcclient.InferInput("HAS_PRIOR", [1], "BOOL"),
            grpcclient.InferInput("CONTEXT_JSON", [1], "BYTES"),
        ]
        inputs[0].set_data_from_numpy(cur)
        inputs[1].set_data_from_numpy(pri)
        inputs[2].set_data_from_numpy(np.array([has_prior], dtype=bool))
        inputs[3].set_data_from_numpy(np.array([ctx.encode("utf-8")], dtype=np.object_))
        outputs = [grpcclient.InferRequestedOutput("RESULT_JSON"), grpcclient.InferRequestedOutput("HEATMAP")]
        try:
            res = self._get().infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise _classify(exc) from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise EngineUnavailable(f"{self.url}: {exc}") from exc
        try:
            raw = res.as_numpy("RESULT_JSON").reshape(-1)[0]
            raw = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            result = ComparisonResult.model_validate(json.loads(raw))
        except Exception as exc:
            raise EngineError(f"the engine's answer is not a ComparisonResult: {exc}") from exc
        heat = res.as_numpy("HEATMAP")
        heatmap = None if (heat is None or not has_prior or heat.shape == (1, 1)) else np.asarray(heat, np.uint8)
        return ComparisonOutput(result=result, heatmap=heatmap)


def _classify(exc: Exception) -> EngineError:
    status = str(getattr(exc, "status", lambda: "")() or "")
    msg = str(getattr(exc, "message", lambda: str(exc))() or exc)
    text = f"{status} {msg}".strip()
    if status == "StatusCode.INVALID_ARGUMENT" or msg.startswith("invalid input"):
        return EngineError(text)
    if status in _TRANSIENT or any(w in msg.lower() for w in _TRANSIENT_WORDS):
        return EngineUnavailable(text)
    return EngineError(text)
