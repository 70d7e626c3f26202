"""Issue 28 item 4: refuse or correct where a comparison would be unsafe.

Each case is a generated pair (`comparison.synthetic`) sent through the real preparation
(`load_image`, which reads PatientOrientation / ViewPosition) and the real registration engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from comparison import CompareContext, RegistrationEngine, load_image, synthetic
from comparison.draft import DRAFT_HEADER
from comparison.preprocess import PreparedImage
from priorwatch.vocabulary import APPEARING, Change, ComparisonResult, FindingType, Side, Zone


@pytest.fixture(scope="module")
def engine() -> RegistrationEngine:
    return RegistrationEngine()


def _restore(path: Path, out: Path, *, mirror: bool = False, orientation: list[str] | None = None,
             view: str | None = None, drop_orientation: bool = False) -> Path:
    """A copy of the DICOM file with its pixels mirrored (columns) and its tags set as given."""
    ds = pydicom.dcmread(path)
    if mirror:
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
    if orientation is not None:
        ds.PatientOrientation = orientation
    if drop_orientation:
        del ds.PatientOrientation
    if view is not None:
        ds.ViewPosition = view
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out)
    return out


def _compare(engine: RegistrationEngine, cur_path: Path, prior_path: Path) -> tuple[ComparisonResult, PreparedImage, PreparedImage]:
    """What the pipeline does: prepare both images, tell the engine their views and orientation."""
    cur, pri = load_image(cur_path), load_image(prior_path)
    ctx = CompareContext(interval_days=3, pixel_spacing_mm=cur.spacing_mm, current_view=cur.comparison_view,
                         prior_view=pri.comparison_view,
                         orientation_known=cur.orientation_known and pri.orientation_known)
    return engine.compare(cur.pixels, pri.pixels, ctx).result, cur, pri


def _urgent_ptx(r: ComparisonResult) -> list:
    return [f for f in r.findings if f.finding == FindingType.pneumothorax and f.urgent and f.change in APPEARING]


@pytest.fixture(scope="module")
def left_ptx(tmp_path_factory: pytest.TempPathFactory) -> synthetic.PairSpec:
    """A new (urgent) left pneumothorax, both images stored in the standard display (L\\F)."""
    return synthetic.make_pair(tmp_path_factory.mktemp("ptx"), "PW-S-PTX", FindingType.pneumothorax, Change.new,
                               Side.left, Zone.upper, seed=22, interval_days=3)


def test_both_mirrored_with_orientation_reports_the_patients_side(engine: RegistrationEngine, tmp_path: Path,
                                                                  left_ptx: synthetic.PairSpec) -> None:
    cur = _restore(left_ptx.current_paths[0], tmp_path / "c.dcm", mirror=True, orientation=["R", "F"])
    pri = _restore(left_ptx.prior_paths[0], tmp_path / "p.dcm", mirror=True, orientation=["R", "F"])
    r, c, p = _compare(engine, cur, pri)
    assert c.flipped == (True, False) and p.flipped == (True, False) and c.orientation_known
    hits = _urgent_ptx(r)
    assert [f.side for f in hits] == [Side.left], r.findings
    assert not [f for f in r.findings if f.side == Side.right and f.change in APPEARING], r.findings


def test_current_alone_mirrored_with_orientation_is_registered_and_sided(engine: RegistrationEngine, tmp_path: Path,
                                                                         left_ptx: synthetic.PairSpec) -> None:
    cur = _restore(left_ptx.current_paths[0], tmp_path / "c.dcm", mirror=True, orientation=["R", "F"])
    r, _, _ = _compare(engine, cur, left_ptx.prior_paths[0])
    assert r.not_compared is None, r.notes
    assert [f.side for f in _urgent_ptx(r)] == [Side.left], r.findings


def test_absent_orientation_is_compared_with_a_note_and_lower_confidence(engine: RegistrationEngine, tmp_path: Path,
                                                                         left_ptx: synthetic.PairSpec) -> None:
    known, _, _ = _compare(engine, left_ptx.current_paths[0], left_ptx.prior_paths[0])
    cur = _restore(left_ptx.current_paths[0], tmp_path / "c.dcm", drop_orientation=True)
    r, c, _ = _compare(engine, cur, left_ptx.prior_paths[0])
    assert not c.orientation_known and r.not_compared is None
    assert any("PatientOrientation" in n for n in r.notes) and "PatientOrientation" in r.draft_text
    assert [f.side for f in _urgent_ptx(r)] == [Side.left]
    assert _urgent_ptx(r)[0].confidence < _urgent_ptx(known)[0].confidence


@pytest.mark.parametrize("view,orientation,kind", [("LL", None, "lateral"), ("RAO", None, "oblique"),
                                                   (None, ["P", "F"], "lateral")])
def test_lateral_or_oblique_is_not_compared(engine: RegistrationEngine, tmp_path: Path, left_ptx: synthetic.PairSpec,
                                            view: str | None, orientation: list[str] | None, kind: str) -> None:
    """A lateral by ViewPosition, an oblique, or a lateral only the orientation tells (rows run front to back)."""
    ds = pydicom.dcmread(left_ptx.current_paths[0])
    if view is None:
        del ds.ViewPosition
    ds.save_as(tmp_path / "base.dcm")
    cur = _restore(tmp_path / "base.dcm", tmp_path / "c.dcm", view=view, orientation=orientation)
    pri = _restore(left_ptx.prior_paths[0], tmp_path / "p.dcm", view=view, orientation=orientation)
    r, _, _ = _compare(engine, cur, pri)
    assert r.has_prior and not r.findings and not r.urgent
    assert f"is a {kind} view" in str(r.not_compared), r.notes
    assert r.draft_text.startswith(DRAFT_HEADER) and "Not compared" in r.draft_text


def test_a_prior_of_another_person_is_flagged_for_an_identity_check(engine: RegistrationEngine, tmp_path: Path) -> None:
    """Engine 0.4.10: the anatomy match warns (note, lower confidence) instead of refusing: on independent
    generators the refusal lost one person's comparisons far more often than it caught another person
    (`thresholds.SAME_PERSON_REFUSES`). Identity proper is PatientID/issuer, name and birth date."""
    spec = synthetic.make_pair(tmp_path, "PW-S-OTHER", FindingType.mass, Change.stable, Side.right, Zone.middle,
                               seed=41, prior_person=1)
    doubted, _, _ = _compare(engine, spec.current_paths[0], spec.prior_paths[0])
    same = synthetic.make_pair(tmp_path, "PW-S-SAME", FindingType.mass, Change.stable, Side.right, Zone.middle, seed=41)
    trusted, _, _ = _compare(engine, same.current_paths[0], same.prior_paths[0])
    assert doubted.not_compared is None
    assert any("does not line up" in n and "check that it is" in n for n in doubted.notes), doubted.notes
    assert not any("does not line up" in n for n in trusted.notes), trusted.notes


def test_devices_added_without_disease_change_give_no_disease_finding(engine: RegistrationEngine,
                                                                       tmp_path: Path) -> None:
    spec = synthetic.make_pair(tmp_path, "PW-S-DEV", None, Change.stable, Side.right, Zone.upper, seed=51,
                               current_device=True)
    r, _, _ = _compare(engine, spec.current_paths[0], spec.prior_paths[0])
    assert [f.finding for f in r.findings] == [FindingType.support_device], r.findings
    assert r.findings[0].change == Change.new and not r.urgent


def test_ap_current_against_pa_prior_is_compared_with_a_note(engine: RegistrationEngine, tmp_path: Path,
                                                              left_ptx: synthetic.PairSpec) -> None:
    pa, _, _ = _compare(engine, left_ptx.current_paths[0], left_ptx.prior_paths[0])
    cur = _restore(left_ptx.current_paths[0], tmp_path / "c.dcm", view="AP")
    r, _, _ = _compare(engine, cur, left_ptx.prior_paths[0])
    assert r.not_compared is None, r.notes
    assert any("AP" in n and "magnifies" in n for n in r.notes)
    assert [f.side for f in _urgent_ptx(r)] == [Side.left] and r.urgent
    assert _urgent_ptx(r)[0].confidence < _urgent_ptx(pa)[0].confidence


@pytest.mark.parametrize("degrees", [8.0, -12.0])
def test_a_rotated_current_is_compared_and_the_change_found(engine: RegistrationEngine, tmp_path: Path,
                                                            degrees: float) -> None:
    spec = synthetic.make_pair(tmp_path, "PW-S-ROT", FindingType.pneumothorax, Change.new, Side.right, Zone.upper,
                               seed=61, nuisance=synthetic.Nuisance(rotation_deg=degrees, noise_sd=120.0))
    r, _, _ = _compare(engine, spec.current_paths[0], spec.prior_paths[0])
    assert r.not_compared is None, r.notes
    assert [f.side for f in _urgent_ptx(r)] == [Side.right], r.findings


def test_orientation_tags_bring_pixels_to_the_standard_display(tmp_path: Path, left_ptx: synthetic.PairSpec) -> None:
    ref = load_image(left_ptx.current_paths[0]).pixels
    ds = pydicom.dcmread(left_ptx.current_paths[0])
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1, ::-1]).tobytes()
    ds.PatientOrientation = ["R", "H"]
    ds.save_as(tmp_path / "rh.dcm")
    img = load_image(tmp_path / "rh.dcm")
    assert img.flipped == (True, True) and img.orientation == "R\\H"
    assert np.allclose(img.pixels, ref, atol=1e-5)
    assert any("flipped" in n for n in img.notes)
