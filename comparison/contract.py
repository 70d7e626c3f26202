"""The contract between the worker and the engines: what goes in, what comes out, what can fail.

The worker (`workers/`) talks to the engines only through Triton, so it needs these types and
nothing of the engines' implementation: this module imports no SimpleITK, no torch, no scipy
(only pydantic, numpy and the shared vocabulary), and `comparison.triton_client` imports only
it. The engines (`comparison.registration`, the VLM path) import their context and output types
from here too, so both sides share one definition; new result fields belong here.

- `CompareContext`: what the worker knows beyond the pixels (interval, reason, prior report, views,
  and the places where it wants sizes read on both images: `measure_at`).
- `ComparisonOutput`: an engine's answer (structured result, heat-map, timings).
- `EngineError` / `EngineUnavailable`: the one error split for every engine (give up / retry later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from priorwatch.vocabulary import ComparisonResult, FindingType

__all__ = ["CompareContext", "ComparisonOutput", "EngineError", "EngineUnavailable", "MEASURED_KINDS", "MeasureRequest"]

# What is measured for each finding type; a type not listed has no size (cardiomegaly is a ratio,
# a device a position, oedema is diffuse). Here, in the contract, because the history (which the
# worker imports) asks it too, and the worker must not load the engine's measuring code.
MEASURED_KINDS: dict[FindingType, str] = {
    FindingType.nodule: "diameter",
    FindingType.mass: "diameter",
    FindingType.effusion: "height",
    FindingType.pneumothorax: "rim",
    FindingType.consolidation: "extent",
    FindingType.atelectasis: "extent",
    FindingType.other: "extent",
}


class MeasureRequest(BaseModel):
    """Read the size of `finding` at `box` (current-image pixels) on the current and on the prior
    registered onto it: how a finding seen on one comparison is followed through the history."""

    finding: FindingType
    box: tuple[int, int, int, int]  # (row0, col0, row1, col1), as Evidence.box
    # 0: `box` is the finding's own extent; +1 / -1: `box` is wider (an engine's lung third) and the finding is where the
    # difference (current - registered prior) runs that way (denser now for an opacity that appeared or grew; a
    # pneumothorax that grew: -1): the engine finds the finding's own extent there (`Measured.at`) and measures it
    sign: int = Field(default=0, ge=-1, le=1)


class CompareContext(BaseModel):
    """What the worker knows beyond the pixels."""

    interval_days: int | None = None
    reason: str | None = None  # the clinical question, if the order carried one
    prior_report: str | None = None
    pixel_spacing_mm: float | None = Field(default=None, gt=0)  # of the current array, if known
    current_view: str | None = None  # DICOM ViewPosition of the current (PA, AP, LL...), if known
    prior_view: str | None = None  # and of the prior: a frontal is never compared with a lateral
    # both images' PatientOrientation was read and they were brought to the standard display
    # (`comparison.preprocess`); False: absent or unusable on one (a note, lower confidence);
    # None: the caller did not say (arrays from elsewhere): nothing is assumed
    orientation_known: bool | None = None

    def with_current(self, image: Any) -> CompareContext:
        """This context with what the prepared current image tells (`comparison.PreparedImage`, or
        anything with `spacing_mm`, `comparison_view`, `orientation_known`): its pixel spacing, its
        view, whether its orientation was read. The worker and modeldev build it the same way."""
        return self.model_copy(update=dict(pixel_spacing_mm=image.spacing_mm, current_view=image.comparison_view,
                                           orientation_known=image.orientation_known))
    # issue 29: places to measure on both images (answered in ComparisonResult.measured); the engine also
    # measures each of its own findings there. Empty: only the findings' own places.
    measure_at: list[MeasureRequest] = Field(default_factory=list)
    # issue 29: only the sizes at `measure_at` are wanted (an older prior of the history): the engine registers cheaply
    # and measures, without change detection, reader or draft (`comparison.measure.measure_only`)
    measure_only: bool = False


@dataclass
class ComparisonOutput:
    """An engine's answer: the structured result plus a difference heat-map.

    `heatmap` is uint8 [H, W] in the current image's grid (0 = no change, 255 = strongest),
    or None when there was nothing to compare.
    """

    result: ComparisonResult
    heatmap: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # what the engine saw on the way (the registration engine: each region's signs, the sign rules' findings,
    # the reader's readings, the new fluid height): for model development, never sent by Triton
    trace: dict[str, Any] = field(default_factory=dict)


class EngineError(Exception):
    """Permanent: the engine rejected the input or its answer could not be used."""


class EngineUnavailable(EngineError):
    """Transient: the engine could not be reached or did not answer in time; retry later."""
