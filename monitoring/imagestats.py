"""Image statistics for drift monitoring, computed from pixels the pipeline already decoded
(the worker calls `record_image_statistics` after the engine's image load; never on receive)."""

from __future__ import annotations

import numpy as np
from sqlmodel import Session

from priorwatch.imagestats import image_statistics
from priorwatch.models import ImageStatistics

__all__ = ["image_statistics", "record_image_statistics"]


def record_image_statistics(session: Session, study_id: int, pixels: np.ndarray, *, instance_id: int | None = None,
                            monochrome1: bool = False) -> ImageStatistics:
    row = ImageStatistics(study_id=study_id, instance_id=instance_id, **image_statistics(pixels, monochrome1))
    session.add(row)
    session.flush()
    return row
