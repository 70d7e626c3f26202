"""The result vocabulary shared by every room (DESIGN.md, "Vocabulary").

Engines, the worker, exports and monitoring all speak these types, so a finding written
by the registration engine and one written by a VLM can be compared field by field.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, Field


class FindingType(StrEnum):
    nodule = "nodule"
    mass = "mass"
    consolidation = "consolidation"
    effusion = "effusion"
    pneumothorax = "pneumothorax"
    edema = "edema"
    atelectasis = "atelectasis"
    cardiomegaly = "cardiomegaly"
    support_device = "support_device"
    other = "other"


class Change(StrEnum):
    new = "new"
    worsened = "worsened"
    stable = "stable"
    improved = "improved"
    resolved = "resolved"
    no_prior = "no_prior"


# A change's polarity: more of the finding now, or less. Urgency, the guard's matching and the
# engines' pairing of evidence all turn on it, so it is named once here.
APPEARING = frozenset({Change.new, Change.worsened})
DISAPPEARING = frozenset({Change.improved, Change.resolved})
CHANGED = APPEARING | DISAPPEARING  # an interval change (not stable, not a first study)


# A trajectory makes a pleural finding urgent when it grew at each of this many consecutive intervals
# (issue 29): a pneumothorax growing by small steps is as urgent as one that grew at once, and an effusion
# that keeps growing needs a look even when no single step was large.
GROWING_STEPS_URGENT = 2


def is_urgent(finding: str, change: str, *, large: bool = False, malpositioned: bool = False,
              growing_steps: int = 0) -> bool:
    """The project's urgency rule for one asserted finding (DESIGN.md and README, "Urgent").

    A new or worsened pneumothorax; a new large pleural effusion; a pneumothorax or an effusion
    that grew across `GROWING_STEPS_URGENT` consecutive studies of its history (`growing_steps`,
    `priorwatch.trajectory`), however small each step; and, in reports (the labeler), a
    malpositioned tube or line. A report's documented critical-result communication also makes
    the report urgent; that is a sentence of the report, not a finding, so the labeler reads it.
    """
    trend = growing_steps >= GROWING_STEPS_URGENT
    return bool(
        (finding == FindingType.pneumothorax and (change in APPEARING or trend))
        or (finding == FindingType.effusion and ((change == Change.new and large) or trend))
        or (finding == FindingType.support_device and malpositioned)
    )


class Side(StrEnum):
    """The patient's side, not the image's (in a PA image the patient's right is image-left)."""

    right = "right"
    left = "left"
    bilateral = "bilateral"


class Zone(StrEnum):
    upper = "upper"
    middle = "middle"
    lower = "lower"


class GuardMark(StrEnum):
    """How a claim stands against the image evidence (set by the hallucination guard)."""

    supported = "supported"
    unsupported = "unsupported"
    unverified = "unverified"


class Evidence(BaseModel):
    """Where in the image a claim is grounded: a zone, optionally a box in current-image pixels."""

    zone: Zone | None = None
    side: Side | None = None
    box: tuple[int, int, int, int] | None = None  # (row0, col0, row1, col1) in the current image
    score: float | None = None  # engine-specific effect size behind the claim
    heatmap: str | None = None  # path or reference of a heat-map overlay


class ObservationState(StrEnum):
    """A finding on one study of the history: seen, looked for and not seen, or not measurable there."""

    present = "present"
    absent = "absent"
    not_assessable = "not_assessable"


class Observation(BaseModel):
    """One study's entry in a finding's history (issue 29): where it was looked for, what was seen."""

    study_uid: str
    date: dt.date | None = None
    size_mm: float | None = Field(default=None, ge=0.0)  # from the pixel spacing; None unless present
    state: ObservationState


class PriorRole(StrEnum):
    """Why a prior is part of the relevant history (issue 29)."""

    most_recent = "most_recent"  # the comparison the draft is written against
    baseline = "baseline"  # the oldest comparable study within the horizon
    intermediate = "intermediate"  # between the two, at most a configured number


class PriorUsed(BaseModel):
    """A prior of the history, with the reason it was chosen and what became of it."""

    study_uid: str
    date: dt.date | None = None
    role: PriorRole
    reason: str  # in words, e.g. "most recent comparable CR chest, 2026-10-02"
    fetched: bool = True  # False: it could not be fetched; `problem` says why (never skipped silently)
    problem: str | None = None


class Measured(BaseModel):
    """A size read by the engine at one place of the current image, on the current and on the prior
    registered onto it (issue 29): 0.0 = looked for and not there, None = not assessable there."""

    finding: FindingType
    box: tuple[int, int, int, int]  # (row0, col0, row1, col1) in the current image, as Evidence.box: where asked
    at: tuple[int, int, int, int] | None = None  # the finding's own extent found inside `box` (what changed
    #                                             there), where the other priors are measured; None: `box` itself
    current_mm: float | None = Field(default=None, ge=0.0)
    prior_mm: float | None = Field(default=None, ge=0.0)
    same: bool = False  # nothing changed at the place between the two: the prior shows what the current shows,
    #                     whatever the sizes read on each alone (a faint lesion under a rib may read 0 on both)


class FindingResult(BaseModel):
    finding: FindingType
    side: Side | None = None
    zone: Zone | None = None
    change: Change
    urgent: bool = False
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: Evidence | None = None
    guard: GuardMark | None = None
    # Longitudinal (issue 29); empty/None when only one prior was compared or nothing could be measured.
    size_mm: float | None = Field(default=None, ge=0.0)  # on the current study
    history: list[Observation] = Field(default_factory=list)  # oldest first, the current study last
    first_seen: dt.date | None = None  # the earliest study of the history where it was present
    stable_months: int | None = None  # nodules: months over which its size has not changed
    doubling_time_days: float | None = None  # nodules/masses: volume doubling time, growing ones only
    trajectory: str | None = None  # in words: "increasing since 2025-01-12: 8 → 11 → 15 mm"


class ComparisonResult(BaseModel):
    """What an engine returns for one current study against (at most) one prior."""

    engine: str
    engine_version: str
    model: str
    model_version: str
    has_prior: bool
    findings: list[FindingResult] = Field(default_factory=list)
    draft_text: str
    urgent: bool = False
    structured: bool = True  # False when a model's output could not be parsed into findings
    fallback: bool = False  # True when this is a fallback engine's result, not the one asked for
    not_compared: str | None = None  # why a prior was there but not compared (a lateral view, another person,
    #                                  a failed registration): no interval findings then; None: compared (or no prior)
    notes: list[str] = Field(default_factory=list)
    priors: list[str] = Field(default_factory=list)  # StudyInstanceUIDs of the history it used (issue 29)
    prior_choices: list[PriorUsed] = Field(default_factory=list)  # each with its role and reason, fetched or not
    measured: list[Measured] = Field(default_factory=list)  # sizes the engine read where it was asked (issue 29)

    def model_post_init(self, __context: object) -> None:
        # An urgent finding always makes the result urgent: never drop an urgent flag.
        if any(f.urgent for f in self.findings):
            self.urgent = True
