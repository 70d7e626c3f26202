"""Table tests of `comparison.signs`: small arrays drawn here (a disc, a lucent rim without lung
markings, a meniscus, a fuzzy patch with air bronchi), the measured signs out (issue 28 item 6).

The drawing is this file's own (two elliptical lungs with a smoothed random "vessel" texture and
independent noise on each image), not a generator's, so each row checks a measurement, not a
look. Each row names the sign it checks and the bound that a region without that sign fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage as ndi

from comparison._anatomy import LungFields
from comparison.signs import RegionSigns, locate, measure, texture_map, texture_signs
from priorwatch.vocabulary import Side

H = W = 160
SPACING_MM = 1.5  # mm per working-grid pixel (a 43 cm film on the 256 px working grid is ~1.7)
NOISE = 0.004


@dataclass
class Chest:
    """A drawn pair: the prior, the current, both lungs, the changed region's mask and its sign."""

    prior: np.ndarray
    cur: np.ndarray
    lungs: LungFields
    mask: np.ndarray
    sign: int


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _base(seed: int) -> tuple[np.ndarray, LungFields]:
    """Two lungs (dark, textured) in a denser body; patient's right lung on the image's left."""
    rng = np.random.default_rng(seed)
    right, left = _ellipse(82, 44, 62, 30), _ellipse(82, 116, 62, 30)
    vessels = ndi.gaussian_filter(rng.normal(size=(H, W)), 1.2)
    img = np.full((H, W), 0.7, np.float32)
    img[right | left] = 0.3
    img = ndi.gaussian_filter(img, 1.0) + 0.03 * vessels / vessels.std() * (right | left)
    return img.astype(np.float32), LungFields(right=right, left=left, midline=80.0, template=False)


def _noisy(img: np.ndarray, seed: int) -> np.ndarray:
    return (img + np.random.default_rng(seed).normal(0.0, NOISE, img.shape)).astype(np.float32)


