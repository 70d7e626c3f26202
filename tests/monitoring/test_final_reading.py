"""The final-reading rule (monitoring.dataset.final_reading): which findings a study's AI draft
is measured against. The reviewer's decision comes first, a signed report read by the labeler
after; a study with neither has no final reading and is left out of the revision measure."""

from __future__ import annotations

import json

from monitoring.concordance import Claim
from monitoring.dataset import final_reading

AI = [Claim("pneumothorax", "new", "left", False)]
REPORT = {7: ([Claim("effusion", "stable", "right", False)], False)}
NAN = float("nan")


def test_an_accepted_draft_is_read_as_the_ai_said_it() -> None:
    assert final_reading("accepted", None, 7, AI, True, REPORT) == (AI, True)


def test_an_edited_draft_is_read_from_the_reviewers_labels() -> None:
    labels = json.dumps([{"finding": "effusion", "change": None, "side": "left", "urgent": True},
                         {"finding": "nodule", "change": "stable", "side": "right"}])
    final, urgent = final_reading("edited", labels, 7, AI, False, REPORT)  # type: ignore[misc]
    assert final == [Claim("effusion", "unknown", "left", False), Claim("nodule", "stable", "right", False)]
    assert urgent is True


def test_without_a_review_decision_the_signed_report_is_the_final_reading() -> None:
    assert final_reading(NAN, NAN, 7.0, AI, True, REPORT) == REPORT[7]
    assert final_reading("rejected", None, 7, AI, True, REPORT) == REPORT[7]
    assert final_reading("edited", NAN, 7, AI, True, REPORT) == REPORT[7]  # edited without stored labels


def test_no_decision_and_no_signed_report_is_no_final_reading() -> None:
    assert final_reading(NAN, NAN, NAN, AI, True, REPORT) is None
    assert final_reading("rejected", None, None, AI, True, REPORT) is None
