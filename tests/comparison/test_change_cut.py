"""The reader's change cut-off per evidence type (`EngineParams.READER_CHANGE_P_BY_FINDING`, issue 28): a lung whose
top reader finding has its own cut-off is reported changed from that probability; every other type keeps the global
`READER_CHANGE_P`. The engine's step (`registration._from_reads`) on a hand-made reading, no image needed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from comparison.reader import LungRead
from comparison.registration import _from_reads, change_cut
from comparison.thresholds import DEFAULT_PARAMS
from comparison._anatomy import LungFields
from priorwatch.vocabulary import Change, FindingType, Side

H = W = 160


def _lungs() -> LungFields:
    yy, xx = np.mgrid[:H, :W]
    right = ((yy - 82) / 62.0) ** 2 + ((xx - 44) / 30.0) ** 2 <= 1.0
    left = ((yy - 82) / 62.0) ** 2 + ((xx - 116) / 30.0) ** 2 <= 1.0
    return LungFields(right=right, left=left, midline=80.0, template=False)


def _read(finding: str, p_change: float) -> LungRead:
    return LungRead(side="right", p_change=p_change, finding=finding, p_finding=0.9, change="new", p_word=0.9,
                    zone="upper", p_zone=0.9, p_urgent=0.0, box=(20, 14, 144, 74))


def test_change_cut_per_finding_else_global() -> None:
    per = replace(DEFAULT_PARAMS, READER_CHANGE_P_BY_FINDING=(("pneumothorax", 0.3),))
    assert change_cut("pneumothorax", params=per) == 0.3
    assert change_cut("nodule", params=per) == DEFAULT_PARAMS.READER_CHANGE_P
    assert change_cut("pneumothorax") == DEFAULT_PARAMS.READER_CHANGE_P  # shipped: one cut for every type


def test_a_lung_under_the_global_cut_is_reported_at_its_own_type_cut() -> None:
    p = DEFAULT_PARAMS.READER_CHANGE_P - 0.05
    per = replace(DEFAULT_PARAMS, READER_CHANGE_P_BY_FINDING=(("pneumothorax", p - 0.05),))
    args = ([], _lungs(), 0.9, (H, W), (H, W))
    assert _from_reads([_read("pneumothorax", p)], *args) == []
    got = _from_reads([_read("pneumothorax", p)], *args, params=per)
    assert [(f.finding, f.side, f.change) for f in got] == [(FindingType.pneumothorax, Side.right, Change.new)]
    assert _from_reads([_read("nodule", p)], *args, params=per) == []  # another type keeps the global cut
