"""The cxrpairs labels say what the pixels show: side, zone, size, lesion physics, urgent rule.

Pairs are rendered with `identical_acquisition=True` (same geometry, exposure and noise in
both studies) so that the pixel difference is the labelled change and nothing else.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter

from benchmarks.cxrpairs import LARGE_EFFUSION_FRACTION, grid, is_urgent, make_pair
from benchmarks.cxrpairs.acquisition import Acquisition
from benchmarks.cxrpairs.generate import MAIN_FINDINGS, SPLIT_SEEDS
from benchmarks.cxrpairs.lesions import PLEURAL_LINE, PTX_EXTRA_AIR, Lesion, pneumothorax
from benchmarks.cxrpairs.phantom import PARENCHYMA, Patient, render_patient

SCALE = 0.2  # ~450 px matrices: seconds per pair, lesions still tens of pixels across


def _spec(finding: str, change: str, side: str, split: str = "dev"):
    for s in grid(split):
        if (s.finding, s.change, s.side) == (finding, change, side):
            return s
    raise LookupError((finding, change, side))


@lru_cache(maxsize=None)
def _pair(finding: str, change: str, side: str):
    return make_pair(_spec(finding, change, side), scale=SCALE, keep_truth=True, identical_acquisition=True)


def _stored_diff(pair) -> np.ndarray:
    a = pair.current.pixel_array.astype(np.float64)
    b = pair.prior.pixel_array.astype(np.float64)
    assert a.shape == b.shape
    return np.abs(a - b)


def _midline_col(lungs: np.ndarray) -> float:
    """Between the image-left lung's medial edge and the image-right lung's medial edge."""
    left_img = np.nonzero((lungs == 1).any(axis=0))[0]
    right_img = np.nonzero((lungs == 2).any(axis=0))[0]
    return (left_img.max() + right_img.min()) / 2


def _lung_rows(lungs: np.ndarray, side: str) -> tuple[int, int]:
    rows = np.nonzero((lungs == (1 if side == "right" else 2)).any(axis=1))[0]
    return int(rows[0]), int(rows[-1])


@pytest.mark.parametrize("finding,change", [("nodule", "new"), ("mass", "resolved"), ("consolidation", "new"),
                                            ("pneumothorax", "new"), ("effusion", "new")])
@pytest.mark.parametrize("side", ["right", "left"])
def test_lesion_changes_the_image_half_of_the_patients_side(finding: str, change: str, side: str) -> None:
    pair = _pair(finding, change, side)
    d = _stored_diff(pair)
    assert d.sum() > 0, "the lesion change left the pixels untouched"
    mid = _midline_col(pair.truth["current"]["lungs"])
    cols = np.arange(d.shape[1])[None, :]
    image_left_share = float(d[:, :].sum(axis=0)[cols[0] < mid].sum() / d.sum())
    # PA: the patient's right is on the IMAGE LEFT
    if side == "right":
        assert image_left_share > 0.95
    else:
        assert image_left_share < 0.05
    assert pair.labels[0].side == side


@pytest.mark.parametrize("finding", ["nodule", "mass", "consolidation"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_compact_lesion_zone_is_the_third_of_lung_height_holding_the_change(finding: str, side: str) -> None:
    change = "resolved" if finding == "mass" else "new"
    pair = _pair(finding, change, side)
    d = _stored_diff(pair)
    where = pair.truth["prior" if change == "resolved" else "current"]
    top, bottom = _lung_rows(where["lungs"], side)
    rows = np.arange(d.shape[0])
    centroid = float((d.sum(axis=1) * rows).sum() / d.sum())
    third = min(int(3 * (centroid - top) / (bottom - top)), 2)
    assert pair.labels[0].zone == ("upper", "middle", "lower")[third]


def test_nodule_size_in_mm_matches_its_pixels_and_pixel_spacing() -> None:
    pair = _pair("nodule", "new", "left")
    d = _stored_diff(pair)
    acq = pair.nuisance["current"]
    area_px = float((gaussian_filter(d, 1.0) > 0.3 * d.max()).sum())
    diameter_mm = 2 * np.sqrt(area_px / np.pi) * acq["spacing"] / acq["magnification"]
    label = pair.labels[0]
    assert label.finding == "nodule" and label.size_mm < 30
    assert diameter_mm == pytest.approx(label.size_mm, rel=0.3)


def test_pneumothorax_removes_lung_markings_and_nothing_else() -> None:
    scene = render_patient(Patient.sample(np.random.default_rng(11)), 0.8)
    delta, rim = pneumothorax(scene, Lesion("pneumothorax", "right", 35.0))
    inner_rim = binary_erosion(rim, iterations=2)  # away from the pleural line at its edge
    assert inner_rim.sum() > 300
    # there were vessel markings to lose, and the rim loses exactly them plus a little air:
    # bone and soft tissue (ribs, clavicle, chest wall) are outside the pleura and stay
    assert scene.markings[inner_rim].max() > 1.5 * PARENCHYMA
    assert np.abs(delta[inner_rim] + scene.markings[inner_rim] + PTX_EXTRA_AIR).max() < 0.01
    # a visceral pleural line: brighter than the rim on the lung side of its edge
    edge = rim & ~binary_erosion(rim, iterations=1)
    assert delta[binary_dilation(edge, iterations=2) & ~rim].max() > 0.5 * PLEURAL_LINE


def test_pneumothorax_rim_keeps_the_ribs_in_the_image() -> None:
    pair = _pair("pneumothorax", "new", "right")
    rim = pair.truth["current"]["region"]
    assert rim.sum() > 200
    cur, pri = pair.truth["current"]["density"], pair.truth["prior"]["density"]
    px = pair.nuisance["current"]["spacing"]

    def band(img: np.ndarray, lo_mm: float, hi_mm: float) -> np.ndarray:
        return gaussian_filter(img, lo_mm / px) - gaussian_filter(img, hi_mm / px)

    # rib-scale structure (~4-20 mm) inside the rim: the same ribs in both studies
    assert np.corrcoef(band(cur, 4.0, 20.0)[rim], band(pri, 4.0, 20.0)[rim])[0, 1] > 0.8
    # darker (air, no tissue), but by far less than the lung-to-mediastinum step
    step = float(pri[rim].mean() - cur[rim].mean())
    assert 0.0 < step < 0.15


def test_effusion_is_dependent_with_a_meniscus_rising_laterally() -> None:
    pair = _pair("effusion", "new", "right")
    d = pair.truth["current"]["density"] - pair.truth["prior"]["density"]
    lungs = pair.truth["current"]["lungs"]
    lung = lungs == 1  # the patient's right lung: image left
    top, bottom = _lung_rows(lungs, "right")
    opaque = (d > 0.1) & lung
    cols = np.nonzero(opaque.any(axis=0))[0]
    assert cols.size > 10
    first_row = {c: int(np.argmax(opaque[:, c])) for c in cols}
    lateral = [first_row[c] for c in cols[: max(len(cols) // 5, 1)]]  # image-left = lateral for the right lung
    medial = [first_row[c] for c in cols[-max(len(cols) // 5, 1):]]
    assert np.mean(lateral) < np.mean(medial)  # higher (smaller row) against the chest wall
    assert np.mean(np.nonzero(opaque)[0]) > top + 0.6 * (bottom - top)  # dependent: at the base


@pytest.mark.parametrize("finding,change,large,urgent", [
    ("pneumothorax", "new", False, True), ("pneumothorax", "worsened", False, True),
    ("pneumothorax", "improved", False, False), ("pneumothorax", "resolved", False, False),
    ("pneumothorax", "stable", False, False), ("effusion", "new", True, True), ("effusion", "new", False, False),
    ("effusion", "worsened", True, False), ("mass", "new", False, False), ("consolidation", "worsened", False, False),
])
def test_urgent_rule(finding: str, change: str, large: bool, urgent: bool) -> None:
    assert is_urgent(finding, change, large) is urgent


def test_new_effusions_are_urgent_exactly_when_large() -> None:
    seen = set()
    for side in ("right", "left"):
        for spec in [s for s in grid("dev") if (s.finding, s.change, s.side) == ("effusion", "new", side)]:
            pair = make_pair(spec, scale=0.12, keep_truth=True)
            lb = pair.labels[0]
            top, bottom = _lung_rows(pair.truth["current"]["lungs"], side)
            acq = pair.nuisance["current"]
            lung_mm = (bottom - top) * acq["spacing"] / acq["magnification"] / acq["inspiration"]
            ratio = lb.size_mm / lung_mm
            assert lb.urgent is (ratio >= LARGE_EFFUSION_FRACTION)
            assert abs(ratio - LARGE_EFFUSION_FRACTION) > 0.03  # never drawn at the cut
            seen.add(lb.urgent)
    assert seen == {True, False}


def test_pairs_are_deterministic_by_seed() -> None:
    spec = grid("heldout", 3)[2]
    a, b = make_pair(spec, scale=0.1), make_pair(spec, scale=0.1)
    assert a.current.PixelData == b.current.PixelData and a.prior.PixelData == b.prior.PixelData
    assert [lb.as_dict() for lb in a.labels] == [lb.as_dict() for lb in b.labels]


def test_grids_cover_every_finding_change_and_side_with_stable_and_normal_pairs() -> None:
    helds = [grid(name) for name in ("heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6", "heldout7", "heldout8", "heldout9")]
    seeds = [{s.seed for s in g} for g in (grid("dev"), *helds, grid("real"))]
    assert sum(map(len, seeds)) == len(set().union(*seeds))  # no pair shared between any two splits
    for g in (grid("dev"), *helds):
        combos = {(s.finding, s.change, s.side) for s in g if s.kind == "changed"}
        assert combos == {(f, c, sd) for f in MAIN_FINDINGS for c in ("new", "worsened", "improved", "resolved")
                          for sd in ("right", "left")}
        zones = {(s.finding, s.zone) for s in g if s.finding in ("nodule", "mass", "consolidation")}
        assert len(zones) == 9
        quiet = sum(s.kind in ("stable", "normal") for s in g)
        assert quiet / len(g) >= 0.2
    real = grid("real")
    assert all(s.background == "real" for s in real) and len(real) >= 24


def test_the_harness_scores_every_grid_of_the_generator() -> None:
    from benchmarks.change_engine import ALL_SPLITS, SPLITS

    assert set(SPLITS) == set(SPLIT_SEEDS) and set(ALL_SPLITS) <= set(SPLITS)


def test_study_nuisances_cover_monochrome1_voi_lut_bit_depths_and_pose() -> None:
    rng = np.random.default_rng(3)
    acqs = [Acquisition.sample(rng) for _ in range(600)]
    mono1 = np.mean([a.monochrome1 for a in acqs])
    assert 0.26 < mono1 < 0.41
    assert {a.bits for a in acqs} == {12, 13, 14, 15}
    assert 0.2 < np.mean([a.voi_lut for a in acqs]) < 0.4
    insp = np.array([a.inspiration for a in acqs])
    assert insp.min() < 0.93 and insp.max() > 1.07
    assert max(abs(a.rotation_deg) for a in acqs) > 3


def test_dicom_headers_of_a_pair() -> None:
    pair = _pair("nodule", "new", "right")
    for ds in (pair.prior, pair.current):
        assert ds.ViewPosition == "PA" and ds.Modality in ("CR", "DX")
        assert 12 <= ds.BitsStored <= 15 and ds.HighBit == ds.BitsStored - 1
        assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert float((ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))[0]) > 0
        assert ds.pixel_array.max() <= 2**ds.BitsStored - 1
        assert "WindowCenter" in ds and "WindowWidth" in ds
