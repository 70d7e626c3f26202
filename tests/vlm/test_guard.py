"""The guard on recorded model outputs against registration evidence: support, contradiction,
comparison words without a prior, urgent claims without evidence, versions of both engines."""

from __future__ import annotations

from comparison.guard import comparison_words, guard
from comparison.vlm.parse import parse_model_output
from priorwatch.vocabulary import Change, ComparisonResult, Evidence, FindingResult, FindingType, GuardMark, Side, Zone
from tests.vlm import recorded as rec


def vlm_result(text: str, has_prior: bool) -> ComparisonResult:
    return parse_model_output(text, has_prior=has_prior).to_result(
        engine="vlm", engine_version="priorwatch-vlm/1", model="tiny", model_version="abc", has_prior=has_prior
    )


def evidence(*findings: FindingResult, has_prior: bool = True) -> ComparisonResult:
    return ComparisonResult(
        engine="registration", engine_version="reg-2", model="registration", model_version="r1",
        has_prior=has_prior, findings=list(findings), draft_text="registration draft",
    )


def ev(finding: FindingType, side: Side, zone: Zone, change: Change, *, urgent: bool = False,
       score: float = 0.3) -> FindingResult:
    return FindingResult(
        finding=finding, side=side, zone=zone, change=change, urgent=urgent, confidence=0.8,
        evidence=Evidence(side=side, zone=zone, box=(10, 10, 40, 40), score=score),
    )


def test_supported_claims_get_the_evidence() -> None:
    r = guard(vlm_result(rec.VALID_JSON, True),
              evidence(ev(FindingType.effusion, Side.right, Zone.lower, Change.new)), has_prior=True)
    effusion, nodule = r.findings
    assert effusion.guard == GuardMark.supported
    assert effusion.evidence is not None and effusion.evidence.box == (10, 10, 40, 40)
    assert nodule.guard == GuardMark.unverified  # stable, never measured in both images
    assert r.engine == "vlm" and r.model == "tiny"
    assert "priorwatch-vlm/1" in r.engine_version and "registration reg-2" in r.engine_version
    assert "r1" in r.engine_version


def test_claim_without_evidence_is_unsupported() -> None:
    r = guard(vlm_result(rec.VALID_JSON, True), evidence(), has_prior=True)
    assert r.findings[0].guard == GuardMark.unsupported
    assert any("no change in the image evidence" in n for n in r.notes)


def test_claim_contradicting_the_evidence_is_unsupported() -> None:
    # The model says the right basal consolidation worsened; the images show it improved.
    r = guard(vlm_result(rec.JSON_IN_PROSE, True), evidence(ev(FindingType.consolidation, Side.right, Zone.lower, Change.improved)), True)
    (f,) = r.findings
    assert f.guard == GuardMark.unsupported
    assert any("contradicted" in n for n in r.notes)


def test_stable_claim_contradicted_by_change() -> None:
    r = guard(vlm_result(rec.VALID_JSON, True), evidence(ev(FindingType.nodule, Side.left, Zone.upper, Change.worsened)), True)
    nodule = r.findings[1]
    assert nodule.change == Change.stable and nodule.guard == GuardMark.unsupported


def test_side_and_zone_must_match() -> None:
    r = guard(vlm_result(rec.VALID_JSON, True), evidence(ev(FindingType.effusion, Side.left, Zone.lower, Change.new)), True)
    assert r.findings[0].guard == GuardMark.unsupported  # right lower claimed, left lower shown
    assert any("did not describe" in n for n in r.notes)  # and the left lower change is noted


def test_bilateral_evidence_matches_either_side() -> None:
    r = guard(vlm_result(rec.VALID_JSON, True), evidence(ev(FindingType.effusion, Side.bilateral, Zone.lower, Change.worsened)), True)
    assert r.findings[0].guard == GuardMark.supported


def test_comparison_words_without_prior_are_flagged() -> None:
    r = guard(vlm_result(rec.NO_PRIOR_WORDS, False), evidence(has_prior=False), has_prior=False)
    (f,) = r.findings
    assert f.change == Change.new and f.guard == GuardMark.unsupported  # the claim is kept, and marked
    assert any("no prior to compare" in n for n in r.notes)
    words_note = next(n for n in r.notes if "comparison words" in n)
    for w in ("new", "worse", "unchanged"):
        assert w in words_note
    assert not r.has_prior


def test_no_prior_claims_are_unverified_and_plain_text_not_flagged() -> None:
    text = ('{"narrative": "Right lower consolidation. No prior study for comparison.", "findings": '
            '[{"finding": "consolidation", "side": "right", "zone": "lower", "change": "no_prior", "confidence": 0.6}]}')
    r = guard(vlm_result(text, False), evidence(has_prior=False), has_prior=False)
    assert r.findings[0].guard == GuardMark.unverified
    assert not any("comparison words" in n for n in r.notes)


