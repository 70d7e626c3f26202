"""Comparison: engines and safety.

Public API: image preparation (`load_image`, `PreparedImage`), the registration engine
(`RegistrationEngine`, `CompareContext`, `ComparisonOutput`), draft text (`render_draft`),
the Triton client (`TritonComparator`, `EngineUnavailable`, `EngineError`), the local
Triton server (`LocalTriton`, `TritonStartError`) and synthetic longitudinal pairs
(`comparison.synthetic`: `make_pair`, `demo_cases`, `PairSpec`).
"""

from comparison.draft import render_draft
from comparison.preprocess import PreparedImage, load_image
from comparison.registration import ENGINE_NAME, ENGINE_VERSION, CompareContext, ComparisonOutput, RegistrationEngine
from comparison.triton_client import EngineError, EngineUnavailable, TritonComparator
from comparison.triton_server import DEFAULT_MODEL_REPOSITORY, LocalTriton, TritonStartError

__all__ = [
    "CompareContext",
    "ComparisonOutput",
    "DEFAULT_MODEL_REPOSITORY",
    "ENGINE_NAME",
    "ENGINE_VERSION",
    "EngineError",
    "EngineUnavailable",
    "LocalTriton",
    "PreparedImage",
    "RegistrationEngine",
    "TritonComparator",
    "TritonStartError",
    "load_image",
    "render_draft",
]
