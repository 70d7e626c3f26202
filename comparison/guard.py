"""The hallucination guard: every VLM claim checked against the registration engine's evidence.

Runs in the worker on every VLM result (`guard`). Evidence *matches* a claim when it is of the
same finding type or of a compatible group (`COMPATIBLE`: nodule/mass; consolidation/
atelectasis), on the same side and in the same zone (`PLEURAL`: pneumothorax and effusion
fill the pleural space, so for them the side alone places them). For each claimed finding:

- a claim without a side (or, for a parenchymal finding, without a zone) is ``unverified``:
  there is no place to check it at;
- a change claim (new / worsened, improved / resolved) is ``supported`` only by matching
  evidence that changed the same way; matching evidence of the opposite direction makes it
  ``unsupported`` (contradicted); a change of another type at that place (or one the engine
  could not type, ``other``) leaves it ``unverified``; nothing at that place: ``unsupported``;
- a ``stable`` claim is ``unverified`` unless the evidence measured that lesion in both images
  (a matching evidence finding whose change is ``stable``): registration sees differences,
  and a lesion that did not change leaves none, so "nothing changed here" proves nothing;
  matching evidence of a change makes it ``unsupported``;
- with no prior, a comparison claim (anything but ``no_prior``) is ``unsupported`` and
  comparison words in the draft text are flagged; a ``no_prior`` claim is ``unverified`` unless
  matching evidence is there (change evidence needs a prior);
- an urgent claim is never dropped and never demoted: where the rules above would say
  ``unsupported`` it is kept urgent and marked ``unverified``, with a note;
- urgent evidence the model did not mention is added as a finding (marked ``supported``), and
  evidence of change the model did not describe is noted, so nothing the images show is lost;
- an answer that could not be read (``structured`` False: prose, garbage, no JSON) never becomes
  the draft: the evidence engine's findings are shown, each ``unverified`` (urgent ones stay
  urgent), under the draft header, with a note that the model's answer could not be read;
- where the evidence engine did not compare the pair (``not_compared``: a lateral view, another
  person's prior, a failed registration) the model's claims are not findings either: the
  result is that refusal, except that an urgent claim is kept, urgent and ``unverified``.

The result keeps the VLM's engine and model, and records the evidence engine's versions too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from comparison.draft import DRAFT_HEADER, finding_sentence
from priorwatch.vocabulary import APPEARING, CHANGED, DISAPPEARING, Change, ComparisonResult, Evidence, FindingResult, FindingType, GuardMark, Side, Zone

__all__ = ["COMPATIBLE", "PLEURAL", "UNREADABLE_SENTENCE", "comparison_words", "guard"]


# Finding types a radiograph cannot tell apart reliably: evidence of one backs a claim of the other.
COMPATIBLE: tuple[frozenset[FindingType], ...] = (
    frozenset({FindingType.nodule, FindingType.mass}),  # the same round lesion either side of 30 mm
    frozenset({FindingType.consolidation, FindingType.atelectasis}),  # both airspace opacity on a film
)
# Pleural-space findings: placed by side only (a pneumothorax or effusion spans zones).
PLEURAL = frozenset({FindingType.pneumothorax, FindingType.effusion})

# What the draft says when the model's answer could not be read (its raw text is never the draft).
UNREADABLE_SENTENCE = ("The model's answer could not be read; the findings below are the image evidence alone, "
                       "unverified.")

# Words that only make sense against a prior (matched on word boundaries, case-insensitive).
COMPARISON_WORDS = (
    "new", "newly", "worse", "worsened", "worsening", "unchanged", "stable", "improved", "improving",
    "improvement", "resolved", "resolving", "resolution", "increased", "increasing", "decreased",
    "decreasing", "interval", "progressed", "progression", "persistent", "persists", "again seen",
    "since the prior", "compared with", "compared to", "previously", "prior study", "prior exam",
)
_COMPARISON_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in COMPARISON_WORDS) + r")\b", re.I)
# "no new", "no prior", "no previous", "without comparison": statements about the absence of a prior.
_NEGATED_RE = re.compile(r"\b(no|without)\s+(prior|previous|comparison)\b", re.I)


def comparison_words(text: str) -> list[str]:
    """Comparison words used in `text` (lower case, each once, in order of first use)."""
    cleaned = _NEGATED_RE.sub(" ", text or "")
    seen: list[str] = []
    for m in _COMPARISON_RE.finditer(cleaned):
        w = m.group(1).lower()
        if w not in seen:
            seen.append(w)
    return seen


def _where(f: FindingResult) -> tuple[Side | None, Zone | None]:
    side = f.side or (f.evidence.side if f.evidence else None)
    zone = f.zone or (f.evidence.zone if f.evidence else None)
    return side, zone


def _side_match(a: Side | None, b: Side | None) -> bool:
    return a is not None and b is not None and (a == b or Side.bilateral in (a, b))


def _same_kind(a: FindingType, b: FindingType) -> bool:
    return a == b or any(a in g and b in g for g in COMPATIBLE)


def _placed(f: FindingResult) -> bool:
    """Does the claim say where it is, enough to check it (side; and zone unless pleural)?"""
    side, zone = _where(f)
    return side is not None and (zone is not None or f.finding in PLEURAL)


def _at(claim: FindingResult, e: FindingResult) -> bool:
    """Is evidence `e` at the claim's place (side, and zone unless both are pleural findings)?"""
    cs, cz = _where(claim)
    es, ez = _where(e)
    if not _side_match(cs, es):
        return False
    if claim.finding in PLEURAL and e.finding in PLEURAL:
        return True
    return cz is not None and cz == ez


