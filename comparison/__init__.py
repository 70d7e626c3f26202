"""Comparison: engines and safety.

Public API: image preparation (`load_image`, `PreparedImage`), the registration engine
(`RegistrationEngine`, `CompareContext`, `ComparisonOutput`), draft text (`render_draft`),
the Triton client (`TritonComparator`, `EngineUnavailable`, `EngineError`), the local
Triton server (`LocalTriton`, `TritonStartError`) and synthetic longitudinal pairs
(`comparison.synthetic`: `make_pair`, `demo_cases`, `PairSpec`), and the history
(`compare_history`, `HistoryImage`: the current against each prior, each finding's trajectory).

The worker/engine contract (`CompareContext`, `ComparisonOutput`, `EngineError`,
`EngineUnavailable`) lives in `comparison.contract`, which imports no engine; the names from
`comparison.registration` and `comparison.preprocess` load on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from comparison.contract import CompareContext, ComparisonOutput, EngineError, EngineUnavailable
from comparison.draft import render_draft
from comparison.history import HistoryImage, compare_history
from comparison.triton_client import TritonComparator
from comparison.triton_server import DEFAULT_MODEL_REPOSITORY, LocalTriton, TritonStartError

if TYPE_CHECKING:
    from comparison.preprocess import PreparedImage, load_image
    from comparison.reader import Reader
    from comparison.registration import ENGINE_NAME, ENGINE_VERSION, RegistrationEngine

# The engine's implementation (SimpleITK, scipy, the reader's torch) and image preparation
# (pydicom) load on first use, not with the package: a worker imports `comparison.contract` /
# `comparison.triton_client` and must not pay for (or depend on) the engine it calls via Triton.
_LAZY = {
    "ENGINE_NAME": "comparison.registration",
    "ENGINE_VERSION": "comparison.registration",
    "RegistrationEngine": "comparison.registration",
    "PreparedImage": "comparison.preprocess",
    "load_image": "comparison.preprocess",
    "Reader": "comparison.reader",  # the learned hemithorax reader: other weights for evaluation (modeldev)
}


def __getattr__(name: str) -> Any:
    """Load a lazily exported name from its module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'comparison' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "CompareContext",
    "ComparisonOutput",
    "DEFAULT_MODEL_REPOSITORY",
    "ENGINE_NAME",
    "ENGINE_VERSION",
    "EngineError",
    "EngineUnavailable",
    "HistoryImage",
    "LocalTriton",
    "PreparedImage",
    "Reader",
    "RegistrationEngine",
    "TritonComparator",
    "TritonStartError",
    "compare_history",
    "load_image",
    "render_draft",
]
