"""The report sentences a finding label becomes: one wording for the AI draft and the
radiologist's regenerated text (`comparison.draft`, `dashboard.signoff`), so a corrected
report reads like the draft it replaces.
"""

from __future__ import annotations

__all__ = [
    "DRAFT_BANNER_PREFIX",
    "DRAFT_HEADER",
    "FINDING_NAMES",
    "change_sentence",
    "finding_name",
    "where_phrase",
]

DRAFT_BANNER_PREFIX = "PRELIMINARY AI DRAFT"
DRAFT_HEADER = f"{DRAFT_BANNER_PREFIX} — for radiologist review."

# Keys are the vocabulary's values (`priorwatch.vocabulary.FindingType`, `Change`).
FINDING_NAMES: dict[str, str] = {
    "nodule": "nodule",
    "mass": "mass",
    "consolidation": "patchy consolidation",
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "edema": "edema",
    "atelectasis": "atelectasis",
    "cardiomegaly": "cardiomegaly",
    "support_device": "support device",
    "other": "abnormality",
}
_CHANGE_SENTENCES: dict[str, str] = {
    "new": "New {what}{where}.",
    "worsened": "Increased {what}{where} compared with the prior.",
    "stable": "Stable {what}{where}.",
    "improved": "Decreased {what}{where} compared with the prior.",
    "resolved": "Resolution of the previously seen {what}{where}.",
    "no_prior": "{What}{where}.",
}


def finding_name(finding: str) -> str:
    """The finding as a report names it ('effusion' reads 'pleural effusion')."""
    return FINDING_NAMES.get(str(finding), str(finding).replace("_", " "))


def where_phrase(finding: str, side: str | None, zone: str | None) -> str:
    """' in the right upper zone'; a one-sided pneumothorax is 'on the right (upper zone)'."""
    if not side and not zone:
        return ""
    if str(finding) == "pneumothorax" and side and side != "bilateral":
        return f" on the {side}" + (f" ({zone} zone)" if zone else "")
    return " in the " + (f"{side} " if side else "") + (f"{zone} zone" if zone else "lung")


def change_sentence(finding: str, change: str, side: str | None = None, zone: str | None = None) -> str:
    """One finding as one sentence, ending in a full stop (callers append their own tail)."""
    what = finding_name(finding)
    template = _CHANGE_SENTENCES.get(str(change), "{What}{where}.")
    return template.format(what=what, What=what[:1].upper() + what[1:], where=where_phrase(finding, side, zone))
