"""Worker side of the VLM path: call the Triton ``vlm`` model over gRPC, guard, fall back.

- `VlmTritonClient.compare` sends the windowed, resized images (uint8 tensors) and the text
  context, retries with back-off while Triton is down or slow, and raises the same errors as
  the registration client: `EngineUnavailable` (worth retrying later) or `EngineError` (the
  model rejected or failed on this input).
- `compare_with_fallback` runs the registration engine (the evidence), then the VLM, then the
  guard; when the VLM stays unavailable (or fails) it returns the registration result, marked
  ``fallback=True`` with a note saying why.
- `VlmComparator` wraps both as a drop-in for the registration `TritonComparator` in the
  pipeline: ``.compare(current, prior, context)`` returns an object with ``.result`` and
  ``.heatmap``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from comparison.contract import EngineError, EngineUnavailable  # one error split for every engine
from comparison.guard import guard
from comparison.vlm.engine import to_gray
from priorwatch.vocabulary import ComparisonResult


log = logging.getLogger(__name__)

MODEL_NAME = "vlm"

# gRPC statuses that mean "not now" rather than "not this input".
_UNAVAILABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN", "NOT_FOUND",
                "ABORTED"}


@dataclass
class VlmOutput:
    """One VLM answer: the parsed (not yet guarded) result and the model's raw text."""

    result: ComparisonResult
    raw_text: str


@dataclass
class GuardedOutput:
    """What `compare_with_fallback` returns: same ``result`` / ``heatmap`` shape as the
    registration comparator's output, plus the evidence and the VLM's raw text."""

    result: ComparisonResult
    heatmap: np.ndarray | None = None
    evidence: ComparisonResult | None = None
    raw_text: str | None = None
    vlm_error: str | None = None
    registration: Any = field(default=None, repr=False)  # the registration comparator's own output


class RegistrationLike(Protocol):
    def compare(self, current: np.ndarray, prior: np.ndarray | None, context: Any) -> Any: ...


def _status(exc: Exception) -> str:
    st = getattr(exc, "status", None)
    s = str(st() if callable(st) else st or "")
    return s.rsplit(".", 1)[-1].upper()


def _bytes(value: str | None) -> np.ndarray:
    return np.array([[(value or "").encode("utf-8")]], dtype=np.object_)


class VlmTritonClient:
    """gRPC client of the repository's ``vlm`` model.

    Parameters
    ----------
    url
        ``host:port`` of Triton's gRPC endpoint.
    model_name
        The model's name in the repository (``vlm``).
    timeout_s
        Per-attempt deadline; a slower answer counts as unavailable.
    retries
        Further attempts after the first when Triton is unavailable or slow.
    backoff_s, backoff_max_s
        First back-off delay (doubled each retry) and its cap.
    """

    def __init__(
        self,
        url: str,
        *,
        model_name: str = MODEL_NAME,
        timeout_s: float = 120.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
    ) -> None:
        import tritonclient.grpc as grpcclient

        self._grpc = grpcclient
        self.url = url
        self.model_name = model_name
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self._client = grpcclient.InferenceServerClient(url)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "VlmTritonClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model_name))
        except Exception:
            return False

    def _inputs(
        self, current: np.ndarray, prior: np.ndarray | None, context: Any, current_lateral: np.ndarray | None
    ) -> list[Any]:
        g = self._grpc
        ins = []

        def image(name: str, arr: np.ndarray) -> None:
            a = to_gray(arr)[None]
            t = g.InferInput(name, list(a.shape), "UINT8")
            t.set_data_from_numpy(a)
            ins.append(t)

        def text(name: str, value: str | None) -> None:
            if value:
                t = g.InferInput(name, [1, 1], "BYTES")
                t.set_data_from_numpy(_bytes(value))
                ins.append(t)

        image("CURRENT", current)
        if prior is not None:
            image("PRIOR", prior)
        if current_lateral is not None:
            image("CURRENT_LATERAL", current_lateral)
        text("PRIOR_REPORT", getattr(context, "prior_report", None))
        text("INDICATION", getattr(context, "reason", None) or getattr(context, "indication", None))
        days = getattr(context, "interval_days", None)
        if days is not None and prior is not None:
            t = g.InferInput("INTERVAL_DAYS", [1, 1], "INT32")
            t.set_data_from_numpy(np.array([[int(days)]], dtype=np.int32))
            ins.append(t)
        return ins

    def _once(self, inputs: list[Any]) -> VlmOutput:
        g = self._grpc
        outputs = [g.InferRequestedOutput("RESULT_JSON"), g.InferRequestedOutput("RAW_TEXT")]
        try:
            r = self._client.infer(self.model_name, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except Exception as exc:
            status = _status(exc)
            msg = str(exc)[:500]
            if status in _UNAVAILABLE or not status or "unavailable" in msg.lower() or "deadline" in msg.lower():
                raise EngineUnavailable(f"vlm at {self.url}: {status or type(exc).__name__}: {msg}") from exc
            raise EngineError(f"vlm: {status}: {msg}") from exc
        try:
            payload = r.as_numpy("RESULT_JSON").reshape(-1)[0]
            raw = r.as_numpy("RAW_TEXT").reshape(-1)[0]
            result = ComparisonResult.model_validate(json.loads(payload))
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        except Exception as exc:
            raise EngineError(f"vlm: malformed response: {type(exc).__name__}: {exc}") from exc
        return VlmOutput(result=result, raw_text=text)

    def compare(
        self,
        current: np.ndarray,
        prior: np.ndarray | None,
        context: Any = None,
        *,
        current_lateral: np.ndarray | None = None,
    ) -> VlmOutput:
        """The VLM's parsed result for one pair (not yet guarded).

        Raises `EngineUnavailable` after ``retries`` retries with back-off, `EngineError`
        at once for an input the model rejects or fails on.
        """
        try:
            inputs = self._inputs(current, prior, context, current_lateral)
        except ValueError as exc:
            raise EngineError(f"vlm: bad input: {exc}") from exc
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return self._once(inputs)
            except EngineUnavailable as exc:
                if attempt == self.retries:
                    raise
                log.warning("vlm unavailable (attempt %d of %d): %s; retrying in %.1fs",
                            attempt + 1, self.retries + 1, exc, delay)
                time.sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)
        raise AssertionError("unreachable")


