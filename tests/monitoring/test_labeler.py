import pytest

from monitoring.labeler import label_report


def pairs(text, **kw):
    return set(label_report(text, **kw).pairs())


@pytest.mark.parametrize("text,expected", [
    ("New large right pneumothorax.", {("pneumothorax", "new")}),
    ("No pneumothorax.", set()),
    ("No pneumothorax, right pleural effusion is unchanged.", {("effusion", "stable")}),
    ("No effusion, focal consolidation or pneumothorax.", set()),
    ("Lungs are clear without consolidation or pneumothorax.", set()),
    ("No change in the right pleural effusion.", {("effusion", "stable")}),
    ("No new consolidation.", set()),
    ("The left pneumothorax has resolved. Heart size is normal.", {("pneumothorax", "resolved")}),
    ("No residual effusion.", {("effusion", "resolved")}),
    ("The right effusion is no longer seen.", {("effusion", "resolved")}),
    ("Increased bilateral pleural effusions with enlarged cardiac silhouette.",
     {("effusion", "worsened"), ("cardiomegaly", "stable")}),
    ("Right effusion is unchanged, left effusion has increased.", {("effusion", "stable"), ("effusion", "worsened")}),
    ("Improved right lower lobe consolidation but new left nodule.", {("consolidation", "improved"), ("nodule", "new")}),
    ("Endotracheal tube in stable position. Worsening pulmonary edema.",
     {("support_device", "stable"), ("edema", "worsened")}),
    ("No prior study available for comparison. Cardiomegaly. Small left effusion.",
     {("cardiomegaly", "no_prior"), ("effusion", "no_prior")}),
])
def test_labels(text, expected):
    assert pairs(text) == expected


def test_uncertainty_is_kept_and_marked():
    r = label_report("Possible new left lower lobe consolidation. Pneumothorax cannot be excluded.")
    by = {lb.finding: lb for lb in r.labels}
    assert by["consolidation"].uncertain and by["consolidation"].change == "new"
    assert by["pneumothorax"].uncertain
    # U-zeros: uncertain labels drop out
    assert r.pairs(uncertain_as_positive=False) == frozenset()
    assert not r.urgent  # a hedged pneumothorax is not an urgent claim by itself


def test_uncertainty_cue_words():
    for t in ("Findings suggestive of pneumonia.", "Opacity concerning for mass.", "Questionable nodule.",
              "Likely atelectasis."):
        labs = label_report(t).labels
        assert labs and all(lb.uncertain for lb in labs), t


def test_urgency_and_side():
    r = label_report("New right pneumothorax. Findings communicated to Dr Smith at 10:00.")
    assert r.urgent
    assert r.labels[0].side == "right"
    assert not label_report("Stable small right pneumothorax.").urgent
    assert not label_report("No urgent findings. Stable cardiomegaly.").urgent


def test_has_prior_false_defaults_to_no_prior():
    assert pairs("Right pleural effusion.", has_prior=False) == {("effusion", "no_prior")}
    assert pairs("Right pleural effusion.") == {("effusion", "stable")}


def test_draft_and_final_in_the_same_terms():
    draft = "Stable right pleural effusion. New left lower lobe consolidation."
    final = "The right pleural effusion is unchanged. No consolidation."
    assert pairs(draft) - pairs(final) == {("consolidation", "new")}
