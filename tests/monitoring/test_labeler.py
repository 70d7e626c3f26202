import pytest

from monitoring.labeler import label_report
from tests.monitoring.labelled_set import DATA, HELDOUT, score


def one(text):
    labs = label_report(text).labels
    assert len(labs) == 1, labs
    return labs[0]


def test_change_word_after_a_comma_belongs_to_the_finding_and_makes_it_urgent():
    r = label_report("Left pneumothorax, increased in size.")
    assert [(lb.finding, lb.change, lb.side) for lb in r.labels] == [("pneumothorax", "worsened", "left")]
    assert r.urgent


def test_hedged_finding_without_change_word_has_unknown_change_not_stable():
    lb = one("Possible small left effusion.")
    assert (lb.finding, lb.change, lb.side, lb.uncertain) == ("effusion", "unknown", "left", True)


def test_cannot_exclude_keeps_side_and_zone():
    lb = one("Cannot exclude early consolidation at the right base.")
    assert (lb.finding, lb.side, lb.zone, lb.uncertain) == ("consolidation", "right", "lower", True)


def test_support_devices_are_findings():
    assert one("Lines and tubes in satisfactory position.").finding == "support_device"
    assert one("Interval removal of the endotracheal tube.").change == "resolved"


def test_negation_and_lists():
    r = label_report("No focal consolidation, effusion, or pneumothorax.")
    assert r.labels == () and set(r.negated) == {"consolidation", "effusion", "pneumothorax"}
    r = label_report("No pneumothorax, right pleural effusion is unchanged.")
    assert [(lb.finding, lb.change) for lb in r.labels] == [("effusion", "stable")]


def test_each_clause_keeps_its_own_change():
    r = label_report("Worsening right basilar consolidation and a new small right effusion.")
    assert {(lb.finding, lb.change) for lb in r.labels} == {("consolidation", "worsened"), ("effusion", "new")}


def test_new_large_effusion_is_urgent_but_a_hedged_pneumothorax_is_not():
    assert label_report("There is a new large left pleural effusion.").urgent
    assert not label_report("Possible tiny left apical pneumothorax.").urgent
    assert not label_report("Stable small right pneumothorax.").urgent


def test_no_prior_report_gets_no_prior_change():
    assert label_report("Right pleural effusion.", has_prior=False).labels[0].change == "no_prior"


# Floors a few points under what was measured (the note in issue 13 has the figures); the held-out
# file was never used to tune the rules, so its floors are lower.
DEV_FLOORS = {"finding_recall": 0.97, "finding_precision": 0.95, "change": 0.95, "side": 0.92, "zone": 0.94,
              "uncertain": 0.94, "negated": 0.97, "urgent": 0.97}
HELDOUT_FLOORS = {"finding_recall": 0.88, "finding_precision": 0.92, "change": 0.85, "side": 0.92, "zone": 0.92,
                  "uncertain": 0.92, "negated": 0.90, "urgent": 0.93}


@pytest.mark.parametrize("path,floors", [(DATA, DEV_FLOORS), (HELDOUT, HELDOUT_FLOORS)], ids=["dev", "heldout"])
def test_accuracy_per_field_on_hand_labelled_sentences(path, floors):
    acc, misses = score(label_report, path)
    low = {k: round(c / n, 3) for k, (c, n) in acc.items() if c / n < floors[k]}
    assert not low, (low, misses[:10])
