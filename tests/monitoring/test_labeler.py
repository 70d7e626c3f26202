import pytest

from monitoring.labeler import label_report
from tests.monitoring.labelled_set import BLIND_DEV, BLIND_HELDOUT, DATA, HELDOUT, LOWER_IS_BETTER, rates, score


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


def test_lobe_abbreviations_and_shorthand_give_side_and_zone():
    lb = one("Dense RLL consolidation.")
    assert (lb.finding, lb.side, lb.zone) == ("consolidation", "right", "lower")
    lb = one("?early LLL consolidation")
    assert (lb.side, lb.zone, lb.uncertain) == ("left", "lower", True)
    lb = one("R mid zone consolidation.")
    assert (lb.side, lb.zone) == ("right", "middle")
    assert one("Bilateral perihilar oedema.").zone == "middle"


def test_appeared_and_not_present_before_mean_new_not_negated():
    r = label_report("A small right pneumothorax has appeared since the prior examination.")
    assert [(lb.finding, lb.change) for lb in r.labels] == [("pneumothorax", "new")]
    assert r.urgent
    r = label_report("Left lower zone consolidation, not present on 14/06.")
    assert [(lb.finding, lb.change, lb.side, lb.zone) for lb in r.labels] == [("consolidation", "new", "left", "lower")]
    assert r.negated == ()
    assert one("12 mm nodule in the left mid zone, not seen previously.").change == "new"
    assert label_report("No pneumothorax is seen on today's film.").negated == ("pneumothorax",)


def test_hydropneumothorax_is_a_pneumothorax_and_an_effusion():
    r = label_report("Increasing right hydropneumothorax.")
    assert {(lb.finding, lb.change, lb.side) for lb in r.labels} == {
        ("pneumothorax", "worsened", "right"), ("effusion", "worsened", "right")}
    assert r.urgent
    assert set(label_report("No hydropneumothorax.").negated) == {"pneumothorax", "effusion"}


def test_malpositioned_tubes_and_lines_are_urgent_and_satisfactory_ones_are_not():
    for text in ("NG tube in the right main bronchus.", "ETT tip in the pharynx.",
                 "The nasogastric tube tip is in the trachea.", "Nasogastric tube coiled in the oesophagus.",
                 "The ETT tip is at the carina; recommend withdrawal by 2 cm.",
                 "Right subclavian line tip is directed cephalad into the right internal jugular vein."):
        assert label_report(text).urgent, text
    for text in ("ETT tip lies 4 cm above the carina, satisfactory position.", "NG tube tip is in the stomach.",
                 "Nasogastric tube coiled in the stomach.", "Right IJ line tip in the SVC.",
                 "The ETT previously in the right main bronchus has been withdrawn and is now satisfactory.",
                 "Displaced fracture of the left 7th rib."):
        assert not label_report(text).urgent, text


def test_a_documented_critical_result_communication_is_urgent_and_a_request_to_call_is_not():
    assert label_report("Findings discussed with Dr Smith by telephone at 14:05.").urgent
    assert label_report("Urgent result phoned to the on-call registrar.").urgent
    assert not label_report("Please discuss with the respiratory team.").urgent


def test_no_increase_is_stable_and_a_hedged_change_is_uncertain():
    lb = one("No increase in the right pneumothorax.")
    assert (lb.change, lb.uncertain) == ("stable", False)
    assert not label_report("No increase in the right pneumothorax.").urgent
    lb = one("Right pneumothorax, similar in size, possibly slightly larger.")
    assert (lb.change, lb.uncertain) == ("worsened", True)


def test_a_stated_size_makes_a_lesion_a_nodule_or_a_mass():
    assert one("A 4 cm nodular opacity in the right upper zone.").finding == "mass"
    assert one("A 25 mm mass-like opacity in the LLL.").finding == "nodule"


