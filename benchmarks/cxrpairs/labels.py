"""Label vocabulary, the urgent rule and the zone/size conventions of the cxrpairs generator.

Conventions (the generator's own, written from radiology practice):

- side is the PATIENT's side. In a PA image the patient's right is on the IMAGE LEFT.
- zone: thirds of the height of that lung on the frontal image, from its apex (top row of
  the lung field) to its lowest point (the costophrenic angle). A compact lesion's zone is
  the third holding its centroid in the image where it is present (the current image; the
  prior for a resolved lesion). A pneumothorax is labelled `upper` (it collects at the apex
  of an upright patient) and an effusion `lower` (dependent); `zones` also lists every third
  holding >= 25 % of the lesion's area, which scoring accepts for these two extended findings.
- nodule < 30 mm <= mass (diameter). Sizes are drawn away from the cut (<= 26 mm, >= 34 mm)
  so that a magnification of up to ~7 % cannot cross it.
- a LARGE effusion has a meniscus height (lowest point of the lung to the top of the
  meniscus at the lateral chest wall) >= 1/3 of that lung's height; sizes are drawn away from
  the cut (<= 0.24 or >= 0.36 of the lung height).
- URGENT = a new or worsened pneumothorax, or a new large pleural effusion. Nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

FINDINGS = (
    "nodule", "mass", "consolidation", "effusion", "pneumothorax",
    "edema", "atelectasis", "cardiomegaly", "support_device", "other",
)
CHANGES = ("new", "worsened", "stable", "improved", "resolved")
SIDES = ("right", "left", "bilateral")
ZONES = ("upper", "middle", "lower")

NODULE_MASS_CUT_MM = 30.0  # WHO/Fleischner convention: a lung opacity >= 3 cm is a mass
LARGE_EFFUSION_FRACTION = 1.0 / 3.0  # meniscus >= a third of the hemithorax: "large" on a PA film
ZONE_SHARE_ACCEPTED = 0.25  # an extended finding is "in" a zone holding >= 25 % of its area


def is_urgent(finding: str, change: str, large: bool = False) -> bool:
    """The urgent rule: new/worsened pneumothorax, or a new large pleural effusion."""
    if finding == "pneumothorax":
        return change in ("new", "worsened")
    if finding == "effusion":
        return change == "new" and large
    return False


def zone_of_fraction(f: float) -> str:
    """Zone of a height fraction of the lung (0 apex .. 1 lowest point)."""
    return ZONES[min(max(int(f * 3.0), 0), 2)]


@dataclass
class Label:
    """One labelled change of a pair (what a reader should report)."""

    finding: str
    side: str
    zone: str
    change: str
    urgent: bool
    size_mm: float | None  # current size (prior size when resolved); see the module docstring
    prior_size_mm: float | None = None
    zones: list[str] = field(default_factory=list)  # zones scoring accepts (always holds `zone`)
    zone_fraction: float | None = None  # centroid height fraction in its lung (0 apex .. 1 base)
    faint: bool = False  # drawn at a contrast-to-noise of 2-4
    on_border: bool = False  # placed within ~5 % of lung height of a zone border

    def __post_init__(self) -> None:
        assert self.finding in FINDINGS and self.change in CHANGES
        assert self.side in SIDES and self.zone in ZONES
        if self.zone not in self.zones:
            self.zones = [self.zone, *self.zones]

    def as_dict(self) -> dict:
        return asdict(self)