def fallback_result(evidence: ComparisonResult, reason: str) -> ComparisonResult:
    """The registration result shown in place of a VLM result, visibly marked as such."""
    return evidence.model_copy(update={
        "fallback": True,
        "notes": [*evidence.notes, f"VLM draft not available ({reason}); showing the registration engine's result"],
    })


def compare_with_fallback(
    current: np.ndarray,
    prior: np.ndarray | None,
    context: Any,
    *,
    registration: RegistrationLike,
    vlm: VlmTritonClient | None,
    current_lateral: np.ndarray | None = None,
) -> GuardedOutput:
    """Registration (evidence), then the VLM, then the guard; registration as visible fallback.

    Errors of the registration engine propagate (`EngineUnavailable` / `EngineError`, so the
    task retries or fails as it does without a VLM). The VLM's errors never do: after the
    client's retries the registration result comes back with ``fallback=True`` and a note.
    """
    reg_out = registration.compare(current, prior, context)
    evidence: ComparisonResult = reg_out.result
    heatmap = getattr(reg_out, "heatmap", None)
    has_prior = prior is not None
    if vlm is None:
        return GuardedOutput(fallback_result(evidence, "no VLM configured"), heatmap, evidence,
                             vlm_error="no VLM configured", registration=reg_out)
    try:
        out = vlm.compare(current, prior, context, current_lateral=current_lateral)
    except EngineUnavailable as exc:
        log.warning("vlm unavailable after retries; falling back to registration: %s", exc)
        return GuardedOutput(fallback_result(evidence, f"VLM unavailable: {exc}"[:300]), heatmap, evidence,
                             vlm_error=str(exc), registration=reg_out)
    except EngineError as exc:
        log.warning("vlm failed on this input; falling back to registration: %s", exc)
        return GuardedOutput(fallback_result(evidence, f"VLM error: {exc}"[:300]), heatmap, evidence,
                             vlm_error=str(exc), registration=reg_out)
    return GuardedOutput(guard(out.result, evidence, has_prior), heatmap, evidence, raw_text=out.raw_text,
                         registration=reg_out)


class VlmComparator:
    """Drop-in for the registration `TritonComparator` in the pipeline: VLM + guard + fallback.

    ``compare(current, prior, context)`` returns a `GuardedOutput` (``.result``, ``.heatmap``).
    """

    def __init__(self, registration: RegistrationLike, vlm: VlmTritonClient | None) -> None:
        self.registration = registration
        self.vlm = vlm

    def compare(self, current: np.ndarray, prior: np.ndarray | None, context: Any = None, *,
                current_lateral: np.ndarray | None = None) -> GuardedOutput:
        return compare_with_fallback(current, prior, context, registration=self.registration, vlm=self.vlm,
                                     current_lateral=current_lateral)

    def close(self) -> None:
        if self.vlm is not None:
            self.vlm.close()
        close = getattr(self.registration, "close", None)
        if callable(close):
            close()
