"""The parser on recorded model outputs: valid JSON, JSON in prose, near-JSON, truncated,
broken and prose-only output. It never raises; what does not parse is unstructured."""

from __future__ import annotations

import pytest

from comparison.vlm.parse import extract_json, parse_model_output, urgent_terms_in
from priorwatch.vocabulary import Change, FindingType, Side, Zone
from tests.vlm import recorded as rec


def test_valid_json() -> None:
    p = parse_model_output(rec.VALID_JSON, has_prior=True)
    assert p.structured
    assert p.narrative.startswith("New right lower zone effusion")
    assert [(f.finding, f.side, f.zone, f.change) for f in p.findings] == [
        (FindingType.effusion, Side.right, Zone.lower, Change.new),
        (FindingType.nodule, Side.left, Zone.upper, Change.stable),
    ]
    assert p.findings[0].confidence == pytest.approx(0.82)
    assert not p.notes


def test_json_in_prose_with_fence_and_synonyms() -> None:
    p = parse_model_output(rec.JSON_IN_PROSE, has_prior=True)
    assert p.structured
    (f,) = p.findings
    assert (f.finding, f.side, f.zone, f.change, f.urgent) == (
        FindingType.consolidation, Side.right, Zone.lower, Change.worsened, False)
    assert f.confidence == pytest.approx(0.75)


def test_json_in_prose_without_fence() -> None:
    p = parse_model_output(rec.JSON_IN_PROSE_NO_FENCE, has_prior=True)
    assert p.structured and p.findings[0].change == Change.resolved
    assert p.narrative == "Left pneumothorax has resolved."


def test_near_json_is_repaired() -> None:
    p = parse_model_output(rec.NEAR_JSON, has_prior=True)
    assert p.structured
    (f,) = p.findings
    assert f.finding == FindingType.cardiomegaly and f.change == Change.stable and f.side is None


def test_truncated_json_keeps_what_was_complete() -> None:
    p = parse_model_output(rec.TRUNCATED, has_prior=True)
    assert p.structured
    assert p.findings[0].finding == FindingType.pneumothorax and p.findings[0].urgent
    assert any("cut off" in n for n in p.notes)


def test_broken_json_is_unstructured_not_a_crash() -> None:
    p = parse_model_output(rec.BROKEN, has_prior=True)
    assert not p.structured and p.findings == []
    assert p.narrative == rec.BROKEN.strip()
    assert any("not valid JSON" in n for n in p.notes)


@pytest.mark.parametrize("text", ["", None, "   ", "{", "[]", "}{", "null", "42", '"just a string"', "{" * 5000])
def test_garbage_never_raises(text: str | None) -> None:
    p = parse_model_output(text, has_prior=False)
    assert not p.structured
    assert p.narrative


def test_prose_only_negated_urgent_terms_are_not_urgent() -> None:
    p = parse_model_output(rec.PROSE_ONLY, has_prior=True)
    assert not p.structured and not p.urgent_text
    r = p.to_result(engine="vlm", engine_version="1", model="m", model_version="v", has_prior=True)
    assert not r.urgent and not r.structured and r.draft_text == rec.PROSE_ONLY


def test_prose_naming_an_urgent_term_is_urgent() -> None:
    p = parse_model_output(rec.PROSE_URGENT, has_prior=True)
    assert not p.structured and p.urgent_text
    r = p.to_result(engine="vlm", engine_version="1", model="m", model_version="v", has_prior=True)
    assert r.urgent


def test_urgent_entry_that_fails_validation_is_kept() -> None:
    p = parse_model_output(rec.URGENT_INVALID_ENTRY, has_prior=False)
    (f,) = p.findings
    assert f.urgent and f.finding == FindingType.other and f.change == Change.no_prior
    assert f.confidence == 0.5


def test_missing_change_reads_by_prior() -> None:
    text = '{"findings": [{"finding": "effusion", "side": "left", "confidence": 0.4}]}'
    assert parse_model_output(text, has_prior=False).findings[0].change == Change.no_prior
    with_prior = parse_model_output(text, has_prior=True)
    assert with_prior.findings[0].change == Change.new
    assert with_prior.narrative  # written from the findings when the model gave none


def test_bare_list_of_findings_and_odd_values() -> None:
    text = ('[{"finding": "pleural effusion", "side": "both", "zone": "bases", "change": "increased", '
            '"urgent": "yes", "confidence": 140}, {"finding": "banana", "change": "new", "confidence": -1}, 7]')
    p = parse_model_output(text, has_prior=True)
    assert p.structured
    a, b = p.findings
    assert (a.finding, a.side, a.zone, a.change, a.urgent, a.confidence) == (
        FindingType.effusion, Side.bilateral, Zone.lower, Change.worsened, True, 1.0)
    assert b.finding == FindingType.other and b.confidence == 0.0
    assert any("not an object" in n for n in p.notes)


def test_extract_prefers_schema_object_over_other_braces() -> None:
    text = 'Template {x} and {"a": 1} then {"narrative": "ok", "findings": []}'
    obj, truncated = extract_json(text)
    assert obj == {"narrative": "ok", "findings": []} and not truncated


def test_list_in_prose_keeps_every_finding() -> None:
    text = ('Findings follow: [{"finding": "effusion", "change": "new", "confidence": 0.5}, '
            '{"finding": "edema", "change": "improved", "confidence": 0.5}] end')
    p = parse_model_output(text, has_prior=True)
    assert [f.finding for f in p.findings] == [FindingType.effusion, FindingType.edema]


@pytest.mark.parametrize("text", [rec.PROSE_NEGATION_THEN_URGENT, rec.PROSE_NEGATION_AND_POSITIVE, rec.PROSE_BUT_PTX])
def test_negation_covers_only_its_own_clause(text: str) -> None:
    p = parse_model_output(text, has_prior=True)
    assert not p.structured and p.urgent_text
    assert urgent_terms_in(text) == ["pneumothorax"]


@pytest.mark.parametrize("text", [rec.PROSE_NEGATION_LIST, rec.PROSE_RESOLVED_PTX, rec.PROSE_ONLY])
def test_negated_list_and_resolved_pneumothorax_are_not_urgent(text: str) -> None:
    assert urgent_terms_in(text) == []
    assert not parse_model_output(text, has_prior=True).urgent_text
