"""The result vocabulary shared by every room (DESIGN.md, "Vocabulary").

Engines, the worker, exports and monitoring all speak these types, so a finding written
by the registration engine and one written by a VLM can be compared field by field.
"""

from __future__ import annotations

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


def is_urgent(finding: str, change: str, *, large: bool = False, malpositioned: bool = False) -> bool:
    """The project's urgency rule for one asserted finding (DESIGN.md and README, "Urgent").

    A new or worsened pneumothorax; a new large pleural effusion; and, in reports (the labeler),
    a malpositioned tube or line. A report's documented critical-result communication also makes
    the report urgent; that is a sentence of the report, not a finding, so the labeler reads it.
    """
    return bool(
        (finding == FindingType.pneumothorax and change in APPEARING)
        or (finding == FindingType.effusion and change == Change.new and large)
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


class FindingResult(BaseModel):
    finding: FindingType
    side: Side | None = None
    zone: Zone | None = None
    change: Change
    urgent: bool = False
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: Evidence | None = None
    guard: GuardMark | None = None


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

    def model_post_init(self, __context: object) -> None:
        # An urgent finding always makes the result urgent: never drop an urgent flag.
        if any(f.urgent for f in self.findings):
            self.urgent = True
