"""Lesion physics, written from how each finding looks on a frontal chest radiograph.

Every lesion returns an additive density map on the scene's canonical raster and the mask
of the region it occupies (what the labels and the label-sanity tests look at):

- pneumothorax: air between the chest wall and a retracted lung, collecting at the apex and
  the lateral edge (upright patient). Inside the rim there is no lung tissue and no vessel
  marking, so it is slightly darker and featureless; ribs and chest-wall soft tissue are
  untouched (they are outside the pleura). The retracted lung's edge, the visceral pleura,
  is a thin bright line. The collapsed lung gets a little denser.
- effusion: dependent fluid; an opacity from the base with a meniscus that rises laterally,
  filling (blunting) the costophrenic angle and hiding the diaphragm dome; its height rises
  with its volume; the upper edge is soft because the fluid layer thins upwards.
- consolidation: ill-defined patchy air-space opacity with air bronchograms (dark branching
  tubes inside it), confined to the lung, without mass effect.
- nodule (< 30 mm) / mass (>= 30 mm): round, well-defined, denser centrally (a sphere in
  projection); a mass may be slightly lobulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.ndimage import gaussian_filter

from benchmarks.cxrpairs.phantom import SIDE_SIGN, Scene
from benchmarks.cxrpairs.raster import cylinder, draw_polyline, smooth_noise

PLEURAL_LINE = 0.05  # density of the visceral pleural line: thin, visible against the rim's air
PTX_EXTRA_AIR = 0.02  # darker than aerated lung: no tissue at all in the rim
EFFUSION_DENSITY = 0.6  # most water density a fluid layer adds over aerated lung
SOFT_TISSUE_LEVEL = 0.92  # a thick fluid layer looks as dense as the diaphragm below it


@dataclass(frozen=True)
class Lesion:
    """One lesion's state in one study. `amount` is the size: diameter (nodule, mass,
    consolidation extent), meniscus height (effusion) or rim width (pneumothorax), all mm."""

    finding: str
    side: str
    amount: float
    contrast: float = 0.0  # peak density added (nodule, mass, consolidation)
    cx: float = 0.0  # centre, canonical mm (nodule, mass, consolidation)
    cy: float = 0.0
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def scaled(self, amount: float, contrast: float | None = None) -> "Lesion":
        return replace(self, amount=amount, contrast=self.contrast if contrast is None else contrast)


def _lateral_fraction(scene: Scene, side: str, x: np.ndarray, y_rows: np.ndarray) -> np.ndarray:
    """0 at the lung's medial edge, 1 at its lateral edge, per row (canonical raster)."""
    m = scene.lungs[side]
    s = SIDE_SIGN[side]
    _, w = m.shape
    cols = np.arange(w)
    any_row = m.any(axis=1)
    first = np.where(any_row, np.argmax(m, axis=1), 0)
    last = np.where(any_row, w - 1 - np.argmax(m[:, ::-1], axis=1), 0)
    span = np.maximum(last - first, 1)
    frac_img = (cols[None, :] - first[:, None]) / span[:, None]  # 0 at image-left edge of the lung
    # lateral is image-left for the patient's right lung (s < 0)
    return np.clip(frac_img if s > 0 else 1.0 - frac_img, 0, 1).astype(np.float32)


def round_lesion(scene: Scene, les: Lesion) -> tuple[np.ndarray, np.ndarray]:
    """Nodule or mass: a projected sphere with a sharp (~0.5 mm) edge, masses slightly lobulated."""
    g = scene.grid
    R = les.amount / 2
    delta = np.zeros(g.shape, np.float32)
    win = g.window(les.cx - R * 1.4 - 3, les.cx + R * 1.4 + 3, les.cy - R * 1.4 - 3, les.cy + R * 1.4 + 3)
    if win is None:
        return delta, delta > 0
    sl, x, y = win
    ang = np.arctan2(y - les.cy, x - les.cx)
    rng = np.random.default_rng(les.seed)
    lob = 1.0
    if les.finding == "mass":
        for k in (3, 5):
            lob = lob + 0.05 * np.sin(k * ang + rng.uniform(0, 2 * np.pi))
    rr = np.hypot(x - les.cx, y - les.cy) / (R * lob)
    peak = les.extra.get("per_mm", 0.0) * les.amount or les.contrast
    body = peak * (0.4 + 0.6 * cylinder(np.minimum(rr, 1.0))) * (rr <= 1.0)
    delta[sl] = gaussian_filter(body.astype(np.float32), 0.4 / g.res)
    return delta, delta > 0.1 * peak