def _disc(radius: float, side: Side = Side.right, cy: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    cx = 44.0 if side == Side.right else 116.0
    yy, xx = np.mgrid[:H, :W]
    dome = np.sqrt(np.clip(1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2, 0.0, None))  # a sphere's path length
    return _ellipse(cy, cx, radius, radius), ndi.gaussian_filter(dome.astype(np.float32), 0.8)


def _new_opacity(profile: np.ndarray, mask: np.ndarray, density: float = 0.12, seed: int = 1) -> Chest:
    base, lungs = _base(seed)
    return Chest(prior=_noisy(base, 10), cur=_noisy(base + density * profile, 11), lungs=lungs, mask=mask, sign=1)


def _lucent_rim(side: Side, seed: int = 2, line: bool = True) -> Chest:
    """Air against the apex and lateral chest wall: darker, without the lung's vessel texture, with
    a thin dense visceral pleural line along its medial border (when `line`)."""
    base, lungs = _base(seed)
    lung = lungs.mask(side)
    inner = ndi.binary_erosion(lung, iterations=15)
    rim = lung & ~inner
    rim[95:] = False
    cur = base.copy()
    cur[rim] = 0.22  # air: flat (no vessels), darker than lung
    if line:
        pleura = ndi.binary_dilation(rim, iterations=1) & inner
        cur[pleura] += 0.05
    return Chest(prior=_noisy(base, 20), cur=_noisy(cur, 21), lungs=lungs, mask=rim, sign=-1)


def _meniscus(side: Side, height: float, seed: int = 3) -> Chest:
    """Dependent fluid at one lung's base whose upper border climbs the chest wall laterally."""
    base, lungs = _base(seed)
    lung = lungs.mask(side)
    rows = np.nonzero(lung.any(axis=1))[0]
    top, bottom = rows[0], rows[-1]
    cols = np.nonzero(lung.any(axis=0))[0]
    c0, c1 = cols[0], cols[-1]
    yy, xx = np.mgrid[:H, :W]
    medial = (xx - c0) / (c1 - c0) if side == Side.right else (c1 - xx) / (c1 - c0)  # 1 at the medial edge
    level = bottom - height * (bottom - top) * (1.0 - 0.5 * np.clip(medial, 0, 1))  # higher laterally
    fluid = lung & (yy >= level)
    cur = base + 0.15 * ndi.gaussian_filter(fluid.astype(np.float32), 1.0)
    return Chest(prior=_noisy(base, 30), cur=_noisy(cur, 31), lungs=lungs, mask=fluid, sign=1)


def _fuzzy_patch(seed: int = 4) -> Chest:
    """Airspace opacity: an irregular, ill-defined patch (two lobes blurred over ~5 px) crossed by
    thin lucent branches (air bronchi)."""
    base, lungs = _base(seed)
    patch = (_ellipse(60, 44, 16, 12) | _ellipse(72, 36, 10, 14)) & lungs.right
    soft = ndi.gaussian_filter(patch.astype(np.float32), 4.0)
    bronchi = np.zeros((H, W), bool)
    bronchi[50:80, 42] = True
    bronchi[66, 30:46] = True
    bronchi[58:60, 36:44] = True
    cur = base + 0.14 * soft - 0.06 * ndi.binary_dilation(bronchi) * (soft > 0.3)
    return Chest(prior=_noisy(base, 40), cur=_noisy(cur, 41), lungs=lungs, mask=soft > 0.25, sign=1)


def _resolved_disc(seed: int = 5) -> Chest:
    """A disc on the prior that is gone now: more lucent now, where the prior showed an opacity."""
    m, prof = _disc(8.0, Side.left, cy=75.0)
    base, lungs = _base(seed)
    return Chest(prior=_noisy(base + 0.12 * prof, 50), cur=_noisy(base, 51), lungs=lungs, mask=m, sign=-1)


def signs_of(ch: Chest) -> tuple[RegionSigns, int, float, int]:
    """The chest's region measured as the engine measures it: (signs, area, z, lung height)."""
    roi = ch.lungs.both
    sd = (ndi.gaussian_filter(ch.cur, 1.0) - ndi.gaussian_filter(ch.prior, 1.0)) * ch.sign
    sigma = float(np.std(ch.cur[roi] - ch.prior[roi] - np.median(ch.cur[roi] - ch.prior[roi])))
    sigma = max(NOISE * np.sqrt(2) * 0.8, min(sigma, 3 * NOISE))  # the lungs' noise, not the lesion
    at = locate(ch.mask & roi, ch.lungs, roi)
    assert at is not None
    s = measure(ch.sign, float(sd[at.m].mean() / sigma), at, ch.cur, ch.prior, ch.lungs, sigma, SPACING_MM, sd)
    texture_signs(s, at, texture_map(ch.cur, roi), texture_map(ch.prior, roi), ch.cur, ch.prior, sigma)
    return s, at.area, float(sd[at.m].mean() / sigma), at.lung_h


CHESTS = {
    "nodule 24 mm": lambda: _new_opacity(*_disc(8.0)[::-1], seed=1),
    "mass 48 mm": lambda: _new_opacity(*_disc(16.0, cy=80.0)[::-1], seed=6),
    "lucent rim, left": lambda: _lucent_rim(Side.left),
    "lucent rim, right, no line": lambda: _lucent_rim(Side.right, line=False),
    "meniscus, right, large": lambda: _meniscus(Side.right, 0.3),
    "meniscus, left, small": lambda: _meniscus(Side.left, 0.12),
    "fuzzy patch": _fuzzy_patch,
    "resolved disc": _resolved_disc,
}


@pytest.fixture(scope="module")
def measured() -> dict[str, tuple[RegionSigns, int, float, int]]:
    return {name: signs_of(make()) for name, make in CHESTS.items()}


# (chest, measured sign, lowest, highest): each row one sign of one drawing; None = unbounded
RANGES = [
    ("nodule 24 mm", "solidity", 0.85, None),
    ("nodule 24 mm", "diam_mm", 20.0, 30.0),
    ("nodule 24 mm", "margin", 0.4, None),  # a well-defined edge
    ("nodule 24 mm", "bronchogram", None, 0.005),  # solid
    ("nodule 24 mm", "p_core", None, 3.0),  # the prior showed no opacity there
    ("mass 48 mm", "diam_mm", 40.0, 56.0),
    ("mass 48 mm", "solidity", 0.85, None),
    ("lucent rim, left", "pleural_line", 3.0, None),
    ("lucent rim, left", "vessel_ratio", None, 0.5),  # no vessels in the lucent region now
    ("lucent rim, right, no line", "vessel_ratio", None, 0.5),
    ("nodule 24 mm", "vessel_ratio", 0.7, None),
    ("resolved disc", "vessel_ratio", 0.7, None),
    ("meniscus, right, large", "height_mm", 45.0, None),
    ("meniscus, left, small", "height_mm", None, 30.0),
    ("lucent rim, left", "c_sym", None, -2.0),  # darker than the other lung there now
    ("lucent rim, left", "p_sym", -2.0, 2.0),  # and the prior was the patient's normal lung
    ("lucent rim, right, no line", "pleural_line", None, 2.0),
    ("meniscus, right, large", "meniscus", 0.05, None),  # its top climbs the chest wall
    ("meniscus, left, small", "meniscus", 0.02, None),
    ("nodule 24 mm", "meniscus", -0.02, 0.02),  # a disc's top is level
    ("fuzzy patch", "margin", None, 0.3),  # ill-defined
    ("fuzzy patch", "bronchogram", 0.01, None),  # air bronchi inside
    ("resolved disc", "p_core", 3.0, None),  # the prior showed an opacity there
]

# (chest, measured yes/no sign, expected)
FLAGS = [
    ("nodule 24 mm", "basal", False),
    ("nodule 24 mm", "cp_angle", False),
    ("lucent rim, left", "peripheral", True),
    ("lucent rim, left", "apical", True),
    ("lucent rim, left", "touches", True),
    ("meniscus, right, large", "basal", True),
    ("meniscus, right, large", "cp_angle", True),
    ("meniscus, left, small", "basal", True),
    ("meniscus, left, small", "cp_angle", True),
    ("fuzzy patch", "basal", False),
]


@pytest.mark.parametrize("chest,attr,low,high", RANGES, ids=[f"{r[0]}:{r[1]}" for r in RANGES])
def test_sign_measured_in_range(measured, chest: str, attr: str, low: float | None, high: float | None) -> None:
    value = float(getattr(measured[chest][0], attr))
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    assert lo <= value <= hi, f"{chest}: {attr} = {value:.3f}, want [{lo}, {hi}]"


@pytest.mark.parametrize("chest,attr,want", FLAGS, ids=[f"{r[0]}:{r[1]}" for r in FLAGS])
def test_sign_present_or_absent(measured, chest: str, attr: str, want: bool) -> None:
    assert bool(getattr(measured[chest][0], attr)) is want, f"{chest}: {attr} = {getattr(measured[chest][0], attr)}"


def test_meniscus_height_orders_large_and_small(measured) -> None:
    big, small = measured["meniscus, right, large"], measured["meniscus, left, small"]
    assert big[0].height_mm > 1.8 * small[0].height_mm, (big[0].height_mm, small[0].height_mm)


def test_empty_region_has_no_place() -> None:
    base, lungs = _base(0)
    assert locate(np.zeros((H, W), bool), lungs, lungs.both) is None
