"""The engine's radiological-sign rules and its false-positive guards (issue 11).

Each test edits a stable pair by hand in the way a sign looks on a film (here, not in either
generator), so it checks the rule, not a generator's look: a lucency with lung markings and
ribs kept is still a pneumothorax; another view or an unregistrable prior is not compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison import CompareContext, RegistrationEngine, load_image, synthetic
from comparison._anatomy import segment_lungs
from priorwatch.vocabulary import Change, FindingType, Side


@pytest.fixture(scope="module")
def stable_pair(pairs_dir: Path) -> tuple[np.ndarray, np.ndarray, float]:
    spec = synthetic.make_pair(pairs_dir / "signs", "PW-SIGNS", None, Change.stable, Side.right, synthetic.Zone.middle,
                               seed=41)
    cur = load_image(spec.current_paths[0])
    return cur.pixels, load_image(spec.prior_paths[0]).pixels, float(cur.spacing_mm or 0.4)


def _apical_rim(img: np.ndarray, side: Side, depth: float) -> np.ndarray:
    """A lucent rim along the apex and upper lateral edge of one lung (air in the pleural space),
    darker by `depth` but with every rib and vessel kept (texture is not touched)."""
    lungs = segment_lungs(img)
    m = lungs.mask(side)
    top, bottom = lungs.extent(side)
    inner = ndi.binary_erosion(m, iterations=max(3, int(0.045 * img.shape[1])))
    rim = m & ~inner
    rim[int(top + 0.5 * (bottom - top)):] = False
    soft = ndi.gaussian_filter(rim.astype(np.float32), 1.5)
    out = img - depth * soft
    line = ndi.binary_dilation(rim, iterations=1) & inner  # the visceral pleural line
    out = out + 0.5 * depth * ndi.gaussian_filter(line.astype(np.float32), 0.7)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def test_new_lucency_with_ribs_kept_is_an_urgent_pneumothorax_not_an_opacity_improving(stable_pair) -> None:
    cur, pri, spacing = stable_pair
    side = Side.left  # patient's left: image right in PA
    ptx = _apical_rim(cur, side, depth=0.08)
    r = RegistrationEngine().compare(ptx, pri, CompareContext(pixel_spacing_mm=spacing)).result
    hits = [f for f in r.findings if f.finding == FindingType.pneumothorax]
    assert hits and hits[0].side == side and hits[0].change in (Change.new, Change.worsened), r.findings
    assert r.urgent
    better = [f for f in r.findings if f.change in (Change.improved, Change.resolved)]
    assert not better, r.findings  # a lucency is never a resolving opacity


def test_lucency_going_away_is_a_pneumothorax_improving_not_an_opacity(stable_pair) -> None:
    cur, pri, spacing = stable_pair
    side = Side.right
    r = RegistrationEngine().compare(cur, _apical_rim(pri, side, depth=0.08), CompareContext(pixel_spacing_mm=spacing)).result
    hits = [f for f in r.findings if f.finding == FindingType.pneumothorax]
    assert hits and hits[0].side == side and hits[0].change in (Change.improved, Change.resolved), r.findings
    assert not r.urgent
    assert not [f for f in r.findings if f.change in (Change.new, Change.worsened)], r.findings


@pytest.mark.parametrize("cur_view,prior_view", [("PA", "LL"), ("LATERAL", "AP")])
def test_other_view_is_not_compared(stable_pair, cur_view: str, prior_view: str) -> None:
    cur, pri, _ = stable_pair
    r = RegistrationEngine().compare(_apical_rim(cur, Side.left, 0.08), pri,
                                     CompareContext(current_view=cur_view, prior_view=prior_view)).result
    assert r.has_prior and not r.findings and not r.urgent
    assert "Not compared" in r.draft_text and cur_view in r.draft_text and prior_view in r.draft_text


def test_ap_against_pa_is_compared_with_a_note(stable_pair) -> None:
    """Issue 28: an AP portable current against a PA prior is compared (an urgent change must not be
    missed), with a note on magnification and lower confidence; it used to be refused."""
    cur, pri, _ = stable_pair
    r = RegistrationEngine().compare(_apical_rim(cur, Side.left, 0.08), pri,
                                     CompareContext(current_view="AP", prior_view="PA")).result
    assert r.not_compared is None and r.urgent
    assert [f.side for f in r.findings if f.finding == FindingType.pneumothorax and f.urgent] == [Side.left]
    assert any("magnifies" in n for n in r.notes)


def test_unregistrable_prior_is_not_compared(stable_pair) -> None:
    cur, _, _ = stable_pair
    noise = np.random.default_rng(3).random(cur.shape).astype(np.float32)
    r = RegistrationEngine().compare(cur, noise).result
    assert not r.findings and "could not be registered" in r.draft_text


def test_sizes_use_the_pixel_spacing(stable_pair) -> None:
    """The same round opacity is a nodule at a fine pixel spacing and a mass at a coarse one."""
    cur, pri, _ = stable_pair
    lungs = segment_lungs(cur)
    top, bottom = lungs.extent(Side.right)
    cols = np.nonzero(lungs.right.any(axis=0))[0]
    cy, cx = int(top + 0.5 * (bottom - top)), int(cols.mean())
    yy, xx = np.mgrid[: cur.shape[0], : cur.shape[1]]
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0**2
    blob = np.clip(1 - r2, 0, None) ** 0.5 * 0.08
    lesion = np.clip(cur + blob, 0, 1).astype(np.float32)
    eng = RegistrationEngine()
    fine = eng.compare(lesion, pri, CompareContext(pixel_spacing_mm=0.5)).result.findings
    coarse = eng.compare(lesion, pri, CompareContext(pixel_spacing_mm=1.2)).result.findings
    assert fine and fine[0].finding == FindingType.nodule and fine[0].change == Change.new, fine
    assert coarse and coarse[0].finding == FindingType.mass and coarse[0].change == Change.new, coarse
