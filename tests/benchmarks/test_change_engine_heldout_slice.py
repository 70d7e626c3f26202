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

SLICE = 12  # first pairs of the held-out grid (its order is shuffled: a mix of findings and changes)
SIZE = 500  # matrix long side: seconds per pair on one core

# Collapse floors, one pair of slack below engine 0.3.1 (d2bba08) on this slice: detected 0.83
# (5/6), side 0.67 (4/6), zone 0.67 (4/6), false-urgent 0.00 (0/10), stable/normal called
# changed 0.17 (1/6). (Engine 0.2, a85f7fe: detected 0.33, side 0.33, zone 0.17, false-urgent
# 0.10, called changed 0.50.) Raise them as the engine improves; never tune the engine on this.
FLOORS = {
    "detected": 0.66,
    "side": 0.5,
    "zone": 0.5,
}
CEILINGS = {
    "false_urgent": 0.1,
    "stable_called_changed": 0.34,
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
