"""The harness scores what the issue asks: detection, direction, type, side, zone, urgency, calibration."""

from __future__ import annotations

import pytest

from benchmarks.change_engine import PairScore, ece, score_pair, summarise


def _label(finding="pneumothorax", side="right", zone="upper", change="new", urgent=True, zones=None):
    return {"finding": finding, "side": side, "zone": zone, "change": change, "urgent": urgent,
            "size_mm": 20.0, "zones": zones or [zone]}


def _pred(finding, side, zone, change, urgent=False, confidence=0.5):
    return {"finding": finding, "side": side, "zone": zone, "change": change, "urgent": urgent,
            "confidence": confidence}


def test_new_pneumothorax_read_as_improved_consolidation_is_detected_but_wrong_everywhere_else() -> None:
    s = score_pair([_label()], [_pred("consolidation", "right", "upper", "improved")], urgent_pred=False)
    (pl,) = s["per_label"]
    assert pl["detected"] is True
    assert pl["direction"] is False and pl["type"] is False
    assert pl["side"] is True and pl["zone"] is True
    assert s["urgent_label"] is True and s["urgent_pred"] is False


def test_the_best_matching_finding_is_scored_and_the_rest_count_as_extra() -> None:
    preds = [_pred("nodule", "left", "lower", "new"), _pred("pneumothorax", "right", "middle", "worsened", True)]
    s = score_pair([_label(zones=["upper", "middle"])], preds, urgent_pred=True)
    (pl,) = s["per_label"]
    assert pl["type"] and pl["side"] and pl["zone"] and pl["direction"]
    assert pl["exact_change"] is False  # worsened for new: same polarity, another word
    assert s["extra_changed"] == 1


def test_zone_outside_the_accepted_zones_is_wrong() -> None:
    s = score_pair([_label("nodule", "left", "middle", "new", False)], [_pred("nodule", "left", "upper", "new")], False)
    assert s["per_label"][0]["zone"] is False


def test_mass_for_nodule_is_right_only_in_the_documented_group_column() -> None:
    s = score_pair([_label("nodule", "left", "middle", "new", False)], [_pred("mass", "left", "middle", "new")], False)
    pl = s["per_label"][0]
    assert pl["type"] is False and pl["type_group"] is True


def test_a_missed_change_is_wrong_on_every_column() -> None:
    s = score_pair([_label("effusion", "left", "lower", "new", True)], [], False)
    assert set(s["per_label"][0].values()) == {False, None}


def test_stable_and_normal_pairs_called_changed() -> None:
    stable = [_label("nodule", "left", "middle", "stable", False)]
    assert score_pair(stable, [_pred("nodule", "left", "middle", "stable")], False)["called_changed"] is False
    assert score_pair(stable, [_pred("nodule", "left", "middle", "worsened")], False)["called_changed"] is True
    assert score_pair([], [_pred("effusion", "right", "lower", "resolved")], False)["called_changed"] is True


def test_urgent_recall_and_false_urgent_rate_over_pairs() -> None:
    def ps(urgent_label, urgent_pred):
        return PairScore("p", 1, "synthetic", [], [], urgent_label, urgent_pred)

    s = summarise([ps(True, True), ps(True, False), ps(False, True), ps(False, False), ps(False, False), ps(False, False)])
    assert s["urgent_recall"]["value"] == pytest.approx(0.5)
    assert s["false_urgent"]["value"] == pytest.approx(0.25)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident() -> None:
    calibrated = [(0.75, True)] * 3 + [(0.75, False)]
    assert ece(calibrated) == pytest.approx(0.0)
    assert ece([(0.95, False)] * 10) == pytest.approx(0.95)
