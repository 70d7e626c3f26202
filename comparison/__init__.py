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

For model development (`modeldev`: training, tuning, evaluation; never the worker) the package also
names what training must share with production so that it replays exactly what `analyse` sees:
`prepare_dataset` (image preparation of a dataset in memory), the reader's input preparation
`lung_inputs` (the one function production's `Reader` and training both call), its network
`build_net` and class names `reader_classes`, the deciding reading's tone map `match_tone`, a saved
aligned pair rebuilt `replay_aligned`, and the reader's findings at the current cut-offs
`findings_from_reads`. Public submodules for tuning and scoring: `comparison.thresholds` (every
tunable, set by tuning runs), `comparison.calibration` (Platt fit), `comparison.benchmark` (the
engine's own generator's table) and `comparison.mscxrt` (the MS-CXR-T label scorer).
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
    import numpy as np

    from comparison.preprocess import PreparedImage, load_image, prepare_dataset
    from comparison.reader import Reader, build_net, lung_inputs
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
    "prepare_dataset": "comparison.preprocess",  # load_image for a dataset in memory (evaluation harnesses)
    "lung_inputs": "comparison.reader",  # the reader's input: production's Reader and training both call it
    "build_net": "comparison.reader",  # the reader's network, untrained (modeldev trains it)
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


def reader_classes() -> dict[str, tuple[str, ...]]:
    """The reader's class names per head, in output order ("finding", "change", "zone"): training
    indexes its targets by them, so they are read from the reader, never copied."""
    from comparison.reader import CHANGES, FINDINGS, ZONES

    return {"finding": FINDINGS, "change": CHANGES, "zone": ZONES}


def match_tone(cur: "np.ndarray", mapped: "np.ndarray", roi: "np.ndarray", params: Any = None) -> "np.ndarray":
    """The prior after the engine's second, monotone tone map, as `analyse`'s deciding reading shows it
    to the reader (`thresholds.TONE_READ`): training on it trains on what production reads. `params`:
    the engine's `EngineParams` (None: the shipped `DEFAULT_PARAMS`)."""
    from comparison.registration import _match_tone
    from comparison.thresholds import DEFAULT_PARAMS

    return _match_tone(cur, mapped, roi, params=params or DEFAULT_PARAMS)


def replay_aligned(cw: "np.ndarray", mapped: "np.ndarray", right: "np.ndarray", left: "np.ndarray",
                   roi: "np.ndarray", midline: float, quality: float) -> Any:
    """A saved aligned pair (current and registered prior on the working grid, lung masks, lung ROI)
    rebuilt as the `Aligned` that `RegistrationEngine.analyse` and `Reader.read` take, so that tuning
    replays the engine after registration without registering again. The lung fields stand for both
    images' (the saved union), the whole grid counts as valid."""
    import numpy as np

    from comparison._anatomy import LungFields
    from comparison.registration import Aligned

    lungs = LungFields(right=right, left=left, midline=float(midline), template=False)
    return Aligned(cw, mapped, np.ones_like(roi), lungs, lungs, roi, float(quality), 0.0, True, 0.0)


def findings_from_reads(reads: list, lungs: Any, quality: float, shape: tuple[int, int], params: Any = None) -> list:
    """The engine's findings from the reader's readings alone (no change regions, no sign rules) on a
    working grid of `shape` with these lung fields (`Aligned.lungs`) and registration quality, at the
    cut-offs of `params` (an `EngineParams`; None: the shipped `DEFAULT_PARAMS`): tuning
    `READER_CHANGE_P` / `READER_URGENT_P` passes `dataclasses.replace(DEFAULT_PARAMS, ...)`."""
    from comparison.registration import _from_reads
    from comparison.thresholds import DEFAULT_PARAMS

    return _from_reads(reads, [], lungs, quality, shape, shape, params=params or DEFAULT_PARAMS)

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
    "build_net",
    "compare_history",
    "findings_from_reads",
    "load_image",
    "lung_inputs",
    "match_tone",
    "prepare_dataset",
    "reader_classes",
    "render_draft",
    "replay_aligned",
]
