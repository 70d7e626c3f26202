"""The real chest CR of pydicom-data (`RG1_UNCR.dcm`) as a background scene.

Its lung fields were outlined by eye on the image (polygons below, full-resolution pixel
(col, row) coordinates; the patient's right lung is on the image left). The file carries no
usable pixel spacing (0.0); 0.2 mm is assumed, which makes the lungs ~26 cm tall, typical
of an adult. The image already shows several round opacities in both lungs: they are the
same in both studies of a pair (stable background, never labelled).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from scipy.ndimage import gaussian_filter, grey_opening, zoom

from benchmarks.cxrpairs.phantom import LUNG_AIR, PARENCHYMA, Scene
from benchmarks.cxrpairs.raster import Grid, points_in_polygon

REAL_FILE = "RG1_UNCR.dcm"
REAL_SPACING_MM = 0.2  # assumed; the header's PixelSpacing is 0
LUNG_LEVEL = 0.4  # median aerated-lung density of the phantom: the same tone curves fit both
MARKING_SCALE_MM = 4.0  # vessels are thinner than this, ribs wider: the top-hat keeps vessels only

RIGHT_LUNG = np.array([  # patient's right = image left; (col, row)
    (560, 190), (460, 220), (350, 300), (260, 420), (215, 600), (200, 800), (195, 1000), (190, 1200),
    (170, 1400), (150, 1500), (260, 1460), (380, 1410), (500, 1385), (650, 1390), (770, 1400),
    (780, 1200), (770, 1000), (760, 800), (760, 600), (740, 400), (680, 250),
], dtype=float)
LEFT_LUNG = np.array([
    (1200, 200), (1300, 230), (1400, 300), (1480, 420), (1540, 600), (1590, 800), (1610, 1000),
    (1630, 1200), (1650, 1400), (1660, 1560), (1560, 1500), (1470, 1450), (1420, 1410), (1350, 1220),
    (1220, 1020), (1110, 820), (1050, 650), (1020, 450), (1060, 300), (1120, 230),
], dtype=float)


@lru_cache(maxsize=1)
def _real_density() -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file(REAL_FILE))
    a = ds.pixel_array.astype(np.float32)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        a = a.max() - a
    return a


@lru_cache(maxsize=4)
def real_scene(res: float = REAL_SPACING_MM) -> Scene:
    """The real CR on a canonical raster of `res` mm (>= 0.2), densities scaled like the phantom's."""
    a = _real_density()
    lungs_px = {}
    h, w = a.shape
    cols = np.arange(w, dtype=np.float32)[None, :]
    rows = np.arange(h, dtype=np.float32)[:, None]
    for side, poly in (("right", RIGHT_LUNG), ("left", LEFT_LUNG)):
        lungs_px[side] = points_in_polygon(cols, rows, poly)
    lung = lungs_px["right"] | lungs_px["left"]
    # scale so that the mediastinum-to-lung step matches the phantom (LUNG_AIR)
    med = float(np.median(a[600:1200, 850:1000]))
    lung_med = float(np.median(a[lung]))
    scale = LUNG_AIR / max(med - lung_med, 1.0)
    d = (a - lung_med) * scale + LUNG_LEVEL
    k = REAL_SPACING_MM / max(res, REAL_SPACING_MM)
    if k < 0.999:
        d = zoom(gaussian_filter(d, 0.5 / k), k, order=1)
        lungs = {s: zoom(m.astype(np.float32), k, order=1) > 0.5 for s, m in lungs_px.items()}
    else:
        lungs = lungs_px
    r = REAL_SPACING_MM / k
    hh, ww = d.shape
    grid = Grid((hh, ww), r, -(ww - 1) / 2 * r, -(hh - 1) / 2 * r)
    size = max(int(round(MARKING_SCALE_MM / r)), 3)
    tophat = d - grey_opening(d, size=(size, size))
    lung_any = lungs["right"] | lungs["left"]
    markings = (gaussian_filter(lung_any.astype(np.float32), 1.0 / r) * (tophat + PARENCHYMA)).astype(np.float32)
    return Scene(grid=grid, density=d.astype(np.float32), lungs=lungs, markings=markings).finish()
