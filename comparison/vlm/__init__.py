"""The vision-language-model path: a local HF model folder served by Triton, read and guarded.

Public API (the rest of the subpackage is private to it):

- `VlmEngine` / `VlmEngineSettings`: the model code (what Triton's Python model runs).
- `parse_model_output`: model text -> narrative + findings (never raises).
- `VlmTritonClient`, `compare_with_fallback`, `VlmComparator`: the worker side.
- `TritonProcess`, `vlm_env`: a local Triton loading named models with the VLM's settings.
- `build_tiny_llava`: a tiny random LLaVA model folder for tests, benchmarks and demos.
"""

from comparison.vlm.adapters import VlmRequest, family_for
from comparison.vlm.client import (
    GuardedOutput,
    VlmComparator,
    VlmOutput,
    VlmTritonClient,
    compare_with_fallback,
    fallback_result,
)
from comparison.vlm.engine import VlmEngine, VlmEngineSettings
from comparison.vlm.parse import ParsedOutput, parse_model_output
from comparison.vlm.serving import TritonProcess, vlm_env
from comparison.vlm.tiny import build_tiny_llava

__all__ = [
    "GuardedOutput",
    "ParsedOutput",
    "TritonProcess",
    "VlmComparator",
    "VlmEngine",
    "VlmEngineSettings",
    "VlmOutput",
    "VlmRequest",
    "VlmTritonClient",
    "build_tiny_llava",
    "compare_with_fallback",
    "fallback_result",
    "family_for",
    "parse_model_output",
    "vlm_env",
]
