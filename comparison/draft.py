"""Templated draft text: what a radiologist sees first, always marked as an AI draft."""

from __future__ import annotations

from collections.abc import Sequence

from priorwatch.vocabulary import Change, FindingResult, FindingType, Side

__all__ = ["DRAFT_HEADER", "NO_CHANGE_SENTENCE", "NO_PRIOR_SENTENCE", "render_draft", "finding_sentence"]

DRAFT_HEADER = "PRELIMINARY AI DRAFT — for radiologist review."
NO_CHANGE_SENTENCE = "No significant interval change detected."
NO_PRIOR_SENTENCE = "No prior study was available for comparison; no interval change is assessed."

_NAMES = {
    FindingType.nodule: "nodule",
    FindingType.mass: "mass",
    FindingType.consolidation: "patchy consolidation",
    FindingType.effusion: "pleural effusion",
    FindingType.pneumothorax: "pneumothorax",
    FindingType.edema: "edema",
    FindingType.atelectasis: "atelectasis",
    FindingType.cardiomegaly: "cardiomegaly",
    FindingType.support_device: "support device",
    FindingType.other: "abnormality",
}

_CHANGE = {
    Change.new: "New {what}{where}.",
    Change.worsened: "Increased {what}{where} compared with the prior.",
    Change.stable: "Stable {what}{where}.",
    Change.improved: "Decreased {what}{where} compared with the prior.",
    Change.resolved: "Resolution of the previously seen {what}{where}.",
    Change.no_prior: "{What}{where}.",
}


def _where(f: FindingResult) -> str:
    if f.side is None and f.zone is None:
        return ""
    if f.finding == FindingType.pneumothorax and f.side is not None and f.side != Side.bilateral:
        return f" on the {f.side.value}" + (f" ({f.zone.value} zone)" if f.zone else "")
    side = "bilateral " if f.side == Side.bilateral else (f"{f.side.value} " if f.side else "")
    zone = f"{f.zone.value} zone" if f.zone else "lung"
    return f" in the {side}{zone}"


def finding_sentence(f: FindingResult) -> str:
    what = _NAMES.get(f.finding, f.finding.value)
    text = _CHANGE[f.change].format(what=what, What=what[:1].upper() + what[1:], where=_where(f))
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
