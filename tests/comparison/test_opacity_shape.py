"""Table tests of typing an opacity by its own margin, shape and size in mm (issue 28's invariant: a nodule is
under 30 mm round and sharp, a mass 30 mm or more round and sharp, consolidation ill-defined, non-round, with air
bronchograms or lobar / segmental; consolidation is never a mass).

Measurement and decision are tested apart: `comparison.signs` measures (`outline_shape`, `edge_over_within`)
regions drawn here on the small chests of `test_signs_table`, then `comparison.typing_rules.opacity_by_shape`
decides and `reconcile` overrides the reader's words with it. The rows that retype a reader's "consolidation"
to nodule / mass fail with `SIGNS_CHECK_SHAPE` off (engine 0.4.15's behaviour: its reader typed a drawn round
18 mm opacity consolidation).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison.signs import RegionSigns, edge_over_within, locate, measure, outline_shape
from comparison.thresholds import DEFAULT_PARAMS
from comparison.typing_rules import opacity_by_shape, plateau, reconcile, round_outline
from priorwatch.vocabulary import Change, FindingType as F, Side, Zone

from .test_signs_table import NOISE, Chest, _base, _disc, _ellipse, _fuzzy_patch, _meniscus, _new_opacity

H = W = 160


def _sharp(mask: np.ndarray, density: float = 0.12, seed: int = 7) -> Chest:
    """A uniformly dense region with a sharp edge (blurred 0.8 px, as the discs)."""
    return _new_opacity(ndi.gaussian_filter(mask.astype(np.float32), 0.8), mask, density=density, seed=seed)


def _lobar(seed: int = 8) -> Chest:
    """A lobar opacity: the whole width of the right lung over a band of rows, its top a straight fissure."""
    base, lungs = _base(seed)
    band = lungs.right.copy()
    band[:78] = False
    band[112:] = False
    return _sharp(band, seed=seed)


def _three_lobes() -> Chest:
    """A lobed outline: three 18 mm lobes around a core, convex enough to pass ROUND_SOLIDITY (0.85) and with
    equal moment axes (ratio 1.0), so only its fit to its moment ellipse says it is not round."""
    m = _ellipse(70, 44, 5, 5)
    for a in np.deg2rad([90, 210, 330]):
        m |= _ellipse(70 - 8 * np.sin(a), 44 + 8 * np.cos(a), 6, 6)
    return _sharp(m)


CHESTS = {
    "disc 24 mm": lambda: _new_opacity(*_disc(8.0)[::-1], seed=1),
    "disc 48 mm": lambda: _new_opacity(*_disc(16.0, cy=80.0)[::-1], seed=6),
    "fuzzy patch": _fuzzy_patch,
    "lobar band": _lobar,
    "three lobes": _three_lobes,
    "plate": lambda: _sharp(_ellipse(70, 44, 4, 18)),
    "meniscus": lambda: _meniscus(Side.right, 0.3),
}


def signs_at(ch: Chest, spacing_mm: float) -> RegionSigns:
    """The chest's region measured as the engine measures it, at this pixel spacing (mm per working-grid px)."""
    roi = ch.lungs.both
    sd = (ndi.gaussian_filter(ch.cur, 1.0) - ndi.gaussian_filter(ch.prior, 1.0)) * ch.sign
    sigma = max(NOISE * np.sqrt(2) * 0.8, min(float(np.std(ch.cur[roi] - ch.prior[roi])), 3 * NOISE))
    at = locate(ch.mask & roi, ch.lungs, roi)
    assert at is not None
    return measure(ch.sign, float(sd[at.m].mean() / sigma), at, ch.cur, ch.prior, ch.lungs, sigma, spacing_mm, sd)


@pytest.fixture(scope="module")
def drawn() -> dict[str, Chest]:
    return {name: make() for name, make in CHESTS.items()}


@pytest.fixture(scope="module")
def measured(drawn) -> dict[str, RegionSigns]:
    return {name: signs_at(ch, 1.5) for name, ch in drawn.items()}