def test_urgent_claim_without_evidence_stays_urgent_and_unverified() -> None:
    r = guard(vlm_result(rec.URGENT_UNSUPPORTED, True), evidence(), has_prior=True)
    (f,) = r.findings
    assert f.urgent and f.guard == GuardMark.unverified
    assert r.urgent
    assert any("urgent claim" in n and "unverified" in n for n in r.notes)


def test_urgent_claim_without_prior_stays_urgent() -> None:
    r = guard(vlm_result(rec.URGENT_UNSUPPORTED, False), evidence(has_prior=False), has_prior=False)
    assert r.urgent and r.findings[0].urgent and r.findings[0].guard == GuardMark.unverified


def test_urgent_evidence_the_model_missed_is_added() -> None:
    r = guard(vlm_result(rec.VALID_JSON, True),
              evidence(ev(FindingType.pneumothorax, Side.left, Zone.middle, Change.new, urgent=True)), has_prior=True)
    assert r.urgent
    added = r.findings[-1]
    assert added.urgent and added.guard == GuardMark.supported and added.zone == Zone.middle
    assert any("not mentioned by the model" in n for n in r.notes)


def test_unstructured_result_passes_through() -> None:
    r = guard(vlm_result(rec.PROSE_URGENT, True), evidence(), has_prior=True)
    assert not r.structured and r.urgent and r.findings == []


def test_guard_does_not_modify_its_input() -> None:
    v = vlm_result(rec.VALID_JSON, True)
    guard(v, evidence(), True)
    assert all(f.guard is None for f in v.findings)


def test_comparison_words_helper() -> None:
    assert comparison_words("No prior available. Small right effusion.") == []
    assert comparison_words("Effusion is NEW and increased since the prior") == ["new", "increased", "since the prior"]


# --- One test per rule of the type- and place-checking guard (issue 11) ----------------------


def test_evidence_of_another_type_does_not_support_a_claim() -> None:
    # The model says new right basal consolidation; the images show a new right basal effusion.
    r = guard(vlm_result(rec.TYPE_MISMATCH, True),
              evidence(ev(FindingType.effusion, Side.right, Zone.lower, Change.new)), True)
    (f,) = r.findings
    assert f.guard == GuardMark.unverified
    assert any("new effusion (right lower), not a consolidation" in n for n in r.notes)


def test_untyped_change_at_the_place_leaves_a_claim_unverified() -> None:
    r = guard(vlm_result(rec.TYPE_MISMATCH, True),
              evidence(ev(FindingType.other, Side.right, Zone.lower, Change.new)), True)
    assert r.findings[0].guard == GuardMark.unverified


def test_compatible_group_supports_nodule_claim_with_mass_evidence() -> None:
    r = guard(vlm_result(rec.NODULE_FOR_MASS, True),
              evidence(ev(FindingType.mass, Side.left, Zone.middle, Change.worsened)), True)
    (f,) = r.findings
    assert f.finding == FindingType.nodule and f.change == Change.worsened
    assert f.guard == GuardMark.supported


def test_claim_without_side_or_zone_is_unverified_even_when_evidence_exists() -> None:
    shown = evidence(ev(FindingType.consolidation, Side.right, Zone.lower, Change.worsened))
    r = guard(vlm_result(rec.UNLOCALISED, True), shown, True)
    assert r.findings[0].guard == GuardMark.unverified
    assert any("no side or zone" in n for n in r.notes)
    # a parenchymal claim with a side but no zone is not placed either
    r2 = guard(vlm_result(rec.SIDE_WITHOUT_ZONE, True), shown, True)
    assert r2.findings[0].zone is None and r2.findings[0].guard == GuardMark.unverified


def test_pleural_claim_is_placed_by_side() -> None:
    r = guard(vlm_result(rec.PTX_SIDE_ONLY, True),
              evidence(ev(FindingType.pneumothorax, Side.left, Zone.upper, Change.new, urgent=True)), True)
    (f,) = r.findings
    assert f.guard == GuardMark.supported and f.urgent
    wrong_side = guard(vlm_result(rec.PTX_SIDE_ONLY, True),
                       evidence(ev(FindingType.pneumothorax, Side.right, Zone.upper, Change.new, urgent=True)), True)
    assert wrong_side.findings[0].guard == GuardMark.unverified  # urgent: never 'unsupported'
    assert wrong_side.findings[0].urgent


def test_stable_claim_is_unverified_without_a_measurement_in_both_images() -> None:
    r = guard(vlm_result(rec.STABLE_NODULE, True), evidence(), True)
    (f,) = r.findings
    assert f.change == Change.stable and f.guard == GuardMark.unverified
    assert any("measured" in n for n in r.notes)


def test_stable_claim_is_supported_by_a_lesion_measured_in_both_images() -> None:
    r = guard(vlm_result(rec.STABLE_NODULE, True),
              evidence(ev(FindingType.nodule, Side.left, Zone.upper, Change.stable)), True)
    assert r.findings[0].guard == GuardMark.supported
