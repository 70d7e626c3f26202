"""measure_at on drawn arrays: each finding's size in mm at a box, absent (0.0) where nothing is
drawn, None where the place cannot be assessed (issue 29)."""

from __future__ import annotations

import numpy as np
import pytest

from comparison.measure import measure_at

SPACING = 0.5  # mm per pixel
BG = 0.35  # aerated lung
SIZE = 200


def _lung(seed: int = 0) -> np.ndarray:
    return (BG + np.random.default_rng(seed).normal(0, 0.004, (SIZE, SIZE))).astype(np.float32)


def _disk(img: np.ndarray, cy: int, cx: int, r: float, value: float = 0.25) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = img.copy()
    out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += value
    return out


def _fluid(img: np.ndarray, top: int, value: float = 0.3) -> np.ndarray:
    out = img.copy()
    out[top:, :] += value  # fills the rows from `top` down: a meniscus seen flat
    return out


def _rim(img: np.ndarray, depth: int, value: float = 0.2) -> np.ndarray:
    out = img.copy()
    out[40:160, 200 - depth:] -= value  # lucent air along the lateral wall (image right edge)
    return out


def _patch(img: np.ndarray, r0: int, c0: int, h: int, w: int, value: float = 0.2) -> np.ndarray:
    out = img.copy()
    out[r0:r0 + h, c0:c0 + w] += value
    return out


def _rib(img: np.ndarray, row: int, width: int, value: float = 0.15, angle_deg: float = 20.0) -> np.ndarray:
    """A band (a rib, a vessel) across the whole image through (row, centre) at `angle_deg`."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    a = np.deg2rad(angle_deg)
    dist = np.abs((yy - row) * np.cos(a) - (xx - SIZE / 2) * np.sin(a))
    return img + np.where(dist <= width / 2, value, 0.0).astype(np.float32)


def _sphere(img: np.ndarray, cy: int, cx: int, r: float, peak: float = 0.2) -> np.ndarray:
    """A sphere in projection: its thickness sqrt(1 - (d/r)^2) of the centre's (a nodule on a radiograph)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r)
    return img + (peak * np.sqrt(np.clip(1 - d2, 0, None))).astype(np.float32)


def _slope(img: np.ndarray, rise: float = 0.3) -> np.ndarray:
    """A background rising across the image (towards the chest wall or the heart)."""
    return img + np.linspace(0.0, rise, SIZE, dtype=np.float32)[None, :]


# (name, image, box, finding, expected mm, tolerance mm)
CASES = [
    ("nodule 10 mm", _disk(_lung(), 100, 100, 10), (85, 85, 115, 115), "nodule", 10.0, 1.0),
    ("nodule 20 mm", _disk(_lung(), 100, 100, 20), (75, 75, 125, 125), "nodule", 20.0, 1.0),
    ("mass 40 mm", _disk(_lung(), 100, 100, 40), (55, 55, 145, 145), "mass", 40.0, 1.5),
    ("no nodule there", _lung(), (85, 85, 115, 115), "nodule", 0.0, 0.0),
    ("nodule elsewhere", _disk(_lung(), 30, 30, 10), (140, 140, 170, 170), "nodule", 0.0, 0.0),
    ("effusion 30 mm", _fluid(_lung(), 140), (100, 20, 200, 180), "effusion", 30.0, 1.0),
    ("effusion 10 mm", _fluid(_lung(), 180), (100, 20, 200, 180), "effusion", 10.0, 1.0),
    ("no effusion", _lung(), (100, 20, 200, 180), "effusion", 0.0, 0.0),
    ("pneumothorax rim 6 mm", _rim(_lung(), 12), (30, 150, 170, 200), "pneumothorax", 6.0, 1.0),
    ("pneumothorax rim 15 mm", _rim(_lung(), 30), (30, 130, 170, 200), "pneumothorax", 15.0, 1.5),
    ("no pneumothorax", _lung(), (30, 150, 170, 200), "pneumothorax", 0.0, 0.0),
    # the lesion itself, not what lies under it (issue 29: sizes swung 55 -> 156 -> 181 mm on a stable 9 mm nodule)
    ("nodule 10 mm on a rib", _disk(_rib(_lung(), 100, 16), 100, 100, 10, 0.1), (85, 85, 115, 115), "nodule", 10.0, 1.5),
    ("a rib through the place, no nodule", _rib(_lung(), 100, 16), (85, 85, 115, 115), "nodule", 0.0, 0.0),
    ("a vessel through the place, no nodule", _rib(_lung(), 100, 4, 0.1, 70), (85, 85, 115, 115), "nodule", 0.0, 0.0),
    ("sphere 16 mm in projection", _sphere(_lung(), 100, 100, 16), (80, 80, 120, 120), "nodule", 16.0, 1.6),
    # a known limit: lines that start inside the sphere and run on along the rib keep part of it in the background;
    # grown again over the filled-in image it reads 13.6 mm (15 % short; 11.4 mm without), not within 10 %
    pytest.param("sphere 16 mm on a rib", _sphere(_rib(_lung(), 96, 14, 0.12, -25), 100, 100, 16), (80, 80, 120, 120),
                 "nodule", 16.0, 1.6, marks=pytest.mark.xfail(strict=True, reason="a lesion's edge along a rib")),
    ("nodule 10 mm on a rising background", _disk(_slope(_lung()), 100, 100, 10, 0.1), (85, 85, 115, 115), "nodule",
     10.0, 1.0),
    ("no nodule on a rising background", _slope(_lung()), (85, 85, 115, 115), "nodule", 0.0, 0.0),
    ("consolidation 30 mm", _patch(_lung(), 80, 70, 30, 60), (70, 60, 120, 140), "consolidation", 30.0, 1.5),
]


