"""A frontal (PA) chest phantom drawn from radiographic anatomy, in density units.

Density is a projected attenuation (higher = denser = brighter on a MONOCHROME2 display):
air outside the body ~0, aerated lung ~0.35-0.45, mediastinum / abdomen ~0.9-1.0, bone adds
0.1-0.3 on top. Everything is laid out in millimetres of the patient (canonical frame: x to
the image's right, y downwards, origin at the centre of a 440 mm field), so the same patient
renders at any pixel spacing.

In a PA image the patient's RIGHT lung is on the IMAGE LEFT (x < 0); `SIDE_SIGN` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

from benchmarks.cxrpairs.raster import Grid, bone_band, cylinder, draw_polyline, smooth_noise

SIDE_SIGN = {"right": -1.0, "left": 1.0}  # patient's side -> sign of image x in a PA view
FIELD_HALF_MM = 220.0  # canonical field: 440 mm square, wider than any simulated detector

# Densities of the tissues (projected attenuation units); why: a mediastinum-to-lung step of
# ~0.55 and bone of ~0.2 give the familiar contrast of a processed chest radiograph.
BODY_DENSITY = 0.95
LUNG_AIR = 0.58  # density removed where the lungs are fully aerated
PARENCHYMA = 0.05  # lung tissue (the interstitium) left in the aerated lung; gone in a pneumothorax
POSTERIOR_RIB = 0.12
ANTERIOR_RIB = 0.055
CLAVICLE = 0.2
VESSEL_AT_HILUM = 0.16


@dataclass
class Scene:
    """One patient's chest on a canonical raster: what lesions are drawn into."""

    grid: Grid
    density: np.ndarray  # float32 projected density
    lungs: dict[str, np.ndarray]  # patient's side -> bool mask of that lung field
    markings: np.ndarray  # density of lung tissue + vessels: what a pneumothorax removes
    lung_top: dict[str, float] = field(default_factory=dict)  # mm, apex
    lung_bottom: dict[str, float] = field(default_factory=dict)  # mm, lowest point (costophrenic angle)
    inner: dict[str, np.ndarray] = field(default_factory=dict)  # distance (mm) to the lung's edge, inside it

    def finish(self) -> "Scene":
        _, y = self.grid.coords()
        for side, m in self.lungs.items():
            rows = np.nonzero(m.any(axis=1))[0]
            self.lung_top[side] = float(y[rows[0], 0])
            self.lung_bottom[side] = float(y[rows[-1], 0])
            self.inner[side] = (distance_transform_edt(m) * self.grid.res).astype(np.float32)
        return self

    def lung_fraction(self, side: str, y_mm: float) -> float:
        """Height fraction (0 apex .. 1 lowest point) of y in that lung."""
        t, b = self.lung_top[side], self.lung_bottom[side]
        return (y_mm - t) / (b - t)


@dataclass(frozen=True)
class Patient:
    """Anatomical parameters of one synthetic patient (all mm)."""

    apex_y: float
    lung_height: float
    apex_x: float
    chest_half_width: float
    mediastinum_half_width: float
    heart_bulge_left: float
    heart_bulge_right: float
    dome_height: float
    right_dome_lift: float
    rib_spacing: float
    seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Patient":
        return cls(
            apex_y=float(rng.uniform(-162, -145)),
            lung_height=float(rng.uniform(235, 275)),
            apex_x=float(rng.uniform(55, 70)),
            chest_half_width=float(rng.uniform(132, 150)),
            mediastinum_half_width=float(rng.uniform(22, 30)),
            heart_bulge_left=float(rng.uniform(45, 70)),
            heart_bulge_right=float(rng.uniform(12, 24)),
            dome_height=float(rng.uniform(38, 55)),
            right_dome_lift=float(rng.uniform(8, 20)),
            rib_spacing=float(rng.uniform(21, 25)),
            seed=int(rng.integers(0, 2**31 - 1)),
        )


def _ease(t: np.ndarray) -> np.ndarray:
    """sqrt(1-(1-t)^2): fast rise then flat, for rounded lung apices and walls."""
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt(1.0 - (1.0 - t) ** 2)


