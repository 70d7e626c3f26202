"""'New large effusion' is a measured size: the new fluid's height up from the lung base."""

from __future__ import annotations

import numpy as np
import pytest

from comparison import CompareContext, RegistrationEngine, registration
from comparison.thresholds import DEFAULT_PARAMS
from comparison._anatomy import LungFields
from comparison.fluid import new_fluid_height
from comparison.reader import LungRead
from comparison.registration import Aligned

H, W = 256, 256
TOP, BASE = 40, 200  # the lungs' apex and base rows


def _aligned(fluid_rows: int, side: str) -> tuple[Aligned, np.ndarray, float]:
    """A chest (two dark lungs in a denser body, ribs) whose current holds new fluid rising
    `fluid_rows` from the base of one lung (a meniscus: higher at the chest wall)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    prior = np.full((H, W), 0.7, np.float32)
    right, left = np.zeros((H, W), bool), np.zeros((H, W), bool)
    right[TOP:BASE, 30:110], left[TOP:BASE, 146:226] = True, True
    prior[right | left] = 0.3
    prior += 0.03 * np.sin(yy / 5.0)
    cur = prior.copy()
    if fluid_rows:
        cols = np.arange(30, 110) if side == "right" else np.arange(146, 226)
        lateral = (cols - 30) / 80.0 if side == "right" else (225 - cols) / 80.0  # 0 at the chest wall
        for c, t in zip(cols, lateral):
            rise = int(fluid_rows * (1.0 - 0.5 * t))  # the meniscus: highest at the wall
            cur[BASE - rise : BASE, c] += 0.3
    noise = 0.004
    cur += rng.normal(0, noise, cur.shape).astype(np.float32)
    prior += rng.normal(0, noise, prior.shape).astype(np.float32)
    lungs = LungFields(right=right, left=left, midline=128.0, template=False)
    al = Aligned(cw=cur, mapped=prior, valid=np.ones((H, W), bool), lungs=lungs, lungs_c=lungs, roi=right | left,
                 quality=0.95, metric=0.5, fit_ok=True, exposure_resid=0.1)
    raw = registration.ndi.gaussian_filter(cur, 1.0) - registration.ndi.gaussian_filter(prior, 1.0)
    return al, raw, noise / 1.5  # the smoothed difference's noise sd, roughly


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_fluid_height_is_read_at_the_chest_wall_from_the_base(side: str) -> None:
    other = "left" if side == "right" else "right"
    lung_h = BASE - TOP
    large, small = new_fluid_height(*_aligned(int(0.4 * lung_h), side)), new_fluid_height(*_aligned(int(0.1 * lung_h), side))
    none = new_fluid_height(*_aligned(0, side))
    assert large[side] == pytest.approx(0.4, abs=0.05)
    assert small[side] == pytest.approx(0.1, abs=0.05)
    assert large[other] == small[other] == none[side] == none[other] == 0.0


def _read(change: str, p_urgent: float) -> LungRead:
    return LungRead("left", 0.95, "effusion", 0.9, change, 0.9, "lower", 0.9, p_urgent, (40, 130, 200, 220))


def _urgent(read: LungRead, fluid: dict[str, float] | None) -> list[bool]:
    lungs = _aligned(0, "left")[0].lungs
    return [f.urgent for f in registration._from_reads([read], [], lungs, 0.9, (H, W), (512, 512), None, fluid)]


def test_an_effusion_the_reader_calls_new_or_worse_is_urgent_when_measured_large() -> None:
    big, small = DEFAULT_PARAMS.NEW_LARGE_FLUID_HEIGHT + 0.1, DEFAULT_PARAMS.NEW_LARGE_FLUID_HEIGHT - 0.05
    got = {(word, name): _urgent(_read(word, 0.1), fluid) for word in ("new", "worsened") for name, fluid in (
        ("large", {"left": big, "right": 0.0}), ("small", {"left": small, "right": 0.0}),
        ("other side", {"left": 0.0, "right": big}), ("not measured", None))}
    assert got == {(word, name): [name == "large"] for word in ("new", "worsened")
                   for name in ("large", "small", "other side", "not measured")}
    # an effusion going away is never urgent, whatever the measure reads
    assert _urgent(_read("improved", 0.1), {"left": big, "right": 0.0}) == [False]
    # the reader's own urgent flag is never dropped by a small measure
    assert _urgent(_read("new", 0.8), {"left": 0.0, "right": 0.0}) == [True]


def _new_effusion_pair(index: int, urgent: bool):
    """A new-effusion pair of the independent generator's train split (never dev or held-out) at the
    benchmark's 2000 px, checked to carry that urgency label, through the real engine: (side, result)."""
    from benchmarks.change_engine import prepared_pair
    from benchmarks.cxrpairs import make_pair
    from modeldev.reader_data import train_specs

    spec = train_specs(index, 1)[0]
    assert (spec.finding, spec.change) == ("effusion", "new")
    pair = make_pair(spec, scale=2000 / 2200)
    assert [lb.urgent for lb in pair.labels] == [urgent]
    cur, pri = prepared_pair(pair)
    return spec.side, RegistrationEngine().compare(cur.pixels, pri.pixels, CompareContext(pixel_spacing_mm=cur.spacing_mm)).result


@pytest.mark.parametrize(("index", "urgent"), [(5132, True), (5111, False)])
def test_independent_new_effusions_are_urgent_by_their_size(index: int, urgent: bool) -> None:
    """Two pairs of the independent generator's train split (never dev or held-out): a new
    116 mm right effusion whose urgency the reader scored 0.10 (missed before the measure), and
    a new 41 mm left one the sign rules' height called large (a false urgent before). The reader's
    word for a new effusion is "new" or "worsened" (a coin toss on 5132: 0.52 "new" on the quadratic
    match, 0.57 "worsened" on the tone-mapped reading of engine 0.4.7); the urgency by size must not
    depend on it, "improved" or "resolved" would be wrong."""
    side, res = _new_effusion_pair(index, urgent)
    assert [(f.finding.value, f.side.value) for f in res.findings] == [("effusion", side)]
    word = res.findings[0].change.value
    assert word in ("new", "worsened")
    assert res.urgent is urgent
    # the measure behind the flag is in the draft, for the radiologist to check
    assert (f"{word.capitalize()} {side} effusion: new fluid rises" in res.draft_text) is urgent


def test_a_large_new_effusion_the_reader_calls_worsened_keeps_its_urgent_flag() -> None:
    """train-9062: a new 88 mm effusion the reader reads as "worsened" (its new / worsened split of
    an effusion is close to a coin toss). Engine 0.4.3 let it go unflagged; the measured rise of new
    fluid now flags it, and the draft says so."""
    side, res = _new_effusion_pair(9062, True)
    assert [(f.finding.value, f.side.value, f.change.value) for f in res.findings] == [("effusion", side, "worsened")]
    assert res.urgent is True
    assert f"Worsened {side} effusion: new fluid rises" in res.draft_text