def _label(f: FindingResult) -> str:
    side, zone = _where(f)
    where = " ".join(x for x in (side, zone) if x) or "unlocalised"
    return f"{f.change} {f.finding} ({where})"


def _matching(claim: FindingResult, evidence: Iterable[FindingResult]) -> list[FindingResult]:
    """Evidence at the claim's place of the same type or compatible group, strongest first."""
    out = [e for e in evidence if _same_kind(claim.finding, e.finding) and _at(claim, e)]
    return sorted(out, key=lambda e: (e.finding != claim.finding, -(e.confidence or 0.0)))


def _elsewhere_typed(claim: FindingResult, evidence: Iterable[FindingResult]) -> list[FindingResult]:
    """Changes at the claim's place of another type (or untyped, ``other``)."""
    return [e for e in evidence if not _same_kind(claim.finding, e.finding) and _at(claim, e)
            and e.change in CHANGED]


def _evidence_of(e: FindingResult) -> Evidence:
    if e.evidence is not None:
        ev = e.evidence.model_copy()
        side, zone = _where(e)
        return ev.model_copy(update={"side": ev.side or side, "zone": ev.zone or zone})
    side, zone = _where(e)
    return Evidence(zone=zone, side=side, score=e.confidence)


def _judge(claim: FindingResult, evidence: list[FindingResult], has_prior: bool) -> tuple[GuardMark, str | None,
                                                                                            FindingResult | None]:
    """(mark, reason when not supported, the evidence finding that backs it)."""
    if not has_prior:
        if claim.change != Change.no_prior:
            return GuardMark.unsupported, f"claims '{claim.change}' but there is no prior to compare with", None
        m = _matching(claim, evidence)
        if m:
            return GuardMark.supported, None, m[0]
        return GuardMark.unverified, "no prior: nothing to check it against", None
    if claim.change == Change.no_prior:
        return GuardMark.unverified, "the model wrote 'no_prior' although a prior was compared", None
    if not _placed(claim):
        return GuardMark.unverified, "the claim gives no side or zone: nothing to check it at", None
    m = _matching(claim, evidence)
    other_kind = _elsewhere_typed(claim, evidence)
    if claim.change in CHANGED:
        same = APPEARING if claim.change in APPEARING else DISAPPEARING
        agree = [e for e in m if e.change in same]
        if agree:
            return GuardMark.supported, None, agree[0]
        against = [e for e in m if e.change in CHANGED]
        if against:
            return GuardMark.unsupported, f"contradicted: the evidence shows {_label(against[0])}", None
        if other_kind:
            return GuardMark.unverified, f"the evidence there is {_label(other_kind[0])}, not a {claim.finding}", None
        return GuardMark.unsupported, "no change in the image evidence for that zone", None
    # stable
    changed = [e for e in m if e.change in CHANGED]
    if changed:
        return GuardMark.unsupported, f"contradicted: the evidence shows {_label(changed[0])}", None
    measured = [e for e in m if e.change == Change.stable]
    if measured:
        return GuardMark.supported, None, measured[0]
    return GuardMark.unverified, "stable is not measured: the evidence did not find that lesion in both images", None


