"""How high new pleural fluid rises: the measure behind "new LARGE effusion" (urgent).

Why its own measure: "large" is a size, and neither reader measured it well. The learned
reader's urgent head scored some new 10-12 cm effusions under its cut (issue 11: dev-016,
heldout2-006); the sign rules' region height was cut short by the lung masks (20 px of a
118 px lung on dev-016) and called one 41 mm effusion large (train probe). A radiologist reads
the height of the meniscus at the lateral chest wall against the lung's height, so this does:

- the lung's rows come from the registered *prior* (`reader.hemithorax_boxes`): for a new
  effusion the prior holds no fluid, so its base is the costophrenic angle, where the
  current's own profile would stop at the top of the fluid;
- in the lateral band of that lung (the meniscus is highest at the chest wall) each row's share
  of pixels denser now by `FLUID_Z` noise sd is taken; the fluid is the run of such rows
  (share >= `FLUID_ROW_COVER`) that starts at the base and rises without a gap longer than
  `FLUID_GAP_ROWS`;
- its height over the lung's is returned. The registration's inspiration stage moves the
  prior's base towards the fluid's top, so the measure reads ~0.1 of the lung height under
  the meniscus height: `thresholds.NEW_LARGE_FLUID_HEIGHT` is set on that scale (train split
  only, see there);
- a row's pixel is denser now by `FLUID_Z` noise sd, or by `FLUID_CONTRAST` of the prior's own contrast
  between the soft tissue under the base and the aerated lower lung, whichever is less: rib residuals of
  breathing inflate the noise sd, and a meniscus thins towards its top (issue 28: thorax3d effusions of
  123 and 155 mm read 0).

It is used only for a change the reader typed "effusion, new": a worsened effusion's prior
fluid sits at the base too, and the measure cannot tell how much of it was there before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from comparison.thresholds import DEFAULT_PARAMS, EngineParams
from comparison.reader import hemithorax_boxes

if TYPE_CHECKING:
    from comparison.registration import Aligned

__all__ = ["new_fluid_height"]


def new_fluid_height(al: "Aligned", raw: np.ndarray, sigma: float, params: EngineParams = DEFAULT_PARAMS) -> dict[str, float]:
    """Height of new dependent density rising from each lung's base, as a share of that lung's
    height ({"right": ..., "left": ...}; 0 where none starts at the base).

    `raw` is the registered difference (current - prior, smoothed) on the working grid and
    `sigma` its noise sd inside the lungs (what the engine's change detection uses)."""
    boxes = hemithorax_boxes(al.mapped, al.lungs.right, al.lungs.left)
    h = raw.shape[0]
    out: dict[str, float] = {}
    for side, (top, bot, c0, c1) in boxes.items():
        lung_h = max(bot - top, 1.0)
        band = params.FLUID_LATERAL_BAND * (c1 - c0)
        a, b = (c0, c0 + band) if side == "right" else (c1 - band, c1)  # patient's right = image left
        cols = slice(max(0, int(round(a))), int(round(b)) + 1)
        thr = min(params.FLUID_Z * sigma, params.FLUID_CONTRAST * _tissue_contrast(al.mapped, cols, top, bot, params=params)
                  or np.inf)
        cover = (raw[:, cols] > thr).mean(axis=1) if cols.stop > cols.start else np.zeros(h)
        low = min(h - 1, int(bot + params.FLUID_BASE_BELOW * lung_h))
        high = int(bot - params.FLUID_BASE_REACH * lung_h)
        start = next((r for r in range(low, high, -1) if cover[r] >= params.FLUID_ROW_COVER), None)
        if start is None:
            out[side] = 0.0
            continue
        r, gap, fluid_top = start, 0, start
        while r > top and gap <= params.FLUID_GAP_ROWS:
            r -= 1
            if cover[r] >= params.FLUID_ROW_COVER:
                fluid_top, gap = r, 0
            else:
                gap += 1
        out[side] = float((bot - fluid_top) / lung_h)
    return out


def _tissue_contrast(prior: np.ndarray, cols: slice, top: float, bot: float, *, params: EngineParams) -> float:
    """How much denser the soft tissue just under the lung's base (`FLUID_TISSUE_ROWS`) is than the aerated
    lower half of the lung, on the registered prior in the lateral band: the scale on which fluid replacing
    lung shows, whatever the detector's tone curve and the rib residuals (0 when it cannot be read)."""
    h = prior.shape[0]
    lung_h = max(bot - top, 1.0)
    t0, t1 = (min(h, int(bot + f * lung_h)) for f in params.FLUID_TISSUE_ROWS)
    l0, l1 = int(top + 0.5 * lung_h), int(bot - 0.05 * lung_h)
    if t1 - t0 < 2 or l1 - l0 < 4 or cols.stop <= cols.start:
        return 0.0
    return max(0.0, float(np.median(prior[t0:t1, cols]) - np.median(prior[l0:l1, cols])))