@pytest.mark.parametrize("name,image,box,finding,expected,tol", CASES,
                         ids=[c.values[0] if hasattr(c, "marks") else c[0] for c in CASES])
def test_size_at_box(name: str, image: np.ndarray, box: tuple[int, int, int, int], finding: str,
                     expected: float, tol: float) -> None:
    got = measure_at(image, box, SPACING, finding)
    assert got is not None
    assert abs(got - expected) <= tol, f"{name}: {got} mm, expected {expected} ± {tol}"


def test_size_scales_with_pixel_spacing() -> None:
    img = _disk(_lung(), 100, 100, 10)
    assert measure_at(img, (85, 85, 115, 115), 1.0, "nodule") == pytest.approx(
        2 * measure_at(img, (85, 85, 115, 115), 0.5, "nodule"), rel=0.02)  # type: ignore[operator]


NOT_ASSESSABLE = [
    ("box outside the image", _lung(), (300, 300, 320, 320), "nodule", SPACING),
    ("no size for cardiomegaly", _lung(), (50, 50, 150, 150), "cardiomegaly", SPACING),
    ("no size for a device", _lung(), (50, 50, 150, 150), "support_device", SPACING),
    ("effusion box at the image top: no lung above it", _fluid(_lung(), 0), (0, 0, 40, 200), "effusion", SPACING),
    ("box covering the whole image: no surroundings", _lung(), (0, 0, 200, 200), "nodule", SPACING),
    ("spacing unknown", _disk(_lung(), 100, 100, 10), (85, 85, 115, 115), "nodule", 0.0),
]


@pytest.mark.parametrize("name,image,box,finding,spacing", NOT_ASSESSABLE, ids=[c[0] for c in NOT_ASSESSABLE])
def test_not_assessable(name: str, image: np.ndarray, box: tuple[int, int, int, int], finding: str,
                        spacing: float) -> None:
    assert measure_at(image, box, spacing, finding) is None


def test_unknown_finding_word_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tumour"):
        measure_at(_lung(), (10, 10, 20, 20), SPACING, "tumour")


def test_a_region_running_on_beyond_the_box_is_measured_inside_it() -> None:
    """What is measured at a box is inside it: an opacity that runs on past the box (into the mediastinum or the
    chest wall, on a real image) reads no longer than the box (the dev series read consolidations of 250-445 mm).
    Fails without the clip: 12.5 mm."""
    img = _disk(_lung(), 112, 112, 12)  # 12 mm across; the box holds its upper-left part, 7.5 mm of it each way
    assert measure_at(img, (85, 85, 115, 115), SPACING, "consolidation") == pytest.approx(7.5, abs=1.0)


def test_a_sphere_along_a_rib_within_the_issues_20_percent() -> None:
    """A lesion whose edge runs along a rib: grown again over the image filled in under it (the rib carried across),
    it reads within the issue's 20 % (13.6 of 16 mm; 11.4 mm, 29 % short, with the line openings alone)."""
    img = _sphere(_rib(_lung(), 96, 14, 0.12, -25), 100, 100, 16)
    got = measure_at(img, (80, 80, 120, 120), SPACING, "nodule")
    assert got is not None
    assert abs(got - 16.0) <= 0.2 * 16.0