def guard(vlm: ComparisonResult, evidence: ComparisonResult, has_prior: bool) -> ComparisonResult:
    """Mark each of `vlm`'s findings against `evidence` (the registration result) and add notes.

    Parameters
    ----------
    vlm
        The VLM's result (already parsed); not modified.
    evidence
        The registration engine's result for the same current/prior pair.
    has_prior
        Whether the worker compared against a prior (the truth, whatever the model wrote).

    Returns
    -------
    ComparisonResult
        A copy of `vlm` with each finding's ``guard`` set, urgent claims kept urgent, notes
        explaining every mark that is not ``supported``, and both engines' versions.
    """
    if has_prior and evidence.not_compared:
        return _refused(vlm, evidence, has_prior)
    if not vlm.structured:
        return _unreadable(vlm, evidence, has_prior)
    notes = list(vlm.notes)
    ev_findings = list(evidence.findings)
    out: list[FindingResult] = []
    used: set[int] = set()
    for i, claim in enumerate(vlm.findings):
        mark, why, backing = _judge(claim, ev_findings, has_prior)
        update: dict[str, object] = {"guard": mark}
        if backing is not None:
            used.add(id(backing))
            if claim.evidence is None:
                update["evidence"] = _evidence_of(backing)
        for e in _matching(claim, ev_findings):
            if mark == GuardMark.supported or e.change not in CHANGED:
                used.add(id(e))
        if mark == GuardMark.unsupported and claim.urgent:
            update["guard"] = GuardMark.unverified
            notes.append(
                f"urgent claim {_label(claim)} is not backed by the image evidence ({why}): "
                "kept urgent, marked unverified, for the radiologist to confirm"
            )
        elif mark != GuardMark.supported and why:
            notes.append(f"claim {i + 1} {_label(claim)}: {mark}: {why}")
        out.append(claim.model_copy(update=update))

    if not has_prior:
        words = comparison_words(vlm.draft_text)
        if words:
            notes.append(
                "no prior was available, but the draft uses comparison words "
                f"({', '.join(words)}): do not read them as interval change"
            )
    else:
        for e in ev_findings:
            if id(e) in used:
                continue
            if e.urgent:
                out.append(e.model_copy(update={"guard": GuardMark.supported}))
                notes.append(f"urgent image evidence {_label(e)} was not mentioned by the model: added")
            elif e.change in CHANGED:
                notes.append(f"image evidence shows {_label(e)}, which the model did not describe")

    return _finish(vlm, evidence, has_prior, out, notes)


def _finish(vlm: ComparisonResult, evidence: ComparisonResult, has_prior: bool, findings: list[FindingResult],
            notes: list[str], **update: object) -> ComparisonResult:
    result = vlm.model_copy(
        update={
            "findings": findings,
            "has_prior": has_prior,
            "urgent": vlm.urgent or any(f.urgent for f in findings),
            "engine_version": (
                f"{vlm.engine_version}; evidence {evidence.engine} {evidence.engine_version} "
                f"({evidence.model} {evidence.model_version})"
            ),
            "notes": notes,
            **update,
        }
    )
    return ComparisonResult.model_validate(result.model_dump())


def _refused(vlm: ComparisonResult, evidence: ComparisonResult, has_prior: bool) -> ComparisonResult:
    """The evidence engine did not compare the pair: its refusal is the result; only the model's
    urgent claims stay (urgent, unverified), so that no urgent claim is dropped silently."""
    kept = [f.model_copy(update={"guard": GuardMark.unverified}) for f in vlm.findings if f.urgent]
    notes = [*evidence.notes, *(f"urgent claim {_label(f)} kept although the pair was not compared ({evidence.not_compared}): "
                                "unverified, for the radiologist to confirm" for f in kept)]
    dropped = len(vlm.findings) - len(kept)
    if dropped:
        notes.append(f"{dropped} other claim(s) of the model not shown: the pair was not compared")
    draft = evidence.draft_text.strip()
    if not draft.startswith(DRAFT_HEADER):
        draft = f"{DRAFT_HEADER} {draft}"
    if kept:
        draft += " The model claims, unverified: " + "; ".join(finding_sentence(f)[:-1] for f in kept) + "."
    return _finish(vlm, evidence, has_prior, kept, notes, draft_text=draft, not_compared=evidence.not_compared)


def _unreadable(vlm: ComparisonResult, evidence: ComparisonResult, has_prior: bool) -> ComparisonResult:
    """The model's answer could not be read: the evidence's findings, each unverified (urgent kept
    urgent), under the draft header; the model's raw text is not shown (only its parser's notes,
    which quote nothing of it)."""
    findings = [e.model_copy(update={"guard": GuardMark.unverified}) for e in evidence.findings]
    body = evidence.draft_text.strip().removeprefix(DRAFT_HEADER).strip()
    notes = [UNREADABLE_SENTENCE, *(n for n in vlm.notes if "unstructured text" not in n or "urgent" in n),
             *evidence.notes]
    return _finish(vlm, evidence, has_prior, findings, notes,
                   draft_text=" ".join(x for x in (DRAFT_HEADER, UNREADABLE_SENTENCE, body) if x))