def test_a_description_hands_its_side_and_zone_to_the_finding_it_describes():
    r = label_report("Left basal opacity may represent atelectasis or consolidation.")
    assert {(lb.finding, lb.side, lb.zone, lb.uncertain) for lb in r.labels} == {
        ("atelectasis", "left", "lower", True), ("consolidation", "left", "lower", True)}


def test_a_change_in_the_next_sentence_carries_back():
    r = label_report("Left pneumothorax. This is new.")
    assert [(lb.finding, lb.change) for lb in r.labels] == [("pneumothorax", "new")]
    assert r.urgent


# Dev-set floors: what the rules reach on the three dev sets (all tuned on) when they were frozen for the
# blind held-out run (issue 30), so a regression fails. Each is the measured figure rounded down to 0.01
# (0.93 side and 0.96 zone on labelled_sentences: 153/163 and 158/163; that set's author read oedema as
# bilateral when no side is said, the blind writer does not, and the rules follow the blind writer).
DEV_FLOORS = {
    DATA: {"finding_recall": 1.0, "finding_precision": 1.0, "change": 1.0, "side": 0.93, "zone": 0.96,
           "uncertain": 1.0, "negated": 1.0, "urgent_recall": 1.0, "false_urgent": 0.0},
    HELDOUT: {"finding_recall": 1.0, "finding_precision": 0.98, "change": 1.0, "side": 0.93, "zone": 0.98,
              "uncertain": 1.0, "negated": 1.0, "urgent_recall": 1.0, "false_urgent": 0.0},
    BLIND_DEV: {"finding_recall": 1.0, "finding_precision": 1.0, "change": 1.0, "side": 1.0, "zone": 1.0,
                "uncertain": 1.0, "negated": 1.0, "urgent_recall": 1.0, "false_urgent": 0.0},
}


def _short_of(path, floors, unexposed: bool = False) -> dict[str, float]:
    """Fields of `path` that fall short of `floors` (below a floor, or above a false-urgent ceiling)."""
    got = rates(score(label_report, path, unexposed)[0])
    return {k: round(v, 3) for k, v in got.items()
            if (v > floors[k] + 1e-9 if k in LOWER_IS_BETTER else v < floors[k] - 1e-9)}


@pytest.mark.parametrize("path", list(DEV_FLOORS), ids=[p.stem for p in DEV_FLOORS])
def test_dev_sets_stay_at_or_above_what_was_reached(path):
    short = _short_of(path, DEV_FLOORS[path])
    assert not short, (short, score(label_report, path)[1][:10])


# Issue 30's bars ("done when") for the blind held-out set; false_urgent is a ceiling, the rest floors.
HELDOUT_BARS = {"finding_recall": 0.95, "finding_precision": 0.95, "change": 0.90, "side": 0.95, "zone": 0.90,
                "uncertain": 0.90, "negated": 0.95, "urgent_recall": 0.95, "false_urgent": 0.03}


@pytest.mark.parametrize("unexposed", [True, False], ids=["unexposed-of-record", "all-300"])
def test_blind_heldout_set_meets_the_issue_bars(unexposed):
    """The blind held-out set (300 sentences by a writer who never read the labeler) was scored once, after
    the rules were frozen at labeler commit db5b524 (issue 30), and never tuned on. Figures of record, on the
    280 sentences not exposed while tuning (labelled_set.EXPOSED): finding recall 256/261, precision 256/257,
    change 250/256, side 253/256, zone 250/256, hedging 256/256, negation 279/280, urgent recall 61/61, false
    urgent 0/219; on all 300: 276/281, 276/277, 270/276, 273/276, 270/276, 276/276, 299/300, 61/61, 0/239.
    Every bar was met on the first run, so the bars themselves are asserted. A later rule change must not be
    tuned on this set: a failure here means the change is reverted or the set is retired, not fitted."""
    short = _short_of(BLIND_HELDOUT, HELDOUT_BARS, unexposed)
    assert not short, short