def consolidation(scene: Scene, les: Lesion) -> tuple[np.ndarray, np.ndarray]:
    """Patchy, ill-defined air-space opacity with air bronchograms, confined to the lung."""
    g = scene.grid
    R = les.amount / 2
    delta = np.zeros(g.shape, np.float32)
    pad = R * 1.8 + 10
    win = g.window(les.cx - pad, les.cx + pad, les.cy - pad, les.cy + pad)
    if win is None:
        return delta, delta > 0
    sl, x, y = win
    rng = np.random.default_rng(les.seed)  # same seed in both studies: the same airspaces fill
    shape = (y.shape[0], x.shape[1])
    coarse = smooth_noise(rng, shape, 7.0 / g.res)
    fine = smooth_noise(rng, shape, 2.0 / g.res)
    env = 1.0 - np.hypot((x - les.cx) / R, (y - les.cy) / (R * 1.15))
    field_ = env + 0.35 * coarse
    region = gaussian_filter(np.clip(field_ * 3.0, 0, 1).astype(np.float32), 3.0 / g.res)  # ill-defined edge
    patchy = region * np.clip(0.8 + 0.25 * fine, 0.3, 1.2)
    # air bronchograms: branching air-filled bronchi made visible by the opacified alveoli
    bron = np.zeros(shape, np.float32)
    from benchmarks.cxrpairs.raster import Grid

    local = Grid(shape, g.res, float(x[0, 0]), float(y[0, 0]))
    for _ in range(3):
        p0 = np.array([les.cx + rng.uniform(-0.3, 0.3) * R, les.cy + rng.uniform(-0.3, 0.3) * R])
        d = rng.normal(size=2)
        d /= np.linalg.norm(d)
        stack = [(p0, d, 3.0, 0)]
        while stack:
            p, dd, w, gen = stack.pop()
            L = R * rng.uniform(0.35, 0.6) * 0.8**gen
            q = p + dd * L
            draw_polyline(bron, local, np.array([p, q]), [w, w * 0.75], cylinder, 1.0)
            if gen < 2:
                for sgn in (-1, 1):
                    a = np.deg2rad(rng.uniform(20, 35)) * sgn
                    nd = np.array([np.cos(a) * dd[0] - np.sin(a) * dd[1], np.sin(a) * dd[0] + np.cos(a) * dd[1]])
                    stack.append((q, nd, w * 0.75, gen + 1))
    lung = gaussian_filter(scene.lungs[les.side][sl].astype(np.float32), 1.0 / g.res)
    opac = les.contrast * patchy * (1.0 - 0.6 * bron * np.clip(region * 1.5, 0, 1)) * lung
    delta[sl] = opac
    return delta, delta > 0.25 * les.contrast


def effusion(scene: Scene, les: Lesion) -> tuple[np.ndarray, np.ndarray]:
    """Dependent pleural fluid: meniscus rising laterally, blunted costophrenic angle."""
    g = scene.grid
    side = les.side
    x, y = g.coords()
    bottom = scene.lung_bottom[side]
    lat = _lateral_fraction(scene, side, x, y)
    h = les.amount
    meniscus_drop = les.extra.get("meniscus", 0.45)  # how much lower the fluid sits medially (x h)
    # concave meniscus: highest against the lateral chest wall, rising steeply there
    top = bottom - h * (1.0 - meniscus_drop) - meniscus_drop * h * lat**1.6
    ramp = 8.0 + 0.08 * h  # the fluid layer thins upwards: a soft upper edge
    fill = np.clip((y - top) / ramp, 0, 1) ** 0.8
    lung = scene.lungs[side]
    region = gaussian_filter(lung.astype(np.float32), 1.0 / g.res)  # fluid fills the lung base to its edge
    # fluid replaces air: it brings the aerated lung up to soft-tissue density and adds nothing
    # where the image is already that dense (diaphragm, heart); ribs stay visible through it
    rows = np.nonzero(region.max(axis=1) > 0)[0]
    r0 = max(int(np.searchsorted(y[:, 0], float(np.min(top)) - 3 * ramp)), 0)
    r0 = max(r0, int(rows[0]))
    delta = np.zeros(g.shape, np.float32)
    background = gaussian_filter(scene.density[r0:], 6.0 / g.res)
    room = np.clip(SOFT_TISSUE_LEVEL - background, 0.0, EFFUSION_DENSITY)
    delta[r0:] = room * fill[r0:] * region[r0:]
    return delta, (fill > 0.3) & lung


def pneumothorax(scene: Scene, les: Lesion) -> tuple[np.ndarray, np.ndarray]:
    """Apical/lateral air rim: markings gone, a little darker, a thin visceral pleural line."""
    g = scene.grid
    side = les.side
    x, y = g.coords()
    lung = scene.lungs[side]
    frac = (y - scene.lung_top[side]) / (scene.lung_bottom[side] - scene.lung_top[side])
    lat = _lateral_fraction(scene, side, x, y)
    W = les.amount
    reach = 0.45 + 0.4 * min(W / 50.0, 1.0)  # a larger pneumothorax runs further down the wall
    gy = np.clip((reach - frac) / (reach - 0.3), 0, 1)
    gx = 0.2 + 0.8 * lat**1.5
    w = (W * gy * np.maximum(gx, np.clip(1.0 - frac / 0.12, 0, 1))).astype(np.float32)  # whole apex
    inner = scene.inner[side]
    rim = lung & (inner < w)
    rim_soft = gaussian_filter(rim.astype(np.float32), 0.3 / g.res)
    line = (lung & (np.abs(inner - w) < 0.45) & (w > 1.5)).astype(np.float32)
    line = gaussian_filter(line, 0.25 / g.res)
    collapse = 0.3 * min(W / 60.0, 1.0) * (lung & ~rim)
    delta = -(scene.markings + PTX_EXTRA_AIR) * rim_soft + PLEURAL_LINE * line + scene.markings * collapse
    return delta.astype(np.float32), rim


DRAW = {
    "nodule": round_lesion,
    "mass": round_lesion,
    "consolidation": consolidation,
    "effusion": effusion,
    "pneumothorax": pneumothorax,
}


def draw(scene: Scene, les: Lesion | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Density delta and region mask of a lesion (None, None when absent)."""
    if les is None or les.amount <= 0:
        return None, None
    return DRAW[les.finding](scene, les)
