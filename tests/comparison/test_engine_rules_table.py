"""Table tests of three issue-28 rules, on arrays drawn here (never a generator's):

- `typing_rules.pneumothorax_direction`: "pneumothorax improved / resolved" only where a region shows the
  prior's air going; new air (lucent at the wall, vessel markings lost, a pleural line, no prior opacity)
  makes it new;
- `_anatomy.zone_extents`: zones are thirds from the apex to the costophrenic angle read on the image, not
  of a lung mask that leaks into the neck and abdomen;
- `fluid.new_fluid_height`: new fluid is read against the prior's own lung-to-tissue contrast, so a noise
  sd inflated by rib residuals does not hide it.
Each table has a row that a rule switched off (or the old reference) fails.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison import replay_aligned
from comparison._anatomy import LungFields, zone_extents
from comparison.fluid import new_fluid_height
from comparison.thresholds import DEFAULT_PARAMS
from comparison.typing_rules import new_air, pneumothorax_direction, prior_air_going
from priorwatch.vocabulary import Change, FindingType as F, Side, Zone

from .test_signs_table import CHESTS, Chest, signs_of

OFF = replace(DEFAULT_PARAMS, PTX_SIGNS=False)


@pytest.fixture(scope="module")
def measured():
    out = {name: signs_of(make()) for name, make in CHESTS.items()}
    rim = CHESTS["lucent rim, left"]()  # the same air, going: the prior held it, the lung is back now
    out["air going, left"] = signs_of(Chest(prior=rim.cur, cur=rim.prior, lungs=rim.lungs, mask=rim.mask, sign=1))
    return out


# (regions of that lung: (chest, sign), the reader's words, params, expected)
PTX_ROWS = [
    ([("lucent rim, left", -1)], (F.pneumothorax, Change.improved), DEFAULT_PARAMS, (F.pneumothorax, Change.new)),
    ([("lucent rim, left", -1)], (F.pneumothorax, Change.resolved), DEFAULT_PARAMS, (F.pneumothorax, Change.new)),
    ([("lucent rim, left", -1)], (F.pneumothorax, Change.improved), OFF, (F.pneumothorax, Change.improved)),
    # no pleural line: the signs do not say pneumothorax, the reader's words stand
    ([("lucent rim, right, no line", -1)], (F.pneumothorax, Change.improved), DEFAULT_PARAMS,
     (F.pneumothorax, Change.improved)),
    # the prior showed an opacity there (a disc that resolved): not new air
    ([("resolved disc", -1)], (F.pneumothorax, Change.resolved), DEFAULT_PARAMS, (F.pneumothorax, Change.resolved)),
    # a region shows the prior's air going: improved stands even beside new air elsewhere in that lung
    ([("air going, left", 1), ("lucent rim, left", -1)], (F.pneumothorax, Change.improved), DEFAULT_PARAMS,
     (F.pneumothorax, Change.improved)),
    # other findings and appearing words are left as read
    ([("lucent rim, left", -1)], (F.consolidation, Change.resolved), DEFAULT_PARAMS, (F.consolidation, Change.resolved)),
    ([("lucent rim, left", -1)], (F.pneumothorax, Change.worsened), DEFAULT_PARAMS, (F.pneumothorax, Change.worsened)),
]


@pytest.mark.parametrize("regions,read,params,want", PTX_ROWS)
def test_pneumothorax_direction(measured, regions, read, params, want) -> None:
    here = [(sign, measured[chest][0]) for chest, sign in regions]
    assert pneumothorax_direction(read[0], read[1], here, params) == want


@pytest.mark.parametrize("chest,sign,want", [("lucent rim, left", -1, True), ("lucent rim, right, no line", -1, False),
                                             ("resolved disc", -1, False), ("nodule 24 mm", 1, False)])
def test_new_air(measured, chest: str, sign: int, want: bool) -> None:
    assert new_air(sign, measured[chest][0]) is want


@pytest.mark.parametrize("chest,sign,want", [("air going, left", 1, True), ("nodule 24 mm", 1, False),
                                             ("lucent rim, left", -1, False)])
def test_prior_air_going(measured, chest: str, sign: int, want: bool) -> None:
    assert prior_air_going(sign, measured[chest][0]) is want


# --- zones on the image --------------------------------------------------------------------------
H, W = 200, 160
APEX, BASE = 40, 160  # the drawn lungs' rows


def _chest() -> tuple[np.ndarray, LungFields]:
    """Dense neck above, two dark lungs (rows APEX-BASE), dense abdomen below; the masks leak to the frame's rows."""
    yy, xx = np.mgrid[:H, :W]
    img = np.full((H, W), 0.75, np.float32)
    right = ((yy - 100) / 60.0) ** 2 + ((xx - 42) / 28.0) ** 2 <= 1.0
    left = ((yy - 100) / 60.0) ** 2 + ((xx - 118) / 28.0) ** 2 <= 1.0
    img[right | left] = 0.3
    img = ndi.gaussian_filter(img, 1.5) + np.random.default_rng(3).normal(0, 0.01, (H, W)).astype(np.float32)
    leak_r, leak_l = np.zeros((H, W), bool), np.zeros((H, W), bool)
    leak_r[5:195, 14:71] = True
    leak_l[5:195, 90:147] = True
    return img, LungFields(right=leak_r, left=leak_l, midline=80.0, template=False)


