"""Issue 28 items 4-5 on the VLM path: an unreadable model answer never reaches the draft, and
claims about a pair the evidence engine did not compare are not findings.

Through the real local Triton: the tiny random LLaVA (a few tokens of random words: never our
JSON) answers, the real registration model gives the evidence, and the guard shows that
evidence, unverified, under the draft header; the model's raw text is not the draft.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comparison import CompareContext, load_image, synthetic
from comparison.draft import DRAFT_HEADER
from comparison.guard import UNREADABLE_SENTENCE, guard
from comparison.triton_client import TritonComparator
from comparison.vlm import TritonProcess, VlmTritonClient, compare_with_fallback, parse_model_output
from tests.vlm import recorded as rec
from priorwatch.vocabulary import Change, ComparisonResult, Evidence, FindingResult, FindingType, GuardMark, Side, Zone

pytestmark = pytest.mark.triton

GARBAGE = "} } } right right right ] ] pneumo"


def _evidence() -> ComparisonResult:
    findings = [
        FindingResult(finding=FindingType.pneumothorax, side=Side.left, zone=Zone.upper, change=Change.new, urgent=True,
                      confidence=0.9, evidence=Evidence(side=Side.left, zone=Zone.upper, box=(1, 2, 3, 4))),
        FindingResult(finding=FindingType.nodule, side=Side.right, zone=Zone.middle, change=Change.new, confidence=0.6,
                      evidence=Evidence(side=Side.right, zone=Zone.middle, box=(5, 6, 7, 8))),
    ]
    return ComparisonResult(engine="registration", engine_version="0.4.8", model="sitk", model_version="s",
                            has_prior=True, findings=findings,
                            draft_text=f"{DRAFT_HEADER} Compared with the prior study. URGENT: New pneumothorax.")


def test_garbage_answer_shows_every_evidence_finding_unverified() -> None:
    vlm = parse_model_output(GARBAGE, has_prior=True).to_result(
        engine="vlm", engine_version="v", model="tiny", model_version="t", has_prior=True)
    assert not vlm.structured and vlm.draft_text == GARBAGE.strip()
    r = guard(vlm, _evidence(), has_prior=True)
    assert [(f.finding, f.guard, f.urgent) for f in r.findings] == [
        (FindingType.pneumothorax, GuardMark.unverified, True), (FindingType.nodule, GuardMark.unverified, False)]
    assert r.urgent and r.draft_text.startswith(f"{DRAFT_HEADER} {UNREADABLE_SENTENCE}")
    assert "right right" not in r.draft_text and "}" not in r.draft_text
    assert UNREADABLE_SENTENCE in r.notes and r.engine == "vlm"


def test_claims_about_a_pair_not_compared_are_not_findings_but_urgent_ones_stay() -> None:
    why = "the prior does not appear to be the same patient"
    refusal = ComparisonResult(engine="registration", engine_version="0.4.8", model="sitk", model_version="s",
                               has_prior=True, draft_text=f"{DRAFT_HEADER} Not compared: {why}.", not_compared=why,
                               notes=[f"Not compared: {why}."])
    for text, urgent in ((rec.VALID_JSON, False), (rec.URGENT_UNSUPPORTED, True)):
        vlm = parse_model_output(text, has_prior=True).to_result(
            engine="vlm", engine_version="v", model="tiny", model_version="t", has_prior=True)
        assert vlm.structured and vlm.findings
        r = guard(vlm, refusal, has_prior=True)
        assert r.not_compared == why and r.urgent == urgent
        assert [(f.urgent, f.guard) for f in r.findings] == [(True, GuardMark.unverified)] * urgent
        assert r.draft_text.startswith(f"{DRAFT_HEADER} Not compared: {why}.")
        assert "effusion" not in r.draft_text.lower()


@pytest.fixture(scope="module")
def ptx_pair(tmp_path_factory: pytest.TempPathFactory) -> synthetic.PairSpec:
    return synthetic.make_pair(tmp_path_factory.mktemp("ptx"), "PW-V-PTX", FindingType.pneumothorax, Change.new,
                               Side.left, Zone.upper, seed=22, interval_days=3)


def test_unreadable_answer_through_triton_shows_the_evidence_unverified(triton: TritonProcess,
                                                                         ptx_pair: synthetic.PairSpec) -> None:
    cur, pri = load_image(ptx_pair.current_paths[0]), load_image(ptx_pair.prior_paths[0])
    ctx = CompareContext(interval_days=3, pixel_spacing_mm=cur.spacing_mm, current_view=cur.comparison_view,
                         prior_view=pri.comparison_view, orientation_known=True)
    with TritonComparator(triton.grpc_url) as registration, VlmTritonClient(triton.grpc_url, timeout_s=60) as vlm:
        out = compare_with_fallback(cur.pixels, pri.pixels, ctx, registration=registration, vlm=vlm)
    r = out.result
    assert out.raw_text and out.raw_text.strip()  # the tiny random model wrote something
    assert not parse_model_output(out.raw_text, has_prior=True).structured  # and it is not our JSON
    assert r.engine == "vlm" and not r.fallback and not r.structured
    assert out.evidence is not None and out.evidence.findings
    assert [(f.finding, f.side, f.change) for f in r.findings] == \
        [(f.finding, f.side, f.change) for f in out.evidence.findings]
    assert {f.guard for f in r.findings} == {GuardMark.unverified}
    assert r.urgent and [f.side for f in r.findings if f.urgent and f.finding == FindingType.pneumothorax] == [Side.left]
    assert r.draft_text.startswith(f"{DRAFT_HEADER} {UNREADABLE_SENTENCE}")
    assert out.raw_text.strip() not in r.draft_text
    assert "URGENT" in r.draft_text and "pneumothorax on the left" in r.draft_text