def _lung_mask(p: Patient, side: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One lung field: apex, lateral chest wall, medial (mediastinal / heart) border, diaphragm dome."""
    s = SIDE_SIGN[side]
    ax = np.abs(x) * (np.sign(x) == s)  # distance from the midline on this side, 0 on the other
    bottom = p.apex_y + p.lung_height - (p.right_dome_lift if side == "right" else 0.0)
    H = bottom - p.apex_y
    t = (y - p.apex_y) / H
    lateral = p.apex_x + (p.chest_half_width - p.apex_x) * _ease(t / 0.45) + 10.0 * np.clip(t, 0, 1)
    medial = p.apex_x - (p.apex_x - p.mediastinum_half_width) * _ease(t / 0.18)
    bulge = p.heart_bulge_left if side == "left" else p.heart_bulge_right
    heart = np.where((t > 0.42), np.clip(np.sin(np.pi * np.clip((t - 0.42) / 0.75, 0, 1)), 0, 1) ** 0.8, 0.0)
    aortic = (6.0 * np.exp(-(((t - 0.22) / 0.06) ** 2))) if side == "left" else 0.0
    medial = medial + bulge * heart + aortic
    # diaphragm dome: lowest at the lateral costophrenic angle, peak ~45 % across, medial end lower
    lat_b = p.chest_half_width + 10.0
    med_b = p.mediastinum_half_width + bulge * np.sin(np.pi * (1 - 0.42) / 0.75) ** 0.8
    u = np.clip((lat_b - ax) / max(lat_b - med_b, 1.0), 0.0, 1.0)
    dome = bottom - p.dome_height * np.sin(np.pi / 2 * np.clip(u / 0.5, 0, 1)) ** 0.45 * (
        1.0 - 0.3 * np.clip((u - 0.5) / 0.5, 0, 1)
    )
    return (t >= 0) & (ax > medial) & (ax < lateral) & (y <= dome) & (ax > 0)


def _body(p: Patient, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft tissue of trunk, neck and shoulders as a projected thickness (0..1)."""
    hw_trunk = p.chest_half_width + 22.0
    top = p.apex_y - 25.0
    trunk_hw = hw_trunk * _ease((y - (top - 30.0)) / 60.0) + 1e-3
    trunk = np.sqrt(np.clip(1.0 - (x / trunk_hw) ** 2, 0, 1)) * (y > top - 30.0)
    neck = np.sqrt(np.clip(1.0 - (x / 60.0) ** 2, 0, 1)) * 0.8
    shoulders = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    for s in (-1.0, 1.0):
        d = np.hypot((x - s * (hw_trunk - 10.0)) / 55.0, (y - (top + 10.0)) / 45.0)
        shoulders = np.maximum(shoulders, np.sqrt(np.clip(1.0 - d**2, 0, 1)) * 0.9)
    return np.maximum(np.maximum(trunk, neck), shoulders).astype(np.float32)


def _vessel_tree(rng: np.random.Generator, hilum: tuple[float, float], side_sign: float, depth: int = 5):
    """Branching pulmonary vessels from a hilum: (points, width, value) polylines."""
    out = []
    roots = [(-70.0, 1.0), (-20.0, 1.0), (25.0, 0.95), (70.0, 0.9)]  # degrees from lateral, upward negative
    stack = []
    for ang, scale in roots:
        a = np.deg2rad(ang + rng.uniform(-10, 10))
        direction = np.array([side_sign * np.cos(a), np.sin(a)])
        stack.append((np.array(hilum, dtype=float), direction, 5.0 * scale, VESSEL_AT_HILUM * scale, 0))
    while stack:
        p0, d, w, v, g = stack.pop()
        length = rng.uniform(18, 30) * (0.8**g)
        # a gently curving segment in 3 pieces
        pts = [p0]
        dd = d.copy()
        for _ in range(3):
            turn = np.deg2rad(rng.uniform(-8, 8))
            c, s_ = np.cos(turn), np.sin(turn)
            dd = np.array([c * dd[0] - s_ * dd[1], s_ * dd[0] + c * dd[1]])
            pts.append(pts[-1] + dd * length / 3)
        pts = np.array(pts)
        w1, v1 = w * 0.7, v * 0.68
        out.append((pts, np.linspace(w, w1, 4), np.linspace(v, v1, 4)))
        if g + 1 < depth:
            for sgn in (-1.0, 1.0):
                spread = np.deg2rad(rng.uniform(18, 34)) * sgn
                c, s_ = np.cos(spread), np.sin(spread)
                nd = np.array([c * dd[0] - s_ * dd[1], s_ * dd[0] + c * dd[1]])
                stack.append((pts[-1], nd, w1, v1, g + 1))
    return out


def render_patient(p: Patient, res: float) -> Scene:
    """Draw one patient's chest on a canonical raster of `res` mm per pixel."""
    rng = np.random.default_rng(p.seed)
    grid = Grid.centred(FIELD_HALF_MM, res)
    x, y = grid.coords()
    lungs = {side: _lung_mask(p, side, x, y) for side in ("right", "left")}
    lung = lungs["right"] | lungs["left"]
    body = _body(p, x, y)

    # aerated lung: thicker (more air) away from its edges, soft 1.5 mm edge
    inner = distance_transform_edt(lung) * res
    depth = (np.clip(inner / 30.0, 0, 1) ** 0.5 * 0.75 + 0.25) * lung
    depth = gaussian_filter(depth.astype(np.float32), 1.5 / res)
    lung_soft = gaussian_filter(lung.astype(np.float32), 1.0 / res)

    density = BODY_DENSITY * body - LUNG_AIR * depth

    # spine with vertebral bodies, visible through the mediastinum
    vert = 0.5 + 0.5 * np.cos(2 * np.pi * (y - p.apex_y) / (p.rib_spacing * 1.05)) ** 8
    spine = 0.08 * (np.abs(x) < 19) * (0.7 + 0.3 * vert) * (y > p.apex_y - 60)
    density += gaussian_filter(spine.astype(np.float32), 1.0 / res)

    # ribs: posterior arcs (near-horizontal from the spine, curving down at the wall) and
    # anterior arcs (fainter, running down and medially from the lateral wall)
    post = np.zeros(grid.shape, np.float32)
    ant = np.zeros(grid.shape, np.float32)
    for side, s in SIDE_SIGN.items():
        for i in range(10):
            y0 = p.apex_y - 18.0 + i * p.rib_spacing * (1.0 + 0.02 * i)
            tt = np.clip((y0 - p.apex_y) / p.lung_height, 0, 1)
            wall = p.apex_x + (p.chest_half_width - p.apex_x) * float(_ease(np.array(tt / 0.45))) + 14.0
            u = np.linspace(0, 1, 14)
            px_ = s * (14.0 + u * (wall - 14.0))
            py_ = y0 - 9.0 * np.sin(np.pi * u * 0.85) + 16.0 * u**4
            draw_polyline(post, grid, np.stack([px_, py_], 1), 8.5 + 2 * u, bone_band, POSTERIOR_RIB * (1 - 0.55 * u**3))
            v = np.linspace(0, 1, 10)
            ax_ = s * (wall - v * (wall - 38.0 - 10 * tt))
            ay_ = py_[-1] + 4.0 + v * (48.0 + 10 * tt) - 10.0 * np.sin(np.pi * v) * 0.5
            draw_polyline(ant, grid, np.stack([ax_, ay_], 1), 11.0, bone_band, ANTERIOR_RIB * (1 - 0.5 * v))
        # clavicle: from the sternal notch up and out to the shoulder, gently S-shaped
        u = np.linspace(0, 1, 12)
        cx = s * (22.0 + u * (p.chest_half_width - 5.0))
        cy = p.apex_y + 2.0 - 22.0 * u + 8.0 * np.sin(2 * np.pi * u)
        clav = np.zeros(grid.shape, np.float32)
        draw_polyline(clav, grid, np.stack([cx, cy], 1), 15.0, bone_band, CLAVICLE)
        density += clav
    density += post + ant

    # lung markings: tissue + vessels branching from the hila, fading to the periphery
    vessels = np.zeros(grid.shape, np.float32)
    for side, s in SIDE_SIGN.items():
        hy = p.apex_y + p.lung_height * (0.40 if side == "right" else 0.36)
        hx = s * (p.mediastinum_half_width + (p.heart_bulge_left if side == "left" else p.heart_bulge_right) * 0.2 + 14)
        for pts, w, v in _vessel_tree(rng, (hx, hy), s):
            draw_polyline(vessels, grid, pts, w, cylinder, v)
        hil = np.exp(-(((x - hx) / 14.0) ** 2 + ((y - hy) / 24.0) ** 2)) * 0.09
        vessels = np.maximum(vessels, hil.astype(np.float32))
    texture = smooth_noise(rng, grid.shape, 1.2 / res)
    markings = (lung_soft * (PARENCHYMA + 0.008 * texture) + vessels * lung_soft).astype(np.float32)
    density += markings

    # stomach gas under the left hemidiaphragm
    sy = p.apex_y + p.lung_height + 25.0
    gas = np.exp(-(((x - 75.0) / 35.0) ** 2 + ((y - sy) / 18.0) ** 2) ** 2) * 0.25
    density -= gas.astype(np.float32) * (~lung)
    density += 0.015 * smooth_noise(rng, grid.shape, 6.0 / res) * body  # soft-tissue mottling

    return Scene(grid=grid, density=density.astype(np.float32), lungs=lungs, markings=markings).finish()
