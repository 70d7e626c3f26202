"""Islands of one patchy opacity are one consolidation, not several nodules (issue 11, engine 0.3.1).

A patchy airspace opacity changes as several blobs of one sign close together; each blob alone
looks round. `_patchy` types such a cluster as consolidation and leaves a lone or distant
round change alone. Hand-built region masks, not a generator's look.
"""

from __future__ import annotations

import numpy as np

from comparison.thresholds import DEFAULT_PARAMS
from comparison.registration import _patchy
from priorwatch.vocabulary import Change, Evidence, FindingResult, FindingType, Side, Zone


def _blob(cy: int, cx: int, r: int = 5, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _nodule(score: float) -> FindingResult:
    return FindingResult(finding=FindingType.nodule, side=Side.right, zone=Zone.lower, change=Change.new,
                         urgent=False, confidence=0.6, evidence=Evidence(zone=Zone.lower, side=Side.right, score=score))


def test_two_close_blobs_of_one_sign_are_one_consolidation() -> None:
    spacing = 1.5
    gap_px = int(0.5 * DEFAULT_PARAMS.PATCHY_GAP_MM / spacing)  # well inside the gap
    items = [(_nodule(7.0), _blob(150, 60)), (_nodule(8.0), _blob(150, 60 + 10 + gap_px))]
    out = _patchy(items, spacing)
    assert [f.finding for f, _ in out] == [FindingType.consolidation, FindingType.consolidation]


def test_distant_blobs_or_opposite_signs_stay_nodules() -> None:
    spacing = 1.5
    far = int(2 * DEFAULT_PARAMS.PATCHY_GAP_MM / spacing) + 10
    out = _patchy([(_nodule(7.0), _blob(150, 30)), (_nodule(8.0), _blob(150, 30 + far))], spacing)
    assert [f.finding for f, _ in out] == [FindingType.nodule, FindingType.nodule]
    out = _patchy([(_nodule(7.0), _blob(150, 60)), (_nodule(-8.0), _blob(150, 75))], spacing)
    assert [f.finding for f, _ in out] == [FindingType.nodule, FindingType.nodule]