# (chest, measured sign, lowest, highest); None = unbounded. Each bound is one a region without the sign fails.
RANGES = [
    ("disc 24 mm", "edge_ratio", 1.8, None),  # steepest at its outline: sharp
    ("disc 48 mm", "edge_ratio", 1.8, None),  # and no less so for being larger (its `margin` falls to ~0.3)
    ("fuzzy patch", "edge_ratio", None, 1.15),  # fades into lung: its steepest slope is inside the outline
    ("disc 24 mm", "ellipse_fit", 0.9, None),
    ("three lobes", "ellipse_fit", None, 0.72),  # a lobed outline leaves its moment ellipse
    ("three lobes", "solidity", 0.8, None),  # though convex enough by its hull
    ("disc 24 mm", "axis_ratio", None, 1.1),
    ("plate", "axis_ratio", 2.5, None),
    ("disc 48 mm", "lung_span", None, 0.6),  # a mass sits inside the lung
    ("lobar band", "lung_span", 0.9, None),  # a lobe fills it from wall to mediastinum
]


@pytest.mark.parametrize("chest,attr,low,high", RANGES, ids=[f"{r[0]}:{r[1]}" for r in RANGES])
def test_shape_measured_in_range(measured, chest: str, attr: str, low: float | None, high: float | None) -> None:
    value = float(getattr(measured[chest], attr))
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    assert lo <= value <= hi, f"{chest}: {attr} = {value:.3f}, want [{lo}, {hi}]"


def test_outline_shape_of_a_drawn_ellipse_and_edge_ratio_of_a_step() -> None:
    """The measures on bare masks: an ellipse fits its own moment ellipse with its axes' ratio; a sharp step is
    steeper on its outline than inside, a wide ramp is not."""
    m = _ellipse(80, 80, 10, 20)
    fit, ratio, span = outline_shape(m, np.ones_like(m))
    assert fit >= 0.9 and 1.8 <= ratio <= 2.2 and span <= 0.3
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - 80.0, xx - 80.0)
    step = ndi.gaussian_filter((r <= 15).astype(np.float64), 0.8)
    ramp = np.clip((25.0 - r) / 20.0, 0.0, 1.0)  # rises over 20 px: an ill-defined edge
    disc = r <= 15
    assert edge_over_within(disc, step) >= 2.0
    assert edge_over_within(ramp > 0.25, ramp) <= 1.1


# (chest, spacing mm per px, the type its measured signs give; None = they do not decide)
DECIDE = [
    ("disc 24 mm", 1.5, F.nodule),
    ("disc 24 mm", 3.0, F.mass),  # the same drawing at twice the spacing: 48 mm
    ("disc 48 mm", 1.5, F.mass),
    ("disc 48 mm", 0.6, F.nodule),  # 19 mm
    ("fuzzy patch", 1.5, F.consolidation),  # ill-defined, air bronchi
    ("lobar band", 1.5, F.consolidation),  # sharp at its fissure, but lobar: never a mass
    ("three lobes", 1.5, None),  # not round, but sharp: no say while SHAPE_IRREGULAR_AIRSPACE is off
    ("plate", 1.5, None),  # elongated: the same
    ("meniscus", 1.5, None),  # basal: the effusion check's
]


@pytest.mark.parametrize("chest,spacing,want", DECIDE, ids=[f"{r[0]}@{r[1]}" for r in DECIDE])
def test_opacity_typed_by_its_shape_and_size_in_mm(drawn, chest: str, spacing: float, want: F | None) -> None:
    s = signs_at(drawn[chest], spacing)
    assert opacity_by_shape(s) == want, (chest, s.diam_mm, s.edge_ratio, s.ellipse_fit, s.axis_ratio, s.lung_span)


def test_a_round_region_of_unsure_margin_is_left_to_the_reader(measured) -> None:
    """Between the two edge cuts neither sharp nor ill-defined: no say (the reader's type stands)."""
    disc = measured["disc 24 mm"]
    between = replace(disc, edge_ratio=0.5 * (DEFAULT_PARAMS.EDGE_SHARP_RATIO + DEFAULT_PARAMS.EDGE_ILL_DEFINED_RATIO))
    assert round_outline(between) and opacity_by_shape(between) is None
    assert opacity_by_shape(disc) == F.nodule


IRREGULAR = replace(DEFAULT_PARAMS, SHAPE_IRREGULAR_AIRSPACE=True)


@pytest.mark.parametrize("chest", ["three lobes", "plate"])
def test_not_round_is_consolidation_when_asked(measured, chest: str) -> None:
    """With SHAPE_IRREGULAR_AIRSPACE a sharp region that is not round (lobed, elongated) is consolidation."""
    assert opacity_by_shape(measured[chest], params=IRREGULAR) == F.consolidation
    assert opacity_by_shape(measured[chest]) is None


