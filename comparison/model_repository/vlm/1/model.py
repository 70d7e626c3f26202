"""Triton Python backend for the PriorWatch VLM: a thin shell around comparison.vlm.engine.

Each `execute` call gets every request the dynamic batcher gathered; their items are
generated as one batch (a failed batch is retried request by request, so one bad request
cannot fail its neighbours). Input errors answer INVALID_ARG, model failures INTERNAL.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    import comparison.vlm.engine  # noqa: F401
except ImportError:  # not installed in this interpreter: use the source tree this file lives in
    sys.path.insert(0, os.environ.get("PRIORWATCH_SOURCE_DIR") or str(Path(__file__).resolve().parents[4]))

from comparison.vlm.adapters import VlmRequest  # noqa: E402
from comparison.vlm.engine import VlmEngine, VlmEngineSettings, to_pil  # noqa: E402


def _opt(request, name):
    t = pb_utils.get_input_tensor_by_name(request, name)
    return None if t is None else t.as_numpy()


def _text(arr, b):
    if arr is None:
        return None
    v = arr[b].reshape(-1)[0]
    s = v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
    return s.strip() or None


def _bad(msg):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(msg, pb_utils.TritonError.INVALID_ARG))


def _failed(msg):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(msg, pb_utils.TritonError.INTERNAL))


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        self.settings = VlmEngineSettings.resolve(params)
        self.engine = VlmEngine.from_settings(self.settings)

    def _items(self, request):
        cur = _opt(request, "CURRENT")
        if cur is None or cur.ndim != 3 or min(cur.shape[1:]) < 8:
            raise ValueError("CURRENT must be [batch, rows, cols] uint8 with both sides >= 8")
        prior, lateral = _opt(request, "PRIOR"), _opt(request, "CURRENT_LATERAL")
        report, indication, days = _opt(request, "PRIOR_REPORT"), _opt(request, "INDICATION"), _opt(request, "INTERVAL_DAYS")
        n = cur.shape[0]
        for name, arr in (("PRIOR", prior), ("CURRENT_LATERAL", lateral), ("PRIOR_REPORT", report),
                          ("INDICATION", indication), ("INTERVAL_DAYS", days)):
            if arr is not None and arr.shape[0] != n:
                raise ValueError(f"{name} has batch {arr.shape[0]}, CURRENT has {n}")
        items = []
        for b in range(n):
            d = None if days is None else int(days[b].reshape(-1)[0])
            items.append(VlmRequest(
                current=to_pil(cur[b]),
                prior=None if prior is None else to_pil(prior[b]),
                current_lateral=None if lateral is None else to_pil(lateral[b]),
                prior_report=_text(report, b),
                indication=_text(indication, b),
                interval_days=d if d is None or d >= 0 else None,
            ))
        return items

    def _respond(self, outs):
        res = np.array([[r.model_dump_json().encode()] for r, _ in outs], dtype=np.object_)
        raw = np.array([[t.encode()] for _, t in outs], dtype=np.object_)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("RESULT_JSON", res), pb_utils.Tensor("RAW_TEXT", raw)])

    def execute(self, requests):
        responses = [None] * len(requests)
        batch, owners = [], []
        for i, request in enumerate(requests):
            try:
                items = self._items(request)
            except Exception as exc:
                responses[i] = _bad(f"vlm: {exc}")
                continue
            owners.append((i, len(batch), len(items)))
            batch.extend(items)
        try:
            outs = self.engine.compare_batch(batch) if batch else []
            for i, start, n in owners:
                responses[i] = self._respond(outs[start:start + n])
        except Exception:
            for i, start, n in owners:  # retry alone so one bad request does not fail the rest
                try:
                    responses[i] = self._respond(self.engine.compare_batch(batch[start:start + n]))
                except Exception as exc:
                    responses[i] = _failed(f"vlm: generation failed: {type(exc).__name__}: {exc}")
        return responses

    def finalize(self):
        self.engine = None
