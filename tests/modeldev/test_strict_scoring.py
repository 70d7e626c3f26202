"""The strict scorer of the figure of record: right side and direction or it is a miss, type
and zone per true finding, urgent per finding on its side, every extra claim counted."""

from __future__ import annotations

import pytest

from modeldev.evaluate import logo_table, score_pair, summarise, wilson

PTX_NEW_L = {"finding": "pneumothorax", "side": "left", "zone": "upper", "change": "new", "urgent": True}
CONS_NEW_R = {"finding": "consolidation", "side": "right", "zone": "lower", "change": "new", "urgent": False}
NOD_STABLE = {"finding": "nodule", "side": "right", "zone": "middle", "change": "stable", "urgent": False}


def claim(finding: str, side: str, zone: str, change: str, urgent: bool = False) -> dict:
    return {"finding": finding, "side": side, "zone": zone, "change": change, "urgent": urgent}


def test_new_pneumothorax_read_as_improved_mass_is_missed_and_not_urgent() -> None:
    s = score_pair("p", "change", "compare", [PTX_NEW_L], [claim("mass", "left", "upper", "improved")], [])
    assert (s.detected, s.urgent_found, s.urgent_labels, s.extra_claims) == (0, 0, 1, 1)


def test_right_side_and_direction_detects_then_type_and_zone_are_scored_each() -> None:
    s = score_pair("p", "change", "compare", [PTX_NEW_L, CONS_NEW_R],
                   [claim("pneumothorax", "left", "middle", "worsened", urgent=True),
                    claim("mass", "right", "lower", "new")], [])
    assert (s.changes, s.detected, s.type_right, s.zone_right, s.urgent_found) == (2, 2, 1, 1, 1)


def test_wrong_side_is_a_miss_and_an_urgent_flag_on_the_other_side_does_not_count() -> None:
    s = score_pair("p", "change", "compare", [PTX_NEW_L], [claim("pneumothorax", "right", "upper", "new", True)], [])
    assert (s.detected, s.urgent_found, s.extra_claims) == (0, 0, 1)


def test_quiet_pair_with_a_claim_is_called_changed_and_stable_labels_need_no_claim() -> None:
    quiet = score_pair("p", "stable", "compare", [NOD_STABLE], [claim("nodule", "right", "middle", "worsened")], [])
    calm = score_pair("p", "stable", "compare", [NOD_STABLE], [claim("nodule", "right", "middle", "stable")], [])
    assert (quiet.quiet, quiet.called_changed, calm.called_changed) == (True, True, False)


def test_devices_are_never_disease_claims() -> None:
    dev = {"finding": "support_device", "side": "right", "zone": "upper", "change": "new", "urgent": False}
    s = score_pair("p", "devices_only", "compare", [dev], [claim("support_device", "right", "upper", "new")], [])
    assert (s.quiet, s.called_changed, s.extra_claims, s.changes) == (True, False, 0, 0)


@pytest.mark.parametrize(("expect", "notes", "ok"), [
    ("not_compared", ["Not compared: lateral view."], True),
    ("not_compared", [], False),
    ("compare", ["Not compared: the images could not be registered."], False),
])
def test_safety_cases_pass_only_on_the_expected_refusal(expect: str, notes: list[str], ok: bool) -> None:
    assert score_pair("p", "lateral", expect, [CONS_NEW_R], [], notes).safety_ok is ok


def test_summary_rates_carry_wilson_intervals_and_the_record_is_the_worst_held_out() -> None:
    good = summarise([score_pair("a", "change", "compare", [PTX_NEW_L], [claim("pneumothorax", "left", "upper", "new", True)], [])])
    bad = summarise([score_pair("b", "change", "compare", [PTX_NEW_L], [], [])])
    assert good["detected"]["rate"] == 1.0 and bad["detected"]["rate"] == 0.0
    lo, hi = good["detected"]["ci95"]
    assert 0.2 < lo < 0.21 and hi == 1.0
    record = logo_table({"cxrpairs": bad, "gen_a": good, "gen_b": bad}, echo=lambda *_: None)
    assert record["detected"] == {"worst": 0.0, "generator": "gen_b", "bar": ">= 0.9", "met": False}


def test_wilson_matches_the_textbook_value() -> None:
    lo, hi = wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
