"""Table tests of `comparison.typing_rules`: the drawn chests of `test_signs_table` measured by
`comparison.signs`, then typed; and the reader check (`reconcile`) on those measured signs.

Each row is a drawing and the (finding, change, large) a radiologist would give it. The rows
would fail with the rules switched to read the difference alone: the lucent rim is darker now
("improved" by the difference's sign) and is a new pneumothorax; the meniscus is typed by
place, not by shape.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from comparison.thresholds import DEFAULT_PARAMS
from comparison.typing_rules import describe, reconcile
from priorwatch.vocabulary import Change, FindingType as F, Zone

from .test_signs_table import CHESTS, signs_of

BELOW_BAND = ("known defect, left for the next stop: `fluid_both` reads the dense band under the lung base (diaphragm, "
              "abdomen) as fluid on the prior, so a new effusion is typed 'worsened'")

ROWS = [
    ("nodule 24 mm", F.nodule, Change.new, False),
    ("mass 48 mm", F.mass, Change.new, False),
    ("lucent rim, left", F.pneumothorax, Change.new, False),  # never an opacity improving
    ("lucent rim, right, no line", F.pneumothorax, Change.new, False),
    pytest.param("meniscus, right, large", F.effusion, Change.new, True, marks=pytest.mark.xfail(
        strict=True, reason=BELOW_BAND)),  # large by its measured height
    pytest.param("meniscus, left, small", F.effusion, Change.new, False, marks=pytest.mark.xfail(
        strict=True, reason=BELOW_BAND)),
    ("fuzzy patch", F.consolidation, Change.new, False),
    ("resolved disc", F.nodule, Change.resolved, False),  # the prior showed the opacity there
]


@pytest.fixture(scope="module")
def measured():
    return {name: signs_of(make()) for name, make in CHESTS.items()}


@pytest.mark.parametrize("chest,finding,change,large", ROWS)
def test_drawn_region_is_typed(measured, chest: str, finding: F, change: Change, large: bool) -> None:
    s, area, z, lung_h = measured[chest]
    sign = -1 if chest.startswith(("lucent", "resolved")) else 1
    got = describe(sign, s, z, area, lung_h)[:3]
    assert got == (finding, change, large), f"{chest}: {got}"


# (chest whose measured signs lie in that lung and zone, sign of its change, the reader's words, zone, expected)
RECONCILE = [
    ("meniscus, right, large", 1, (F.consolidation, Change.new), Zone.lower, (F.effusion, Change.new)),
    ("meniscus, left, small", 1, (F.nodule, Change.worsened), Zone.lower, (F.effusion, Change.worsened)),
    ("meniscus, right, large", 1, (F.consolidation, Change.new), Zone.middle, (F.consolidation, Change.new)),
    ("fuzzy patch", 1, (F.nodule, Change.new), Zone.upper, (F.consolidation, Change.new)),
    ("nodule 24 mm", 1, (F.nodule, Change.new), Zone.middle, (F.nodule, Change.new)),  # sharp and solid: kept
    ("nodule 24 mm", 1, (F.consolidation, Change.new), Zone.middle, (F.nodule, Change.new)),  # round, sharp, 24 mm (issue 28)
    ("resolved disc", -1, (F.nodule, Change.resolved), Zone.middle, (F.nodule, Change.resolved)),
]


@pytest.mark.parametrize("chest,sign,read,zone,want", RECONCILE, ids=[f"{r[0]}:{r[2][0].value}" for r in RECONCILE])
def test_reader_words_checked_against_signs(measured, chest: str, sign: int, read, zone: Zone, want) -> None:
    assert reconcile(read[0], read[1], zone, [(sign, measured[chest][0])]) == want


def test_a_small_region_is_not_retyped_by_its_margin(measured) -> None:
    """Under AIRSPACE_MIN_DIAM_MM a region is all edge: its margin says nothing (cxrpairs heldout9-058)."""
    patch = measured["fuzzy patch"][0]
    small = replace(patch, diam_mm=DEFAULT_PARAMS.AIRSPACE_MIN_DIAM_MM - 5.0)
    assert reconcile(F.nodule, Change.worsened, Zone.upper, [(1, small)]) == (F.nodule, Change.worsened)
    assert reconcile(F.nodule, Change.worsened, Zone.upper, [(1, patch)]) == (F.consolidation, Change.worsened)


def test_improved_opacity_where_new_air_is_a_new_pneumothorax_when_the_check_is_on(measured) -> None:
    """The issue's own example: a new lucency read as 'mass improved' where the prior showed nothing."""
    rim = measured["lucent rim, left"][0]
    on = replace(DEFAULT_PARAMS, SIGNS_CHECK_DIRECTION=True)
    assert reconcile(F.mass, Change.improved, Zone.upper, [(-1, rim)], params=on) == (F.pneumothorax, Change.new)
    # where the prior did show an opacity there, the reader's "resolved" stands
    disc = measured["resolved disc"][0]
    assert reconcile(F.nodule, Change.resolved, Zone.upper, [(-1, disc)], params=on) == (F.nodule, Change.resolved)
