"""Finding-level concordance: the revision measure. Reports that say what the AI said in other
words are not revisions; a missed or invented finding, or another urgency, is."""

from datetime import datetime, timedelta

import pytest
from sqlmodel import Session

from monitoring.concordance import Claim, compare_study
from monitoring.dataset import load_frame
from monitoring.metrics import window_metrics
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine
from priorwatch.models import Comparison, Finding, Job, Review, SignedReport, Study, WorklistItem

T0 = datetime(2025, 3, 3, 9, 0)

# (AI findings as (finding, change, side), AI urgent, a radiologist's report saying the same in other words)
SAME_IN_OTHER_WORDS = [
    ([("effusion", "stable", "right")], False, "The right pleural effusion is unchanged in size."),
    ([("effusion", "stable", "right")], False, "Small R effusion, no significant change. No pneumothorax."),
    ([("pneumothorax", "worsened", "left")], True, "Left pneumothorax, increased in size. Discussed with Dr Jones."),
    ([("pneumothorax", "new", "right")], True, "Interval development of a small right apical pneumothorax."),
    ([("consolidation", "new", "left")], False, "New left lower lobe consolidation concerning for pneumonia."),
    ([("consolidation", "improved", "right")], False, "There has been interval improvement in the right basal "
                                                     "airspace disease."),
    ([("cardiomegaly", "stable", None)], False, "The cardiac silhouette is enlarged, similar to prior."),
    ([("edema", "worsened", "bilateral")], False, "Worsening pulmonary oedema."),
    ([("atelectasis", "stable", "bilateral"), ("effusion", "stable", "bilateral")], False,
     "Small bilateral pleural effusions and bibasilar atelectasis, unchanged."),
    ([("support_device", "stable", None)], False, "Lines and tubes as before. Lungs clear."),
    ([("nodule", "stable", "right")], False, "A 9 mm nodule in the right upper lobe is again seen, unchanged."),
    ([("effusion", "resolved", "left")], False, "The previously noted left effusion is no longer seen."),
    ([], False, "No acute cardiopulmonary process. No effusion or pneumothorax."),
    ([("effusion", "stable", "left")], False, "Left effusion."),  # no change word: compatible
]


def _add_study(s: Session, i: int, ai, ai_urgent: bool, text: str | None, *, review=None, at=T0) -> int:
    st = Study(study_uid=f"2.25.{i}", patient_id=f"P{i}", accession=f"A{i}", study_datetime=at, institution="SITE_A")
    s.add(st)
    s.flush()
    job = Job(study_id=st.id, idempotency_key=f"k{i}", state="done")
    s.add(job)
    s.flush()
    c = Comparison(job_id=job.id, study_id=st.id, status="done", interval_days=30, urgent=ai_urgent,
                   draft_text="draft", created_at=at)
    s.add(c)
    s.flush()
    for f, ch, side in ai:
        s.add(Finding(comparison_id=c.id, finding=f, change=ch, side=side, confidence=0.8))
    if text is not None:
        s.add(SignedReport(study_id=st.id, accession=st.accession, source="hl7", message_control_id=f"M{i}", text=text,
                           signed_at=at + timedelta(hours=3), received_at=at + timedelta(hours=3)))
    if review is not None:
        w = WorklistItem(comparison_id=c.id, study_id=st.id)
        s.add(w)
        s.flush()
        s.add(Review(worklist_item_id=w.id, comparison_id=c.id, reviewer="r", action=review[0],
                     final_labels_json=review[1], finished_at=at + timedelta(hours=1)))
    return st.id


def _metrics(pw_settings, since=T0 - timedelta(days=1), until=T0 + timedelta(days=1), as_of=None):
    frame = load_frame(get_engine(pw_settings), since, until, MonitoringSettings(), as_of=as_of)
    return frame, window_metrics(frame)


def test_reports_agreeing_in_other_words_give_revision_rate_zero(pw_settings):
    with Session(get_engine(pw_settings)) as s:
        for i, (ai, urg, text) in enumerate(SAME_IN_OTHER_WORDS):
            _add_study(s, i, ai, urg, text)
        s.commit()
    frame, m = _metrics(pw_settings)
    assert m["n_signed"] == len(SAME_IN_OTHER_WORDS)
    assert m["revision_rate"] == 0.0, frame.loc[frame["revised"], ["study_id", "category"]].to_dict("records")
    assert m["categories"]["ai_miss"] == m["categories"]["ai_false_positive"] == 0
    assert m["kappa"] == pytest.approx(1.0)


def test_missed_invented_and_urgency_disagreements_are_revisions(pw_settings):
    with Session(get_engine(pw_settings)) as s:
        _add_study(s, 1, [("effusion", "stable", "right")], False, "Stable right effusion. New left pneumothorax.")
        _add_study(s, 2, [("pneumothorax", "new", "right")], True, "No pneumothorax.")
        _add_study(s, 3, [("effusion", "new", "left")], False, "The left effusion is unchanged.")  # new vs stable
        _add_study(s, 4, [("effusion", "new", "left")], False, "Left effusion has increased.")  # new vs worsened: minor
        _add_study(s, 5, [("support_device", "stable", None)], False, "Lungs clear.")  # device omitted: minor
        s.commit()
    frame, m = _metrics(pw_settings)
    cat = dict(zip(frame["study_id"], frame["category"]))
    assert [cat[i] for i in (1, 2, 3, 4, 5)] == ["urgency_disagreement", "urgency_disagreement",
                                                  "change_disagreement", "minor", "minor"]
    assert m["revision_rate"] == pytest.approx(3 / 5)
    assert m["urgent_confusion"] == {"tp": 0, "fp": 1, "fn": 1, "tn": 3}
    eff = m["per_finding"]["effusion"]
    assert (eff["tp"], eff["fp"], eff["fn"]) == (3, 0, 0)
    assert m["per_finding"]["pneumothorax"]["fp"] == 1 and m["per_finding"]["pneumothorax"]["fn"] == 1


def test_reviewer_labels_win_over_the_labeler(pw_settings):
    with Session(get_engine(pw_settings)) as s:
        _add_study(s, 1, [("effusion", "stable", "right")], False, None, review=("accepted", "[]"))
        _add_study(s, 2, [("effusion", "stable", "right")], False, None,
                   review=("edited", '[{"finding": "effusion", "change": "worsened", "side": "right", "zone": null,'
                                     ' "urgent": false}]'))
        s.commit()
    frame, m = _metrics(pw_settings)
    assert list(frame.sort_values("study_id")["category"]) == ["agree", "change_disagreement"]


def test_compare_study_unit():
    same = compare_study([Claim("effusion", "stable", "right")], [Claim("effusion", "unknown", "right")], False, False)
    assert same.category == "agree" and not same.significant
    hedged = compare_study([], [Claim("consolidation", "unknown", "right", uncertain=True)], False, False)
    assert hedged.category == "minor" and not hedged.significant
