"""Triton Python-backend model: serves comparison.registration.RegistrationEngine.

Inputs CURRENT / PRIOR (FP32 [H, W] in [0, 1]), HAS_PRIOR (BOOL [1]), CONTEXT_JSON (BYTES [1]);
outputs RESULT_JSON (BYTES [1], a ComparisonResult) and HEATMAP (UINT8 [H, W]; 1x1 zero without
a prior). Bad input answers INVALID_ARG; anything else INTERNAL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    import comparison  # noqa: F401
except ImportError:  # a model repository mounted from a checkout: its root holds `comparison`
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from comparison.registration import CompareContext, RegistrationEngine  # noqa: E402


def _error(msg: str, code: int | None) -> "pb_utils.InferenceResponse":
    try:
        err = pb_utils.TritonError(msg, code) if code is not None else pb_utils.TritonError(msg)
    except TypeError:  # older backends take no code
        err = pb_utils.TritonError(msg)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.engine = RegistrationEngine()

    def _one(self, request: "pb_utils.InferenceRequest") -> "pb_utils.InferenceResponse":
        invalid = getattr(pb_utils.TritonError, "INVALID_ARG", None)
        try:
            cur = pb_utils.get_input_tensor_by_name(request, "CURRENT").as_numpy()
            prior_t = pb_utils.get_input_tensor_by_name(request, "PRIOR")
            has_t = pb_utils.get_input_tensor_by_name(request, "HAS_PRIOR")
            ctx_t = pb_utils.get_input_tensor_by_name(request, "CONTEXT_JSON")
            has_prior = bool(has_t.as_numpy().reshape(-1)[0]) if has_t is not None else prior_t is not None
            prior = prior_t.as_numpy() if (prior_t is not None and has_prior) else None
            ctx = CompareContext()
            if ctx_t is not None:
                raw = ctx_t.as_numpy().reshape(-1)[0]
                raw = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                if raw.strip():
                    ctx = CompareContext.model_validate_json(raw)
        except Exception as exc:  # malformed request
            return _error(f"invalid input: {type(exc).__name__}: {exc}", invalid)
        try:
            out = self.engine.compare(cur, prior, ctx)
        except ValueError as exc:
            return _error(f"invalid input: {exc}", invalid)
        heat = out.heatmap if out.heatmap is not None else np.zeros((1, 1), np.uint8)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("RESULT_JSON", np.array([out.result.model_dump_json().encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("HEATMAP", np.ascontiguousarray(heat, dtype=np.uint8)),
        ])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:  # never take the model down for one request
                responses.append(_error(f"engine failed: {type(exc).__name__}: {exc}", getattr(pb_utils.TritonError, "INTERNAL", None)))
        return responses

    def finalize(self) -> None:
        self.engine = None
