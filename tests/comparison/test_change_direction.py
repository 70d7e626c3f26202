"""Change direction and typing from evidence in both images (each pair is a known former failure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comparison import CompareContext, RegistrationEngine, load_image, synthetic
from priorwatch.vocabulary import Change, FindingType, Side, Zone


def _compare(spec: synthetic.PairSpec):
    cur = load_image(spec.current_paths[0])
    pri = load_image(spec.prior_paths[0]).pixels
    return RegistrationEngine().compare(cur.pixels, pri, CompareContext(interval_days=30, pixel_spacing_mm=cur.spacing_mm)).result


def _of(result, finding: FindingType):
    return [f for f in result.findings if f.finding == finding and f.change != Change.stable]


@pytest.mark.parametrize(
    "lesion,change,side,zone,seed",
    [
        (FindingType.effusion, Change.worsened, Side.right, Zone.lower, 1016),
        (FindingType.pneumothorax, Change.worsened, Side.right, Zone.upper, 1021),
    ],
)
def test_enlarging_lesion_already_on_the_prior_is_worsened_not_new(pairs_dir: Path, lesion, change, side, zone, seed) -> None:
    spec = synthetic.make_pair(pairs_dir / "dir", f"PW-W-{seed}", lesion, change, side, zone, seed=seed)
    r = _compare(spec)
    hits = _of(r, lesion)
    assert hits and all(f.change == Change.worsened for f in hits), r.findings
    assert hits[0].side == side
    if lesion == FindingType.pneumothorax:
        assert hits[0].urgent and r.urgent  # an enlarging pneumothorax is urgent


@pytest.mark.parametrize(
    "lesion,change,side,zone,seed",
    [
        (FindingType.effusion, Change.improved, Side.left, Zone.lower, 1018),
        (FindingType.pneumothorax, Change.improved, Side.right, Zone.upper, 1023),
        (FindingType.mass, Change.improved, Side.right, Zone.middle, 1008),
    ],
)
def test_shrinking_lesion_still_on_the_current_is_improved_not_resolved(pairs_dir: Path, lesion, change, side, zone, seed) -> None:
    spec = synthetic.make_pair(pairs_dir / "dir", f"PW-I-{seed}", lesion, change, side, zone, seed=seed)
    r = _compare(spec)
    hits = _of(r, lesion)
    assert hits and hits[0].change == Change.improved, r.findings
    assert not [f for f in r.findings if f.change == Change.resolved], r.findings
    assert not r.urgent


def test_no_resolved_opacity_inside_a_new_pneumothorax(demo: list[synthetic.PairSpec]) -> None:
    spec = demo[1]  # new left pneumothorax: the lucency removes lung markings
    r = _compare(spec)
    ptx = _of(r, FindingType.pneumothorax)
    assert ptx and ptx[0].change == Change.new and ptx[0].side == Side.left and ptx[0].urgent
    decreases = [f for f in r.findings if f.change in (Change.resolved, Change.improved)]
    assert not decreases, r.findings
    assert len(ptx) == 1  # one pneumothorax per side


def test_resolved_lesion_gone_from_the_current_is_resolved(pairs_dir: Path) -> None:
    spec = synthetic.make_pair(pairs_dir / "dir", "PW-R-1019", FindingType.effusion, Change.resolved, Side.right, Zone.lower, seed=1019)
    r = _compare(spec)
    hits = _of(r, FindingType.effusion)
    assert hits and hits[0].change == Change.resolved, r.findings


def test_patchy_consolidation_is_not_typed_as_nodule_or_mass(pairs_dir: Path) -> None:
    spec = synthetic.make_pair(pairs_dir / "dir", "PW-C-1010", FindingType.consolidation, Change.new, Side.right, Zone.upper, seed=1010)
    r = _compare(spec)
    assert r.findings and r.findings[0].finding == FindingType.consolidation, r.findings
    assert r.findings[0].change == Change.new


@pytest.mark.parametrize("matrix", [0.78, 1.22])
def test_stable_pair_on_a_different_matrix_stays_stable(pairs_dir: Path, matrix: float) -> None:
    spec = synthetic.make_pair(pairs_dir / "mx", f"PW-MX-{matrix}", None, Change.stable, Side.right, Zone.middle, seed=33, matrix=matrix)
    import pydicom

    cur, pri = pydicom.dcmread(spec.current_paths[0]), pydicom.dcmread(spec.prior_paths[0])
    assert (cur.Rows, cur.Columns) != (pri.Rows, pri.Columns)
    assert float(cur.PixelSpacing[0]) == pytest.approx(float(pri.PixelSpacing[0]) / matrix, rel=0.01)
    r = _compare(spec)
    assert not [f for f in r.findings if f.change != Change.stable], r.findings
    assert not r.urgent


def test_confidence_is_calibrated_and_raw_mode_differs(demo: list[synthetic.PairSpec]) -> None:
    from comparison import calibration

    spec = demo[0]
    cur, pri = load_image(spec.current_paths[0]).pixels, load_image(spec.prior_paths[0]).pixels
    # the Platt map belongs to the sign rules; the reader's confidence is not remapped (issue 11)
    cal = RegistrationEngine(use_reader=False).compare(cur, pri).result.findings
    raw = RegistrationEngine(calibrated=False, use_reader=False).compare(cur, pri).result.findings
    assert cal and raw and len(cal) == len(raw)
    assert cal[0].confidence == pytest.approx(float(calibration.calibrate(raw[0].confidence)), abs=1e-6)
    assert np.all([calibration.CONF_MIN <= f.confidence <= calibration.CONF_MAX for f in cal])
