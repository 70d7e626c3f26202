"""Table tests of `comparison.pleural_line` (issue 28): a visceral pleural line drawn on small arrays.

The drawing is this file's own (two elliptical lungs with a smoothed random "vessel" texture and
independent noise), not a generator's: each row checks one sign of the detector (a thin bright
line parallel to the wall with no markings beyond it), and each mimic row keeps the line and takes
one sign away (markings beyond it: a rib or scapular edge over aerated lung; running on past the
lung: a skin fold; across the wall: a rib's cortex). The last rows check the engine's wiring, and
that it is the detector that finds the drawn pneumothorax (off: not found).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison._anatomy import LungFields
from comparison.pleural_line import compare_lines, find_lines
from comparison.registration import _ptx_from_lines, pleural_line_findings
from comparison.thresholds import DEFAULT_PARAMS
from priorwatch.vocabulary import Change, FindingResult, FindingType, Side, Zone

ON = replace(DEFAULT_PARAMS, PLEURAL_LINE_DETECTOR=True)
H = W = 160
SPACING_MM = 1.5
NOISE = 0.003
CY, RY, RX = 82.0, 62.0, 30.0
CX = {Side.right: 44.0, Side.left: 116.0}  # patient's right lung on the image's left


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _lungs() -> LungFields:
    return LungFields(right=_ellipse(CY, CX[Side.right], RY, RX), left=_ellipse(CY, CX[Side.left], RY, RX),
                      midline=80.0, template=False)


def _chest(seed: int, side: Side | None = None, gap: float = 9.0, markings_beyond: bool = False,
           past_wall: bool = False, across: bool = False, line: float = 0.06) -> np.ndarray:
    """A chest (lungs 0.3 in a 0.7 body, vessel texture in the lungs, noise); with `side`, a thin
    bright line `gap` px inside that lung's lateral and apical edge, and no markings beyond it (a
    pneumothorax) unless `markings_beyond`. `past_wall`: the line runs on out of the lung (a skin fold).
    `across`: the line runs obliquely across the lateral lung instead (a rib's cortex)."""
    rng = np.random.default_rng(seed)
    lungs = _lungs()
    both = lungs.both
    vessels = ndi.gaussian_filter(rng.normal(size=(H, W)), 1.0)
    texture = 0.025 * vessels / vessels.std()
    body = np.full((H, W), 0.7)
    body[both] = 0.3
    img = ndi.gaussian_filter(body, 1.0)
    keep = both.copy()
    if side is not None:
        m = lungs.mask(side)
        inner = _ellipse(CY, CX[side], RY - gap, RX - gap)
        yy, xx = np.mgrid[:H, :W]
        lateral = (xx < CX[side] - 4) if side == Side.right else (xx > CX[side] + 4)
        upper = yy < CY + 0.3 * RY
        rim = inner & ~ndi.binary_erosion(inner) & upper & (lateral | (yy < CY - 0.7 * RY))
        if across:
            t = np.linspace(0, 1, 200)
            x0 = CX[side] - RX - 6 if side == Side.right else CX[side] + RX + 6
            x1 = CX[side] if side == Side.right else CX[side]
            rim = np.zeros((H, W), bool)
            rim[np.round(CY - 35 + 30 * t).astype(int), np.round(x0 + (x1 - x0) * t).astype(int)] = True
            rim &= m
        if past_wall:
            ys, xs = np.nonzero(rim)
            rows = np.arange(int(ys.max()), min(H - 2, int(ys.max()) + 45))
            cols = np.interp(rows, [ys.max(), ys.max() + 45], [xs[ys.argmax()], xs[ys.argmax()] + (-12 if side == Side.right else 12)])
            rim[rows, np.round(cols).astype(int)] = True
        img = img + line * ndi.gaussian_filter(rim.astype(float), 0.5) / ndi.gaussian_filter(rim.astype(float), 0.5).max()
        if not markings_beyond and not across:
            keep &= ~(m & ~inner)  # air beyond the line: no vessels
    img = img + texture * keep + rng.normal(0.0, NOISE, (H, W))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("side", [Side.right, Side.left])
def test_line_with_markings_lost_beyond_it_is_found_on_its_side(side: Side) -> None:
    img = _chest(1, side)
    lines = find_lines(img, _lungs(), side, SPACING_MM)
    assert len(lines) >= 1
    assert lines[0].side == side
    assert lines[0].beyond_ratio < DEFAULT_PARAMS.PL_BEYOND_RATIO
    assert 6.0 <= lines[0].gap_mm <= 20.0  # drawn 9 px (13.5 mm) in
    other = Side.left if side == Side.right else Side.right
    assert find_lines(img, _lungs(), other, SPACING_MM) == []


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_a_normal_chest_has_no_line(seed: int) -> None:
    img = _chest(seed)
    assert [find_lines(img, _lungs(), s, SPACING_MM) for s in (Side.right, Side.left)] == [[], []]


@pytest.mark.parametrize("mimic", [dict(markings_beyond=True), dict(past_wall=True, markings_beyond=True),
                                   dict(across=True)], ids=["rib-or-scapular-edge", "skin-fold", "rib-cortex"])
def test_mimics_are_not_found(mimic: dict) -> None:
    img = _chest(5, Side.right, **mimic)
    assert find_lines(img, _lungs(), Side.right, SPACING_MM) == []


def test_new_line_on_the_current_is_a_new_pneumothorax_on_its_side() -> None:
    prior, cur = _chest(6), _chest(7, Side.left)
    changes = compare_lines(cur, prior, _lungs(), SPACING_MM)
    assert [(c.side, c.change) for c in changes] == [(Side.left, Change.new)]


def test_the_same_line_on_both_is_stable_and_a_line_gone_is_resolved() -> None:
    a, b = _chest(8, Side.right), _chest(9, Side.right)
    assert compare_lines(b, a, _lungs(), SPACING_MM) == []
    changes = compare_lines(_chest(10), a, _lungs(), SPACING_MM)
    assert [(c.side, c.change) for c in changes] == [(Side.right, Change.resolved)]


def test_line_pulled_further_in_is_worsened() -> None:
    prior, cur = _chest(11, Side.right, gap=6.0), _chest(12, Side.right, gap=14.0)
    changes = compare_lines(cur, prior, _lungs(), SPACING_MM)
    assert [(c.side, c.change) for c in changes] == [(Side.right, Change.worsened)]


def _engine_claims(params) -> list[FindingResult]:
    """What the engine's entry (`registration.pleural_line_findings`) makes of a drawn new right pneumothorax
    with a reader that called nothing."""
    prior, cur = _chest(13), _chest(14, Side.right)
    return pleural_line_findings([], cur, prior, _lungs(), SPACING_MM, (H * 2, W * 2), params=params)[0]


def test_engine_wiring_new_line_is_an_urgent_pneumothorax_and_not_without_the_detector() -> None:
    on = _engine_claims(ON)
    assert [(f.finding, f.side, f.change, f.urgent) for f in on] == [(FindingType.pneumothorax, Side.right, Change.new, True)]
    assert on[0].zone in (Zone.upper, Zone.middle)
    assert _engine_claims(replace(DEFAULT_PARAMS, PLEURAL_LINE_DETECTOR=False)) == []


def test_engine_wiring_replaces_an_improved_pneumothorax_and_keeps_other_claims() -> None:
    prior, cur = _chest(15), _chest(16, Side.left)
    changes = compare_lines(cur, prior, _lungs(), SPACING_MM)
    wrong = FindingResult(finding=FindingType.pneumothorax, side=Side.left, zone=Zone.upper, change=Change.improved,
                          urgent=False, confidence=0.5)
    other = FindingResult(finding=FindingType.nodule, side=Side.right, zone=Zone.middle, change=Change.new,
                          urgent=False, confidence=0.7)
    out, n = _ptx_from_lines([wrong, other], changes, _lungs(), (H, W), params=ON)
    assert n == 1
    assert [(f.finding, f.side, f.change, f.urgent) for f in out] == [
        (FindingType.pneumothorax, Side.left, Change.new, True), (FindingType.nodule, Side.right, Change.new, False)]
