"""Issue 28: registration that survives other sources (pose search, fallback chain, non-rigid stage).

Pairs come from the independent thorax3d generator (`thorax3d_pairs`), prepared by `load_image` and
run through the real `RegistrationEngine`. Each test names the switch in `comparison.thresholds` whose
behaviour it checks; with that switch off the test fails (checked when it was written).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison import CompareContext, RegistrationEngine
from comparison.thresholds import DEFAULT_PARAMS
from comparison.coarse_pose import search_pose
from comparison.registration import _to_work
from priorwatch.vocabulary import Change, FindingType
from tests.comparison.thorax3d_pairs import Lesion, make_pair, make_pair_with_truth

CHANGED = {Change.new, Change.worsened, Change.improved, Change.resolved}


@pytest.fixture(scope="module")
def engine() -> RegistrationEngine:
    return RegistrationEngine()


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory):
    """A stable normal pair whose current is rotated -10 degrees in plane (the safety case's rotation)."""
    return make_pair(tmp_path_factory.mktemp("rot"), 5, rot_deg=(0.0, -10.0))


@pytest.fixture(scope="module")
def breathing(tmp_path_factory: pytest.TempPathFactory):
    """A stable normal pair: prior at -12 mm, current at +12 mm inspiration, 3 degrees of roll between them."""
    return make_pair(tmp_path_factory.mktemp("insp"), 3, insp_mm=(-12.0, 12.0), roll_deg=(-1.5, 1.5))


@pytest.fixture(scope="module")
def new_nodule(tmp_path_factory: pytest.TempPathFactory):
    """A new 14 mm right mid-zone nodule on a pair with +-12 mm inspiration and 3 degrees of roll, with
    where the nodule lies on the current."""
    return make_pair_with_truth(tmp_path_factory.mktemp("nod"), 4, insp_mm=(-12.0, 12.0), roll_deg=(-1.5, 1.5),
                                lesion=Lesion("nodule", "right", "middle", "new", None, 14.0))


def _without_bspline(engine: RegistrationEngine) -> RegistrationEngine:
    """The same engine with the non-rigid stage switched off (`BSPLINE`), the shipped one untouched."""
    return RegistrationEngine(use_reader=engine.use_reader, params=replace(engine.params, BSPLINE=False))


def _ctx(cur) -> CompareContext:
    return CompareContext(interval_days=30, pixel_spacing_mm=cur.spacing_mm)


def test_pose_search_finds_a_10_degree_rotation(rotated) -> None:
    cur, pri = rotated
    pose = search_pose(_to_work(cur.pixels, DEFAULT_PARAMS.WORK_SIZE), _to_work(pri.pixels, DEFAULT_PARAMS.WORK_SIZE))
    # the transform maps the current onto the prior: rotated back by +10 degrees
    assert abs(np.rad2deg(pose.angle_rad) - 10.0) <= 2.0, np.rad2deg(pose.angle_rad)


def test_rotated_10_degree_pair_registers(engine: RegistrationEngine, rotated) -> None:
    """From the centred start the MI stages stop short of the rotation (correlation 0.47 when written, at the
    edge of "could not be registered"); from the searched pose they reach it (0.745)."""
    cur, pri = rotated
    engine = _without_bspline(engine)  # the pose search alone
    al = engine.align(cur.pixels, pri.pixels)
    assert al.quality >= 0.65, al.quality
    r = engine.compare(cur.pixels, pri.pixels, _ctx(cur)).result
    assert r.not_compared is None, r.notes


def test_nonrigid_stage_explains_inspiration_and_roll(engine: RegistrationEngine, breathing) -> None:
    """The correlation over the lungs after registration rises with the B-spline stage beyond what the
    affine stage and the one-parameter diaphragm model reach (0.897 -> 0.932 when written)."""
    cur, pri = breathing
    affine = _without_bspline(engine).align(cur.pixels, pri.pixels).quality
    bent = engine.align(cur.pixels, pri.pixels).quality
    assert bent >= affine + 0.02, (affine, bent)


@pytest.mark.xfail(strict=True, reason="open (issue 28): registration is better (correlation 0.897 -> 0.932) but the "
                   "reader still calls two faint lower-zone changes (confidence 0.13-0.17) on this stable pair; "
                   "strict: it fails loudly once the invariant holds")
def test_stable_pair_with_12mm_inspiration_and_3_degree_roll_stays_stable(engine: RegistrationEngine,
                                                                          breathing) -> None:
    cur, pri = breathing
    r = engine.compare(cur.pixels, pri.pixels, _ctx(cur)).result
    assert r.not_compared is None, r.notes
    assert [f for f in r.findings if f.change in CHANGED] == [], r.findings


def _nodule_contrast(engine: RegistrationEngine, cur, pri, truth: np.ndarray) -> float:
    """The nodule's mean in the difference (current minus registered prior) over the lungs' noise sd."""
    al = engine.align(cur.pixels, pri.pixels)
    at = _to_work(truth.astype(np.float32), DEFAULT_PARAMS.WORK_SIZE) > 0.5
    d = ndi.gaussian_filter(al.cw - al.mapped, 1.0)
    lungs = al.roi & ~ndi.binary_dilation(at, iterations=4)
    sd = 1.4826 * float(np.median(np.abs(d[lungs] - np.median(d[lungs]))))
    return float((d[at].mean() - np.median(d[lungs])) / sd)


def test_new_nodule_survives_the_nonrigid_stage(engine: RegistrationEngine, new_nodule) -> None:
    cur, pri, truth = new_nodule
    assert truth.sum() > 20  # the generator drew a nodule
    z_affine = _nodule_contrast(_without_bspline(engine), cur, pri, truth)
    z_bent = _nodule_contrast(engine, cur, pri, truth)
    assert z_affine > 2.0, z_affine  # visible in the difference with the affine stage
    assert z_bent >= 0.8 * z_affine, (z_affine, z_bent)  # not registered away (the field is coarse)
