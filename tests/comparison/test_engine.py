from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from comparison import CompareContext, RegistrationEngine, load_image, synthetic
from priorwatch.vocabulary import Change, FindingType, Side, Zone

COMPARISON_WORDS = ("new", "increased", "decreased", "worsened", "improved", "resolved", "stable", "interval change detected")


def _run(spec: synthetic.PairSpec, interval: int | None = 30):
    cur = load_image(spec.current_paths[0]).pixels
    pri = load_image(spec.prior_paths[0]).pixels if spec.prior_paths else None
    return RegistrationEngine().compare(cur, pri, CompareContext(interval_days=interval))


def test_synthetic_files_are_valid_longitudinal_cr(demo: list[synthetic.PairSpec]) -> None:
    case = demo[0]
    cur = pydicom.dcmread(case.current_paths[0])
    pri = pydicom.dcmread(case.prior_paths[0])
    assert cur.PatientID == pri.PatientID == case.patient_id and cur.IssuerOfPatientID
    assert cur.StudyInstanceUID != pri.StudyInstanceUID and cur.SOPInstanceUID != pri.SOPInstanceUID
    assert cur.AccessionNumber == case.accession and pri.AccessionNumber != cur.AccessionNumber
    assert pri.StudyDate < cur.StudyDate
    assert (cur.Modality, cur.BodyPartExamined, cur.ViewPosition) == ("CR", "CHEST", "PA")
    assert cur.BitsStored == 15 and not cur.file_meta.TransferSyntaxUID.is_compressed
    assert cur.PatientSex and cur.PatientBirthDate
    assert not demo[3].prior_paths and demo[1].urgent and not demo[2].urgent


def test_stable_pair_with_pose_and_exposure_change_has_no_new_finding(demo: list[synthetic.PairSpec]) -> None:
    spec = demo[2]
    assert spec.lesion is None and abs(spec.nuisance.rotation_deg) + abs(spec.nuisance.gamma - 1) > 0
    out = _run(spec)
    r = out.result
    assert r.has_prior and not r.urgent
    assert not [f for f in r.findings if f.change in (Change.new, Change.worsened)], r.findings
    assert out.heatmap is not None and out.heatmap.dtype == np.uint8
    assert out.heatmap.shape == load_image(spec.current_paths[0]).shape


def test_new_right_upper_nodule_is_found_there(demo: list[synthetic.PairSpec]) -> None:
    spec = demo[0]
    out = _run(spec)
    hits = [f for f in out.result.findings if f.change == Change.new and f.finding in (FindingType.nodule, FindingType.mass)]
    assert hits, out.result.findings
    f = hits[0]
    assert (f.side, f.zone) == (Side.right, Zone.upper)
    assert f.evidence and f.evidence.side == Side.right and f.evidence.zone == Zone.upper and f.evidence.box
    r0, c0, r1, c1 = f.evidence.box
    assert c1 < out.heatmap.shape[1] / 2  # patient's right is image-left in PA
    assert 0 < f.confidence <= 1 and not out.result.urgent
    assert "nodule" in out.result.draft_text and "right upper" in out.result.draft_text
    assert out.result.draft_text.startswith("PRELIMINARY AI DRAFT")


def test_new_pneumothorax_is_urgent(demo: list[synthetic.PairSpec]) -> None:
    out = _run(demo[1], interval=3)
    ptx = [f for f in out.result.findings if f.finding == FindingType.pneumothorax]
    assert ptx and ptx[0].urgent and ptx[0].side == Side.left and ptx[0].change in (Change.new, Change.worsened)
    assert out.result.urgent and "URGENT" in out.result.draft_text


def test_no_prior_says_so_without_comparison_words(demo: list[synthetic.PairSpec]) -> None:
    out = _run(demo[3], interval=None)
    r = out.result
    assert not r.has_prior and not r.findings and not r.urgent and out.heatmap is None
    assert "no prior" in r.draft_text.lower()
    body = r.draft_text.lower().replace("no interval change is assessed", "")
    assert not any(w in body for w in COMPARISON_WORDS), r.draft_text
    assert r.engine == "registration" and r.engine_version == RegistrationEngine.ENGINE_VERSION


def test_new_large_effusion_is_urgent(pairs_dir: Path) -> None:
    spec = synthetic.make_pair(pairs_dir / "eff", "PW-T-EFF", FindingType.effusion, Change.new, Side.right, Zone.lower, seed=103)
    out = _run(spec)
    eff = [f for f in out.result.findings if f.finding == FindingType.effusion]
    assert eff and eff[0].side == Side.right and eff[0].zone == Zone.lower and eff[0].urgent


def test_bad_input_is_a_value_error() -> None:
    eng = RegistrationEngine()
    with pytest.raises(ValueError):
        eng.compare(np.zeros((4, 4), np.float32), None)
    with pytest.raises(ValueError):
        eng.compare(np.full((64, 64), np.nan, np.float32), None)
    with pytest.raises(ValueError):
        eng.compare(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32), None)


def test_the_same_pair_gives_the_same_registration_every_time() -> None:
    """A multi-core host's SimpleITK pool summed the seeded random MI samples in another order
    each run: the same study came back with a slightly other transform (a borderline finding
    in or out; seen on the independent dev pair used here). The engine holds SimpleITK to its
    own thread count."""
    import SimpleITK as sitk

    from benchmarks.change_engine import FULL_SIZE_LONG_SIDE, prepared_pair
    from benchmarks.cxrpairs import grid, make_pair

    pair = make_pair(grid("dev")[21], scale=1000 / FULL_SIZE_LONG_SIDE)
    cur, pri = (p.pixels for p in prepared_pair(pair))
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(4)  # as on a 4-core worker, whatever this machine has
    try:
        eng = RegistrationEngine()
        runs = [eng.align(cur, pri) for _ in range(3)]
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert all(np.array_equal(r.mapped, runs[0].mapped) and r.metric == runs[0].metric for r in runs[1:]), \
        [r.metric for r in runs]
