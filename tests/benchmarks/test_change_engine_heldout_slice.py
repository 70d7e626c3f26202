"""Regression guard: the real change engine on a small held-out slice of the independent pairs.

The floors catch a collapse (an engine that stops seeing changes, swaps sides, or flags
everything urgent) without flaking on a pair or two; they are not the issue's targets.
The full figures come from `benchmarks/change_engine.py --split all` (see the issue's note).

Issue 11's held-out targets, for reference (the full grid, not this slice):
    urgent recall >= 0.95, false-urgent <= 0.10, change detected >= 0.95, direction >= 0.90,
    type >= 0.85, side >= 0.95, zone >= 0.85, stable/normal called changed <= 0.10.
"""

from __future__ import annotations

import pytest

from benchmarks.change_engine import evaluate

SLICE = 24  # first pairs of the held-out grid (its order is shuffled: a mix of findings and changes)
SIZE = 600  # matrix long side: the size the tables are run at (seconds per pair on one core)

# Collapse floors, two pairs of slack below engine 0.4.0 (learned reader) on this slice at 600 px:
# urgent recall 1.00 (3/3), detected / direction / side / zone 0.87 (13/15), false-urgent 0.00 (0/21),
# stable/normal called changed 0.00 (0/9). (Engine 0.3.1 on the first 12 at 500 px: detected 5/6,
# side 4/6, zone 4/6.) Raise them as the engine improves; never tune the engine on this.
FLOORS = {
    "urgent_recall": 0.66,
    "detected": 0.73,
    "direction": 0.73,
    "side": 0.73,
    "zone": 0.73,
}
CEILINGS = {
    "false_urgent": 0.1,
    "stable_called_changed": 0.23,
}


@pytest.fixture(scope="module")
def slice_summary():
    summary, scores = evaluate("heldout", n=SLICE, size=SIZE)
    return summary, scores


def test_every_pair_of_the_slice_is_compared_without_an_engine_error(slice_summary) -> None:
    summary, scores = slice_summary
    assert len(scores) == SLICE
    assert [s.error for s in scores if s.error] == []


@pytest.mark.parametrize("measure", sorted(FLOORS))
def test_engine_does_not_fall_below_its_floor(slice_summary, measure: str) -> None:
    summary, _ = slice_summary
    assert summary[measure]["den"] > 0
    assert summary[measure]["value"] >= FLOORS[measure], summary[measure]


@pytest.mark.parametrize("measure", sorted(CEILINGS))
def test_engine_does_not_exceed_its_ceiling(slice_summary, measure: str) -> None:
    summary, _ = slice_summary
    assert summary[measure]["den"] > 0
    assert summary[measure]["value"] <= CEILINGS[measure], summary[measure]
