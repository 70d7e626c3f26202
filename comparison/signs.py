"""The physical signs of one changed region, measured on the two registered work images (pure).

Why its own module: issue 28 item 6 asks that region measurement and typing be separate pure
functions with table tests. This module only *measures* (arrays in, numbers out); what the
numbers mean (nodule or mass, new or worsened, pneumothorax or not) is `comparison.typing_rules`.
Nothing here reads the engine's state, the reader or a file, so a test can draw a disc, a
lucent rim without texture or a meniscus on a small array and check each sign.

Conventions: images are float32 [H, W], higher = denser, the current (`cur`) and the prior
registered and intensity-matched onto it (`prior`); `sigma` is the robust noise of their
difference inside the lungs; contrasts are in sigma; sizes in mm use `spacing_mm` (mm per
working-grid pixel). `sd` is the smoothed difference signed so that the change is positive.
Every threshold is in `comparison.thresholds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from comparison._anatomy import LungFields, fill_convex_hull, robust_sd
from priorwatch.vocabulary import Side, Zone

__all__ = ["Place", "RegionSigns", "locate", "measure", "texture_map", "texture_signs", "vessel_markings", "mirror", "hull_area",
           "outline_shape", "edge_over_within"]


@dataclass
class Place:
    """Where a changed region lies: its filled mask and pixels, its lung, and the ring of lung
    around it that its contrast is measured against."""

    m: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    area: int
    cy: float
    side: Side
    zone: Zone
    side_mask: np.ndarray
    top: int
    lung_h: int
    lung_w: int
    ring: np.ndarray


@dataclass
class RegionSigns:
    """A region's signs on each image (c_ current, p_ registered prior; contrasts in noise sd)."""

    c_con: float  # region minus its lung ring, current
    p_con: float  # the same on the prior
    c_core: float  # the region's inner half minus the ring, current
    p_core: float  # the same on the prior: the prior's opacity at that place
    h: int  # box height, px
    w: int  # box width, px
    solidity: float  # area over convex-hull area (1 = convex)
    diam_mm: float  # equivalent-disc diameter
    height_mm: float  # box height
    width_mm: float  # larger box side
    contact: float  # share of its columns whose bottom lies on the lung base
    basal: bool  # on the lung base, wide, in the lower half: dependent
    dist_edge: np.ndarray  # distance to the lung's edge (px), whole grid
    peripheral: bool
    apical: bool
    edge: bool  # peripheral or apical
    peaked: float  # mean / p95 of the change: ~0.67 a dome, ~1 a plateau
    core_ratio: float  # the change's hull core over its p90
    c_in: float  # region median minus the lung medial to it, current
    p_in: float  # the same on the prior
    mirror: int  # pixels of the mirrored place on the other lung
    c_sym: float  # region minus the other lung's mirrored place, current
    p_sym: float  # the same on the prior
    t_prior: float  # ~1: the prior departs from the patient's normal there; ~0: the current does
    strip_p: float  # the strip between region and chest wall darker than lung, prior
    strip_c: float  # the same, current
    d_below: float  # change just below the region
    o_below: float  # opacity just below the region on the image with less of the change
    margin: float  # margin sharpness: edge gradient of the change over its core contrast per px (~1 sharp)
    meniscus: float  # how much higher its top is at the chest wall than medially (share of lung height)
    cp_angle: bool  # covers the lung's lateral costophrenic angle
    pleural_line: float  # a thin dense line along its medial border on the image with the lucency (sigma)
    bronchogram: float  # share of a dense region holding thin lucent branches (air bronchograms)
    # set by texture_signs: lung markings (vessels) and pleural signs
    markings_lost_now: bool = False
    markings_lost_before: bool = False
    t_c: float = 0.0  # lung-marking energy in the region, current (1 = the lungs' median)
    t_p: float = 0.0  # the same on the prior
    touches: bool = False  # comes within EDGE_TOUCH_PX of the lung's edge
    ptx_before: bool = False  # a lucent, featureless band beside it on the prior
    ptx_still: bool = False  # the same on the current
    crescent: bool = False  # not a compact round blob (a band along the pleura)
    fl_p: float = 0.0
    fl_c: float = 0.0
    vessels_c: float = 0.0  # vessel markings inside the region away from its edges, current (noise sd)
    vessels_p: float = 0.0  # the same on the prior
    # set by measure from the region's outline (`outline_shape`): roundness and extent in the lung
    ellipse_fit: float = 0.0  # overlap (intersection over union) of the region with its moment ellipse (1 = an ellipse)
    axis_ratio: float = 1.0  # that ellipse's long over short axis (1 = round)
    lung_span: float = 0.0  # median share of the lung's width the region fills along its rows (~1: lobar / segmental)
    edge_ratio: float = 0.0  # the change's gradient on its outline over its gradient inside (`edge_over_within`): > 1 sharp

    @property
    def vessel_ratio(self) -> float:
        """Vessel markings now over before inside the region: well under 1 where air replaced lung."""
        return self.vessels_c / max(self.vessels_p, 1e-6)