def test_a_band_too_thin_to_have_an_inside_is_not_ill_defined(measured) -> None:
    """edge_over_within is 0 where the region has no inside (a band 1-2 px wide: sdfphantom 500021 g-0021, an
    improving mass whose strongest region was a thin band, axis ratio 42): unmeasured, not ill-defined."""
    band = replace(measured["disc 48 mm"], edge_ratio=0.0)
    assert opacity_by_shape(band) is None
    assert opacity_by_shape(replace(band, edge_ratio=1.0)) == F.consolidation


def test_a_small_irregular_region_is_not_called_consolidation(measured) -> None:
    """Under AIRSPACE_MIN_DIAM_MM a region is all edge: its outline says nothing (cxrpairs heldout9-058)."""
    lobes = measured["three lobes"]
    small = replace(lobes, diam_mm=DEFAULT_PARAMS.AIRSPACE_MIN_DIAM_MM - 5.0)
    assert opacity_by_shape(lobes, params=IRREGULAR) == F.consolidation
    assert opacity_by_shape(small, params=IRREGULAR) is None


def test_a_round_sharp_plateau_is_not_called_nodule_or_mass(drawn, measured) -> None:
    """A flat-topped round patch (uniform density, sharp edge: a coin of airspace, not a sphere's dome) gets no
    nodule / mass call from its shape with SHAPE_PLATEAU_GUARD; the domed disc of the same size does."""
    coin = signs_at(_sharp(_ellipse(70, 44, 8, 8)), 1.5)
    assert round_outline(coin) and coin.edge_ratio >= DEFAULT_PARAMS.EDGE_SHARP_RATIO
    assert plateau(coin) and not plateau(measured["disc 24 mm"])
    assert opacity_by_shape(coin) is None
    assert opacity_by_shape(coin, params=replace(DEFAULT_PARAMS, SHAPE_PLATEAU_GUARD=False)) == F.nodule


# (chest, the reader's words, want); the strongest region in the reader's lung and zone, same polarity
RECONCILE = [
    ("disc 24 mm", (F.consolidation, Change.new), (F.nodule, Change.new)),
    ("disc 48 mm", (F.consolidation, Change.worsened), (F.mass, Change.worsened)),
    ("disc 48 mm", (F.nodule, Change.new), (F.mass, Change.new)),  # round and sharp: its size in mm decides
    ("fuzzy patch", (F.mass, Change.new), (F.consolidation, Change.new)),
    ("lobar band", (F.mass, Change.new), (F.consolidation, Change.new)),
    ("three lobes", (F.nodule, Change.worsened), (F.nodule, Change.worsened)),  # sharp, not round: the reader's word stands
]


@pytest.mark.parametrize("chest,read,want", RECONCILE, ids=[f"{r[0]}:{r[1][0].value}" for r in RECONCILE])
def test_reader_type_overridden_by_the_region_shape(measured, chest: str, read, want) -> None:
    assert reconcile(read[0], read[1], Zone.middle, [(1, measured[chest])]) == want


def test_with_the_shape_check_off_the_reader_consolidation_stands(measured) -> None:
    """Engine 0.4.15's behaviour, the defect: a round sharp 24 mm opacity read consolidation stayed consolidation."""
    off = replace(DEFAULT_PARAMS, SIGNS_CHECK_SHAPE=False)
    assert reconcile(F.consolidation, Change.new, Zone.middle, [(1, measured["disc 24 mm"])], params=off) == (
        F.consolidation, Change.new)
    assert reconcile(F.consolidation, Change.new, Zone.middle, [(1, measured["disc 24 mm"])]) == (F.nodule, Change.new)


def test_improving_lesion_retyped_only_when_asked(measured) -> None:
    """A fading change (sign -1) is checked too unless SHAPE_APPEARING_ONLY."""
    disc = measured["disc 24 mm"]
    assert reconcile(F.consolidation, Change.resolved, Zone.middle, [(-1, disc)]) == (F.nodule, Change.resolved)
    only = replace(DEFAULT_PARAMS, SHAPE_APPEARING_ONLY=True)
    assert reconcile(F.consolidation, Change.resolved, Zone.middle, [(-1, disc)], params=only) == (
        F.consolidation, Change.resolved)
