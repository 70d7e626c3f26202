"""Fixtures of the VLM path: a tiny random LLaVA folder, the in-process engine, a real local Triton."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from comparison.vlm import TritonProcess, VlmEngine, build_tiny_llava, vlm_env

MAX_NEW_TOKENS = 8


@dataclass
class Ctx:
    """Stands in for the registration package's CompareContext (same attribute names)."""

    interval_days: int | None = None
    reason: str | None = None
    prior_report: str | None = None


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-llava")


@pytest.fixture(scope="session")
def engine(tiny_model_dir: Path) -> VlmEngine:
    return VlmEngine(tiny_model_dir, dtype="float32", device="cpu", max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def triton(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    models = ["vlm", "registration"]
    log = tmp_path_factory.mktemp("triton") / "triton.log"
    with TritonProcess(models=models, env=vlm_env(tiny_model_dir, max_new_tokens=MAX_NEW_TOKENS),
                       log_path=log) as t:
        yield t


@pytest.fixture(scope="session")
def real_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real chest CR (pydicom-data RG1) as current, its lossy JPEG 2000 copy as prior,
    windowed and resized by the worker's own preprocessing."""
    from pydicom.data import get_testdata_file

    from comparison.preprocess import load_image

    cur = load_image(get_testdata_file("RG1_UNCR.dcm"), size=256)
    prior = load_image(get_testdata_file("RG1_J2KI.dcm"), size=256)
    return cur.pixels, prior.pixels