def hull_area(m: np.ndarray) -> float:
    """Convex-hull area of a mask in px (with half a perimeter of pixel edges, so a disc's solidity is ~1)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(m)
    if len(pts) < 3:
        return float(len(pts))
    try:
        return float(ConvexHull(pts.astype(float)).volume) + 0.5 * len(pts) ** 0.5 * 2
    except QhullError:
        return float(len(pts))


def mirror(m: np.ndarray, midline: float) -> np.ndarray:
    """`m` reflected about the column `midline` (the other lung's matching place)."""
    ys, xs = np.nonzero(m)
    xm = np.round(2 * midline - xs).astype(int)
    ok = (xm >= 0) & (xm < m.shape[1])
    out = np.zeros_like(m)
    out[ys[ok], xm[ok]] = True
    return out


def texture_map(img: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Local high-frequency energy (lung markings), 1.0 = the lungs' median."""
    e = ndi.gaussian_filter(np.abs(img - ndi.gaussian_filter(img, 2.0)), 2.0)
    return e / (float(np.median(e[lungs])) + 1e-6) if lungs.any() else e / (float(np.median(e)) + 1e-6)


def locate(mask: np.ndarray, lungs: LungFields, roi: np.ndarray) -> Place | None:
    """The region's place (its holes filled: a growing lesion changes as a ring); None when no
    ring of lung around it can be measured."""
    m = ndi.binary_fill_holes(mask)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return None
    area = int(m.sum())
    cy, cx = float(ys.mean()), float(xs.mean())
    side = lungs.side_of(cx)
    zone = lungs.zone_of(side, cy)
    side_mask = lungs.mask(side)
    top, bottom = lungs.extent(side)
    lung_h = max(1, bottom - top)
    side_cols = np.nonzero(side_mask.any(axis=0))[0]
    lung_w = max(1, int(side_cols[-1] - side_cols[0] + 1)) if side_cols.size else m.shape[1] // 3
    r = max(2, int(np.sqrt(area / np.pi)))
    lung_roi = roi & side_mask if (roi & side_mask).any() else roi
    ring = ndi.binary_dilation(m, iterations=max(3, r // 2 + 3)) & ~ndi.binary_dilation(m, iterations=2) & lung_roi
    if ring.sum() < 8:
        ring = ndi.binary_dilation(m, iterations=4) & ~m & roi
    if ring.sum() < 4:
        return None
    return Place(m=m, ys=ys, xs=xs, area=area, cy=cy, side=side, zone=zone, side_mask=side_mask, top=top,
                 lung_h=lung_h, lung_w=lung_w, ring=ring)


def _contrasts(at: Place, cur: np.ndarray, prior: np.ndarray, sigma: float) -> tuple[float, float, float, float]:
    """(c_con, p_con, c_core, p_core): the region and its inner half against its lung ring, on each image."""
    m, ring = at.m, at.ring
    dist_in = ndi.distance_transform_edt(m)
    core_in = dist_in >= 0.5 * dist_in.max()
    ring_c, ring_p = float(np.median(cur[ring])), float(np.median(prior[ring]))
    return ((float(cur[m].mean()) - ring_c) / sigma, (float(prior[m].mean()) - ring_p) / sigma,
            (float(cur[core_in].mean()) - ring_c) / sigma, (float(prior[core_in].mean()) - ring_p) / sigma)


def _place_signs(at: Place, *, params: EngineParams) -> tuple[float, bool, np.ndarray, float, bool, bool, np.ndarray]:
    """(contact, basal, dist_edge, d_med, peripheral, apical, region columns): on the lung base
    (dependent fluid), at the apex, at the lateral edge."""
    m, side_mask = at.m, at.side_mask
    col_bottom = np.where(side_mask.any(axis=0), side_mask.shape[0] - 1 - np.argmax(side_mask[::-1], axis=0), -1)
    reg_cols = np.nonzero(m.any(axis=0))[0]
    reg_bottom = m.shape[0] - 1 - np.argmax(m[::-1][:, reg_cols], axis=0)
    contact = float(np.mean(reg_bottom >= col_bottom[reg_cols] - params.BASAL_TOUCH_PX)) if reg_cols.size else 0.0
    w = int(at.xs.max() - at.xs.min() + 1)
    basal = contact >= params.BASAL_CONTACT and w >= params.BASAL_MIN_WIDTH * at.lung_w and at.cy > at.top + 0.5 * at.lung_h
    dist_edge = ndi.distance_transform_edt(side_mask)
    d_med = float(np.median(dist_edge[m])) if side_mask[m].any() else 0.0
    peripheral = d_med < params.PERIPHERAL_FRACTION * at.lung_w
    apical = bool(at.ys.min() <= at.top + params.APICAL_FRACTION * at.lung_h)
    return contact, basal, dist_edge, d_med, peripheral, apical, reg_cols


def _change_shape(m: np.ndarray, sd: np.ndarray) -> tuple[float, float]:
    """(peaked, core_ratio) of the change itself: a dome (round lesion) or a plateau (airspace patch)."""
    peaked = float(np.mean(sd[m]) / (np.percentile(sd[m], 95) + 1e-6))
    dh = ndi.distance_transform_edt(fill_convex_hull(m))
    core = dh >= 0.6 * dh.max()
    core_ratio = float(sd[core].mean() / (float(np.percentile(sd[m], 90)) + 1e-6))
    return peaked, core_ratio


def measure(sign: int, z: float, at: Place, cur: np.ndarray, prior: np.ndarray, lungs: LungFields, sigma: float,
            spacing_mm: float, sd: np.ndarray, params: EngineParams = DEFAULT_PARAMS) -> RegionSigns:
    """Contrast, shape and place signs of a region denser (`sign` > 0) or more lucent now, of mean
    change `z` sigma."""
    m, ys, xs, area, ring = at.m, at.ys, at.xs, at.area, at.ring
    c_con, p_con, c_core, p_core = _contrasts(at, cur, prior, sigma)
    h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    contact, basal, dist_edge, d_med, peripheral, apical, reg_cols = _place_signs(at, params=params)
    peaked, core_ratio = _change_shape(m, sd)
    # the lung medial to the region (deeper in the lung than it): what a lucency or opacity is
    # judged against; the lateral part of the ring may be an existing pneumothorax or chest wall
    inner = ring & (dist_edge >= d_med)
    if inner.sum() < 6:
        inner = ring
    in_c, in_p = float(np.median(cur[inner])), float(np.median(prior[inner]))
    # the same place on the other lung (mirrored about the midline), on the same image: what this
    # patient's lung looks like there, so anatomy (ribs, the denser periphery) cancels
    mir = mirror(m, lungs.midline) & lungs.mask(Side.left if at.side == Side.right else Side.right)
    if mir.sum() >= max(6, 0.3 * area):
        c_ref, p_ref = float(np.median(cur[mir])), float(np.median(prior[mir]))
    else:
        c_ref, p_ref = in_c, in_p
    c_sym = (float(np.median(cur[m])) - c_ref) / sigma
    p_sym = (float(np.median(prior[m])) - p_ref) / sigma
    delta = abs(c_sym - p_sym) + 1e-6
    t_prior = (-p_sym if sign > 0 else p_sym) / delta  # which image departs from the patient's normal lung there
    # worsened vs new for a lucency: is the strip between it and the chest wall lucent on the prior too?
    outer = (ndi.binary_dilation(m, iterations=params.EDGE_STRIP_PX) & ~m & (dist_edge < max(1.0, d_med))
             & ndi.binary_dilation(at.side_mask, iterations=2))
    strip_p = (in_p - float(np.median(prior[outer]))) / sigma if outer.sum() >= 6 else 0.0
    strip_c = (in_c - float(np.median(cur[outer]))) / sigma if outer.sum() >= 6 else 0.0
    d_below, o_below = below_band(sign, m, reg_cols, cur, prior, sd, sigma)
    lucent_img = cur if sign < 0 else prior  # the image that holds the air, for a lucency
    ellipse_fit, axis_ratio, lung_span = outline_shape(m, at.side_mask)
    return RegionSigns(
        c_con=c_con, p_con=p_con, c_core=c_core, p_core=p_core, h=h, w=w, solidity=area / max(1.0, hull_area(m)),
        diam_mm=2 * np.sqrt(area / np.pi) * spacing_mm, height_mm=h * spacing_mm, width_mm=max(h, w) * spacing_mm,
        contact=contact, basal=basal, dist_edge=dist_edge, peripheral=peripheral, apical=apical,
        edge=peripheral or apical, peaked=peaked, core_ratio=core_ratio,
        c_in=(float(np.median(cur[m])) - in_c) / sigma, p_in=(float(np.median(prior[m])) - in_p) / sigma,
        mirror=int(mir.sum()), c_sym=c_sym, p_sym=p_sym, t_prior=t_prior, strip_p=strip_p, strip_c=strip_c,
        d_below=d_below, o_below=o_below, margin=margin_sharpness(m, sd, params=params),
        meniscus=meniscus_rise(m, at.side, at.lung_h, params=params), cp_angle=covers_cp_angle(m, at.side_mask, at.side, params=params),
        pleural_line=pleural_line(m, lucent_img, dist_edge, sigma, params=params),
        bronchogram=air_bronchogram(m, sd, sigma, params=params),
        ellipse_fit=ellipse_fit, axis_ratio=axis_ratio, lung_span=lung_span, edge_ratio=edge_over_within(m, sd))


def outline_shape(m: np.ndarray, side_mask: np.ndarray) -> tuple[float, float, float]:
    """(ellipse_fit, axis_ratio, lung_span) of a region's outline: how well the ellipse with its second
    moments covers it (intersection over union: ~0.9 or more for a disc or an ellipse, less for a lobed,
    notched or branching outline), that ellipse's long over short axis, and the median share of the lung's
    width (`side_mask`, its row) that the region fills along its rows (a lobar or segmental opacity fills
    the lung from the chest wall to the mediastinum or a fissure; a nodule or mass sits inside it).
    (0, 1, 0) for a region too small to have an outline (under 9 px)."""
    ys, xs = np.nonzero(m)
    if ys.size < 9:
        return 0.0, 1.0, 0.0
    cy, cx = float(ys.mean()), float(xs.mean())
    cov = np.cov(np.vstack([ys - cy, xs - cx])) + np.eye(2) / 12.0  # a pixel's own extent
    ev, evec = np.linalg.eigh(cov)
    semi = 2.0 * np.sqrt(np.maximum(ev, 1e-6))  # a uniform ellipse's variance along an axis is a^2 / 4
    reach = int(np.ceil(semi.max())) + 1
    y0, x0 = max(0, int(cy) - reach), max(0, int(cx) - reach)
    y1, x1 = min(m.shape[0], int(cy) + reach + 2), min(m.shape[1], int(cx) + reach + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.stack([yy - cy, xx - cx], axis=-1) @ evec  # coordinates along the ellipse's axes
    ell = ((d / semi) ** 2).sum(axis=-1) <= 1.0
    crop = m[y0:y1, x0:x1]
    inside = int(crop.sum())
    union = int((crop | ell).sum()) + (ys.size - inside)  # region pixels outside the crop (never for a mask this size)
    fit = float((crop & ell).sum() / max(1, union))
    rows = np.unique(ys)
    lung_w = side_mask[rows].sum(axis=1).astype(float)
    reg_w = m[rows].sum(axis=1).astype(float)
    ok = lung_w > 0
    span = float(np.median(np.minimum(1.0, reg_w[ok] / lung_w[ok]))) if ok.any() else 0.0
    return fit, float(semi[1] / semi[0]), span


def edge_over_within(m: np.ndarray, sd: np.ndarray) -> float:
    """Margin sharpness as the change's own contrast of gradients: the median gradient of the change `sd`
    on the region's outline (its outer pixel ring) over the median gradient inside it (two pixels in and
    deeper). A well-defined lesion rises at its outline and is level inside (a sphere's path length is
    steepest at its edge): well over 1, and more so the larger it is. An ill-defined airspace opacity fades
    into the lung, its steepest slope inside the outline: about 1 or under. Unlike `margin_sharpness` it
    needs no core level, so it does not fall with the lesion's size. 0 when the inside has under 9 px."""
    if m.sum() < 9:
        return 0.0
    box = _box(m, 2)
    m, sd = m[box], sd[box]
    inside = ndi.binary_erosion(m, iterations=2)
    if inside.sum() < 9:
        return 0.0
    gy, gx = np.gradient(sd.astype(np.float64))
    grad = np.hypot(gy, gx)
    edge = m & ~ndi.binary_erosion(m)
    return float(np.median(grad[edge]) / max(float(np.median(grad[inside])), 1e-9))


def below_band(sign: int, m: np.ndarray, reg_cols: np.ndarray, cur: np.ndarray, prior: np.ndarray,
               sd: np.ndarray, sigma: float) -> tuple[float, float]:
    """Effusion evidence below the band: (change there, opacity there on the image with less of
    the change), in noise sd; fluid on both images (level moved) or only on one."""
    below = np.zeros_like(m)
    for c_ in reg_cols:
        rb = int(m.shape[0] - 1 - np.argmax(m[::-1, c_]))
        below[rb + 3 : rb + 12, c_] = True
    less = prior if sign > 0 else cur  # the image with less of the change
    o_below = float((less[below].mean() - less[m].mean()) / sigma) if below.any() else 0.0
    d_below = float(sd[below].mean() / sigma) if below.any() else 0.0
    return d_below, o_below


def _box(m: np.ndarray, pad: int) -> tuple[slice, slice]:
    """The region's bounding box grown by `pad` px, clipped to the grid: the per-region signs are
    computed on this crop, not the whole grid (several regions per pair)."""
    ys, xs = np.nonzero(m)
    return (slice(max(0, int(ys.min()) - pad), int(ys.max()) + pad + 1),
            slice(max(0, int(xs.min()) - pad), int(xs.max()) + pad + 1))


def margin_sharpness(m: np.ndarray, sd: np.ndarray, params: EngineParams = DEFAULT_PARAMS) -> float:
    """How sharp the region's margin is: the change's gradient across its outline, times
    `MARGIN_EDGE_PX`, over the change's core level. ~1 or more for a well-defined edge (a
    nodule, a mass, a pleural line), well under for an ill-defined one (airspace opacity
    fading into lung). 0 for a region too small to have a core."""
    if m.sum() < 9:
        return 0.0
    box = _box(m, 2)
    m, sd = m[box], sd[box]
    edge = m & ~ndi.binary_erosion(m)
    edge = ndi.binary_dilation(edge) if edge.sum() < 4 else edge
    gy, gx = np.gradient(sd.astype(np.float64))
    grad = float(np.median(np.hypot(gy, gx)[edge]))
    dist_in = ndi.distance_transform_edt(m)
    core = dist_in >= max(1.0, 0.5 * dist_in.max())
    level = float(np.median(sd[core])) if core.any() else float(np.median(sd[m]))
    return float(grad * params.MARGIN_EDGE_PX / max(level, 1e-6))


def meniscus_rise(m: np.ndarray, side: Side, lung_h: int, params: EngineParams = DEFAULT_PARAMS) -> float:
    """How much higher the region's upper border stands at its lateral end than at its medial
    end, as a share of the lung's height: fluid climbs the chest wall (a meniscus), so a
    dependent opacity whose top rises laterally is pleural. Tops are the medians over the outer
    and inner `MENISCUS_END_SHARE` of its columns; patient's right is the image's left."""
    cols = np.nonzero(m.any(axis=0))[0]
    if cols.size < 4:
        return 0.0
    tops = np.argmax(m[:, cols], axis=0).astype(float)
    k = max(1, int(round(params.MENISCUS_END_SHARE * cols.size)))
    left_end, right_end = float(np.median(tops[:k])), float(np.median(tops[-k:]))
    lateral, medial = (left_end, right_end) if side == Side.right else (right_end, left_end)
    return float((medial - lateral) / max(1, lung_h))


def covers_cp_angle(m: np.ndarray, side_mask: np.ndarray, side: Side, params: EngineParams = DEFAULT_PARAMS) -> bool:
    """Whether the region reaches the lung's lateral costophrenic angle (its lowest, most lateral
    corner): fluid fills and blunts that angle first on an erect film."""
    ys, xs = np.nonzero(side_mask)
    if ys.size == 0:
        return False
    lateral = -xs if side == Side.right else xs  # patient's right lung's chest wall is the image's left
    i = int(np.argmax(ys + lateral))  # the corner furthest down and out
    my, mx = np.nonzero(m)
    return bool(np.any(np.abs(my - ys[i]) + np.abs(mx - xs[i]) <= params.CP_ANGLE_REACH_PX))  # within reach (city block)


def pleural_line(m: np.ndarray, img: np.ndarray, dist_edge: np.ndarray, sigma: float, params: EngineParams = DEFAULT_PARAMS) -> float:
    """A visible visceral pleural line: the thin band (`PLEURAL_LINE_PX`) just medial to a lucent
    region, on the image that holds the lucency, denser (its upper quartile) than the lung further
    in (the median of the next bands), in sigma. A pneumothorax's edge is that line; an opacity resolving has
    none. 0 when the bands cannot be drawn."""
    px = params.PLEURAL_LINE_PX
    if not m.any():
        return 0.0
    d_med = float(np.median(dist_edge[m])) if (dist_edge[m] > 0).any() else 0.0
    box = _box(m, 3 * px + 1)  # the bands' reach
    m, img, deeper = m[box], img[box], dist_edge[box] > d_med
    band1 = ndi.binary_dilation(m, iterations=px) & ~m & deeper
    band2 = ndi.binary_dilation(m, iterations=3 * px) & ~ndi.binary_dilation(m, iterations=2 * px) & deeper
    if band1.sum() < 4 or band2.sum() < 4:
        return 0.0
    return float((np.percentile(img[band1], 75) - np.median(img[band2])) / sigma)  # the line fills part of the band


def air_bronchogram(m: np.ndarray, sd: np.ndarray, sigma: float, params: EngineParams = DEFAULT_PARAMS) -> float:
    """Share of a changed region's pixels that are thin lucent branches inside it (a black top-hat
    of `BRONCHOGRAM_PX` past `BRONCHOGRAM_SIGMA` in the change `sd`): air bronchi inside airspace
    opacity. Read on the change, not on one image, so that the vessels both images share cancel.
    A nodule or a mass is solid; fluid holds no air."""
    box = _box(m, 2 * params.BRONCHOGRAM_PX + 1) if m.any() else (slice(None), slice(None))
    m, sd = m[box], sd[box]
    inner = ndi.binary_erosion(m, iterations=2)
    if inner.sum() < 9:
        return 0.0
    r = params.BRONCHOGRAM_PX
    yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
    fp = (yy * yy + xx * xx) <= r * r
    black = ndi.grey_closing(sd, footprint=fp) - sd
    return float(np.mean(black[inner] > params.BRONCHOGRAM_SIGMA * sigma))


def vessel_markings(m: np.ndarray, img: np.ndarray, side_mask: np.ndarray, sigma: float, params: EngineParams = DEFAULT_PARAMS) -> float:
    """Lung markings (vessels) inside a region on one image: the robust spread of its fine detail
    (the image minus its blur at `VESSEL_SCALE_PX`) over the region's pixels at least
    `VESSEL_EDGE_PX` inside both its own outline and the lung's edge, in noise sd. Edges are left
    out because the step from lung to chest wall or to a lucency is far larger than a vessel and
    would read as texture. Air in the pleural space holds no vessels; lung does. 0 when too few
    pixels are left."""
    if not m.any():
        return 0.0
    box = _box(m, params.VESSEL_EDGE_PX + int(4 * params.VESSEL_SCALE_PX) + 1)  # the erosion's and the blur's reach
    inside = ndi.binary_erosion(m[box], iterations=params.VESSEL_EDGE_PX)
    inside &= ndi.binary_erosion(side_mask[box], iterations=params.VESSEL_EDGE_PX)
    if inside.sum() < 9:
        return 0.0
    crop = img[box].astype(np.float64)
    fine = crop - ndi.gaussian_filter(crop, params.VESSEL_SCALE_PX)
    return float(robust_sd(fine[inside]) / max(sigma, 1e-6))


def texture_signs(s: RegionSigns, at: Place, tex_c: np.ndarray, tex_p: np.ndarray, cur: np.ndarray,
                  prior: np.ndarray, sigma: float, params: EngineParams = DEFAULT_PARAMS) -> RegionSigns:
    """Lung markings (vessels) and pleural signs filled into `s` (returned): lost where air has
    replaced lung (a pneumothorax seen as texture loss; ribs may stay, so one sign among
    others, never required)."""
    m, side_mask = at.m, at.side_mask
    s.t_c, s.t_p = float(np.median(tex_c[m])), float(np.median(tex_p[m]))
    s.vessels_c = vessel_markings(m, cur, side_mask, sigma, params=params)
    s.vessels_p = vessel_markings(m, prior, side_mask, sigma, params=params)
    s.markings_lost_now = s.t_c < params.MARKINGS_LOST and s.t_p > s.t_c + params.MARKINGS_DROP
    s.markings_lost_before = s.t_p < params.MARKINGS_LOST and s.t_c > s.t_p + params.MARKINGS_DROP
    s.touches = float(s.dist_edge[m].min()) <= params.EDGE_TOUCH_PX if side_mask[m].any() else True
    # featureless (no lung markings) band right next to the region on each image: the rest of a
    # pneumothorax that was there before (worsened) or is still there (improved)
    near = ndi.binary_dilation(m, iterations=8) & ~ndi.binary_dilation(m, iterations=1) & side_mask
    s.fl_p = float(np.mean(tex_p[near] < params.MARKINGS_LOST - 0.05)) if near.any() else 0.0
    s.fl_c = float(np.mean(tex_c[near] < params.MARKINGS_LOST - 0.05)) if near.any() else 0.0
    s.ptx_before = s.strip_p >= params.PLEURAL_STRIP_LUCENT_SIGMA or s.fl_p >= params.FEATURELESS_NEAR
    s.ptx_still = s.strip_c >= params.PLEURAL_STRIP_LUCENT_SIGMA or s.fl_c >= params.FEATURELESS_NEAR
    aspect = max(s.h, s.w) / max(1, min(s.h, s.w))
    # a pneumothorax's change is a band along the pleura (a crescent), never a round blob
    s.crescent = not (s.solidity >= params.ROUND_SOLIDITY and aspect <= params.ROUND_ASPECT)
    return s