def _zones(params=DEFAULT_PARAMS) -> dict[Side, tuple[int, int]]:
    img, lungs = _chest()
    p = params
    return zone_extents(img, lungs, p.ZONE_SMOOTH_PX, p.ZONE_LEVEL, p.ZONE_CENTRAL, tuple(p.ZONE_LATERAL), p.ZONE_MIN_SHARE)


@pytest.mark.parametrize("side", [Side.right, Side.left])
def test_zone_rows_are_the_lungs_not_the_mask(side: Side) -> None:
    top, bottom = _zones()[side]
    assert abs(top - APEX) <= 4 and abs(bottom - BASE) <= 4, (top, bottom)


@pytest.mark.parametrize("row,want", [(60, Zone.upper), (100, Zone.middle), (125, Zone.lower), (150, Zone.lower)])
def test_lesion_zone_by_its_centre(row: int, want: Zone) -> None:
    img, lungs = _chest()
    assert replace(lungs, zone_rows=_zones()).zone_of(Side.right, row) == want


def test_the_leaking_mask_put_a_lower_zone_lesion_in_the_middle() -> None:
    """Why: the mask's thirds (rows 5-194) read row 125 (0.71 of the drawn lung) as middle."""
    img, lungs = _chest()
    assert lungs.zone_of(Side.right, 125) == Zone.middle


def test_a_side_without_a_lung_run_keeps_its_mask() -> None:
    img, lungs = _chest()
    img[:, 85:] = 0.75  # no left lung on the image
    p = DEFAULT_PARAMS
    rows = zone_extents(img, lungs, p.ZONE_SMOOTH_PX, p.ZONE_LEVEL, p.ZONE_CENTRAL, tuple(p.ZONE_LATERAL), p.ZONE_MIN_SHARE)
    assert Side.left not in rows and Side.right in rows
    assert replace(lungs, zone_rows=rows).zone_span(Side.left) == lungs.extent(Side.left)


# --- new fluid height against the lung's own contrast --------------------------------------------
def _effusion(height: float, density: float) -> tuple[object, np.ndarray]:
    """A registered pair (prior: lungs 0.3 in tissue 0.7; current: fluid `density` denser from the right lung's
    base up `height` of its rows) and the smoothed difference."""
    img, lungs = _chest()
    yy = np.mgrid[:H, :W][0]
    right = ((yy - 100) / 60.0) ** 2 + ((np.mgrid[:H, :W][1] - 42) / 28.0) ** 2 <= 1.0
    fluid = right & (yy >= BASE - height * (BASE - APEX))
    cur = img + density * ndi.gaussian_filter(fluid.astype(np.float32), 1.0)
    masks = {s: ndi.binary_erosion(m, iterations=0) for s, m in (("r", right), ("l", right[:, ::-1]))}
    al = replay_aligned(cur, img, masks["r"], masks["l"], masks["r"] | masks["l"], 80.0, 0.9)
    raw = ndi.gaussian_filter(cur, 1.0) - ndi.gaussian_filter(img, 1.0)
    return al, raw


