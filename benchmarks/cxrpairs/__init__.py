"""cxrpairs: an independent generator of labelled longitudinal PA chest-radiograph pairs.

Written from radiographic anatomy and lesion appearance only; it imports nothing from
`comparison/` (a test parses every module here and fails if one does). Public API:

- `grid(split, n)`: the seeded specs of a split, "dev" (tuning), "heldout" (reporting only)
  or "real" (lesions on the real chest CR of pydicom-data).
- `make_pair(spec, scale)`: a `Pair` with `prior` / `current` pydicom Datasets, `labels`
  (`Label`: finding, side, zone, change, urgent, size_mm, ...), `nuisance` and `interval_days`.
- `write_grid(split, out_dir, n, scale)`: the same, saved as DICOM files plus labels.json.
- `is_urgent`, `LARGE_EFFUSION_FRACTION`, `NODULE_MASS_CUT_MM`: the label rules (labels.py).
"""

from benchmarks.cxrpairs.generate import SPLIT_SEEDS, Pair, Spec, grid, make_pair, write_grid
from benchmarks.cxrpairs.labels import (
    CHANGES,
    FINDINGS,
    LARGE_EFFUSION_FRACTION,
    NODULE_MASS_CUT_MM,
    ZONES,
    Label,
    is_urgent,
    zone_of_fraction,
)

__all__ = [
    "CHANGES", "FINDINGS", "LARGE_EFFUSION_FRACTION", "NODULE_MASS_CUT_MM", "SPLIT_SEEDS", "ZONES",
    "Label", "Pair", "Spec", "grid", "is_urgent", "make_pair", "write_grid", "zone_of_fraction",
]
