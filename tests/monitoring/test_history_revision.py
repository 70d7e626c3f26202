"""A finding whose history the radiologist corrects is a revision (issue 29): the same finding and
change, but another state on some study of its history (the AI said "new", the reviewer saw it two
years ago: "recurrent")."""

from __future__ import annotations

import json

import pytest

from monitoring.concordance import Claim, compare_study, history_states
from monitoring.dataset import final_reading

AI_NEW = ("absent", "absent", "present")
RECURRENT = ("present", "absent", "present")

CASES = [
    ("history corrected", AI_NEW, RECURRENT, True),
    ("history confirmed", AI_NEW, AI_NEW, False),
    ("reviewer gives no history", AI_NEW, None, False),
    ("AI gave no history", None, RECURRENT, False),
]


@pytest.mark.parametrize("name,ai_hist,final_hist,revision", CASES, ids=[c[0] for c in CASES])
def test_corrected_history_is_a_revision(name: str, ai_hist: tuple[str, ...] | None,
                                         final_hist: tuple[str, ...] | None, revision: bool) -> None:
    c = compare_study([Claim("nodule", "new", "right", False, ai_hist)],
                      [Claim("nodule", "new", "right", False, final_hist)], False, False)
    assert c.significant is revision
    assert c.change_disagreement == int(revision)


def test_history_states_reads_stored_and_labelled_histories() -> None:
    stored = json.dumps([{"study_uid": "1", "date": "2024-01-02", "size_mm": None, "state": "absent"},
                         {"study_uid": "2", "date": "2025-01-02", "size_mm": 9.0, "state": "present"}])
    assert history_states(stored) == ("absent", "present")
    assert history_states(["present", "absent"]) == ("present", "absent")
    assert history_states(None) is None and history_states("") is None and history_states("[]") is None


def test_reviewers_edited_history_reaches_the_final_reading() -> None:
    ai = [Claim("nodule", "new", "right", False, AI_NEW)]
    labels = json.dumps([{"finding": "nodule", "change": "new", "side": "right", "history": list(RECURRENT)}])
    final, urgent = final_reading("edited", labels, None, ai, False, {})  # type: ignore[misc]
    assert final[0].history == RECURRENT and urgent is False
    assert compare_study(ai, final, False, False).significant