@pytest.mark.parametrize("params,want_low,want_high", [
    (DEFAULT_PARAMS, 0.3, 0.6),  # read against the tissue contrast: about the drawn 0.45
    (replace(DEFAULT_PARAMS, FLUID_CONTRAST=0.0), 0.0, 0.05),  # the noise sd alone: hidden
])
def test_fluid_read_against_tissue_contrast(params, want_low, want_high) -> None:
    al, raw = _effusion(0.45, 0.15)
    sigma = 0.06  # rib residuals of breathing: 3 sd (0.18) is more than the fluid adds (0.15)
    got = new_fluid_height(al, raw, sigma, params)["right"]
    assert got <= want_high, got
    assert got >= want_low, got
    assert new_fluid_height(al, raw, sigma, params)["left"] == 0.0


# --- where the reader's words are placed ----------------------------------------------------------
def _lung_read(finding: str, zone: str):
    from comparison.reader import LungRead

    return LungRead("right", 0.95, finding, 0.9, "new", 0.9, zone, 0.9, 0.0, (40, 10, 160, 75))


@pytest.mark.parametrize("finding,zone,params,want", [
    ("effusion", "upper", DEFAULT_PARAMS, Zone.lower),  # dependent fluid: its centre is at the base
    ("effusion", "middle", DEFAULT_PARAMS, Zone.lower),
    ("effusion", "upper", replace(DEFAULT_PARAMS, EFFUSION_LOWER=False), Zone.upper),
    ("consolidation", "upper", DEFAULT_PARAMS, Zone.upper),  # other findings where the reader put them
])
def test_an_effusion_is_reported_in_the_lower_zone(finding: str, zone: str, params, want: Zone) -> None:
    from comparison.registration import _from_reads

    img, lungs = _chest()
    out = _from_reads([_lung_read(finding, zone)], [], lungs, 0.9, (H, W), (H, W), params=params)
    assert [f.zone for f in out] == [want]


def test_the_rules_apical_pneumothorax_needs_new_air_on_its_side() -> None:
    """The sign rules' urgent apical pneumothorax is kept beside a reader that flagged nothing urgent only on a
    side in `air_sides` (where a region shows `new_air`); without `air_sides` (the switch off) as before."""
    from comparison.registration import _urgent_from_either
    from priorwatch.vocabulary import FindingResult

    ptx = FindingResult(finding=F.pneumothorax, side=Side.left, zone=Zone.upper, change=Change.new, urgent=True,
                        confidence=0.5)
    assert _urgent_from_either([], [ptx], DEFAULT_PARAMS, air_sides=set()) == ([], 0)
    assert _urgent_from_either([], [ptx], DEFAULT_PARAMS, air_sides={Side.left}) == ([ptx], 1)
    assert _urgent_from_either([], [ptx], DEFAULT_PARAMS) == ([ptx], 1)


@pytest.mark.parametrize("finding,fluid,params,want", [
    ("consolidation", 0.3, DEFAULT_PARAMS, (F.effusion, True)),  # measured large fluid from the base: a new effusion, urgent
    ("mass", 0.3, DEFAULT_PARAMS, (F.effusion, True)),
    ("consolidation", 0.05, DEFAULT_PARAMS, (F.consolidation, False)),  # no fluid rising from the base: as read
    ("consolidation", 0.3, replace(DEFAULT_PARAMS, FLUID_RETYPES=False), (F.consolidation, False)),
])
def test_a_lower_opacity_over_large_new_fluid_is_an_effusion(finding: str, fluid: float, params, want) -> None:
    from comparison.registration import _from_reads

    img, lungs = _chest()
    out = _from_reads([_lung_read(finding, "lower")], [], lungs, 0.9, (H, W), (H, W), None,
                      {"right": fluid, "left": 0.0}, params=params)
    assert [(f.finding, f.urgent) for f in out] == [want]


def test_no_vessels_on_either_image_is_not_lost_markings(measured) -> None:
    """0 / 0 is not "markings lost": where the prior showed no measurable vessels the sign says nothing."""
    rim = measured["lucent rim, left"][0]
    assert new_air(-1, rim)
    assert not new_air(-1, replace(rim, vessels_c=0.0, vessels_p=0.1))
