"""Templated draft text: what a radiologist sees first, always marked as an AI draft."""

from __future__ import annotations

from collections.abc import Sequence

from priorwatch.sentences import DRAFT_HEADER, change_sentence
from priorwatch.vocabulary import FindingResult

__all__ = ["DRAFT_HEADER", "NO_CHANGE_SENTENCE", "NO_PRIOR_SENTENCE", "render_draft", "finding_sentence"]

NO_CHANGE_SENTENCE = "No significant interval change detected."
NO_PRIOR_SENTENCE = "No prior study was available for comparison; no interval change is assessed."


def finding_sentence(f: FindingResult) -> str:
    """The sentence (`priorwatch.sentences`) with the finding's confidence and urgency."""
    text = change_sentence(f.finding.value, f.change.value, f.side.value if f.side else None,
                           f.zone.value if f.zone else None)
    tail = f" (confidence {f.confidence:.2f}"
    if f.urgent:
        tail += "; URGENT"
    return text[:-1] + tail + ")."


def render_draft(
    findings: Sequence[FindingResult],
    has_prior: bool,
    interval_days: int | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The draft report for one comparison.

    Without a prior the draft says so and uses no comparison words (new, increased, ...).
    """
    parts = [DRAFT_HEADER]
    if not has_prior:
        parts.append(NO_PRIOR_SENTENCE)
        return " ".join(parts)
    if interval_days is not None and interval_days > 0:
        parts.append(f"Compared with the prior study of {interval_days} days earlier.")
    else:
        parts.append("Compared with the prior study.")
    urgent = [f for f in findings if f.urgent]
    if urgent:
        parts.append("URGENT: " + "; ".join(finding_sentence(f)[:-1] for f in urgent) + ".")
    rest = [f for f in findings if not f.urgent]
    parts.extend(finding_sentence(f) for f in rest)
    if not findings:
        parts.append(NO_CHANGE_SENTENCE)
    parts.extend(notes)
    return " ".join(parts)
