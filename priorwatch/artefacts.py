"""Where a result's artefacts live when workers share no disk with the node or the dashboard.

A heat-map overlay is a row of `ComparisonOverlay` (small, written with the result, read by the
dashboard from the database it already uses); `Comparison.overlay_path` then holds
`OVERLAY_IN_DATABASE` instead of a file path. Results from before keep their file path.
"""

from __future__ import annotations

from sqlmodel import Session

from priorwatch.models import ComparisonOverlay

OVERLAY_IN_DATABASE = "db:overlay"  # the overlay_path of a result whose heat-map is a ComparisonOverlay row


def overlay_png(s: Session, comparison_id: int) -> bytes | None:
    """The stored PNG of a result's heat-map, or None when it has none in the database."""
    row = s.get(ComparisonOverlay, comparison_id)
    return bytes(row.png) if row is not None else None
