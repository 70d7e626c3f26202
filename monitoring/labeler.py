"""Report labeler: negation- and uncertainty-aware rules that turn report text (a draft or a
signed final report) into the finding x change labels of the shared vocabulary.

The rules are NegEx-style: a finding mention is found by synonym patterns; a negation cue
before it (within a short scope that a list may extend but a new subject ends) or a
post-negation after it removes it, unless the cue says the finding went away ("no longer
seen", "resolved"), which makes it `resolved`; an uncertainty cue marks it uncertain
("possible", "cannot be excluded"); the change comes from a change cue in its clause.
A mention without a change cue is `stable` in a report that has a prior and `no_prior`
in one that says there is none (or when `has_prior=False`).

>>> label_report("No pneumothorax. Possible new left lower lobe consolidation.").pairs()
frozenset({('consolidation', 'new')})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from priorwatch.vocabulary import Change, FindingType

# --- vocabulary patterns ---------------------------------------------------------------------

_FINDINGS: dict[str, list[str]] = {
    FindingType.pneumothorax: [r"pneumothora(?:x|ces)", r"ptx"],
    FindingType.effusion: [r"(?:pleural )?effusions?", r"pleural fluid", r"blunting of the (?:\w+ )?costophrenic angles?"],
    FindingType.consolidation: [
        r"consolidations?", r"consolidative opacit(?:y|ies)", r"airspace (?:disease|opacit(?:y|ies))",
        r"pneumonias?", r"infiltrates?",
    ],
    FindingType.edema: [r"(?:pulmonary |interstitial |alveolar )?o?edema", r"(?:pulmonary )?vascular congestion"],
    FindingType.atelectasis: [r"atelectas[ie]s", r"atelectatic (?:change|changes|opacit(?:y|ies))", r"(?:lobar )?collapse"],
    FindingType.cardiomegaly: [
        r"cardiomegaly", r"enlarged (?:heart|cardiac silhouette)", r"cardiac enlargement",
        r"(?:heart|cardiac silhouette) is enlarged",
    ],
    FindingType.nodule: [r"nodules?", r"nodular opacit(?:y|ies)"],
    FindingType.mass: [r"mass(?:es)?", r"tumou?rs?", r"neoplasms?"],
    FindingType.support_device: [
        r"(?:endotracheal|nasogastric|ng|et|chest|feeding|tracheostomy) tubes?",
        r"(?:central venous |central |picc |midline )(?:line|catheter)s?", r"picc", r"catheters?",
        r"pacemakers?", r"pacers?", r"(?:cardiac )?devices?", r"port-?a-?cath", r"drains?",
    ],
    FindingType.other: [r"fractures?", r"emphysema", r"fibrosis", r"hernias?", r"pneumomediastinum", r"scarring"],
}
_FINDING_RES = [(f, re.compile(r"\b(?:" + "|".join(p) + r")\b")) for f, p in _FINDINGS.items()]

# "Heart size is normal" is a negative statement about cardiomegaly: drop, it is not a mention.
_NORMAL_HEART = re.compile(r"\b(?:heart size is normal|normal heart size|cardiac silhouette is normal|normal cardiac silhouette)\b")

_PRE_NEG = re.compile(
    r"\b(?:no evidence of|no signs? of|negative for|free of|absence of|without|no(?! (?:significant |interval )?change)|"
    r"not(?! changed| be excluded| excluded)|nor|rules? out|ruled out)\b"
)
_POST_NEG = re.compile(
    r"^\W*(?:(?:is|are|was|were|has|have been)\s+)?(?:not (?:seen|identified|present|visualized|visualised|demonstrated)|absent)\b"
)
_POST_RESOLVED = re.compile(
    r"^\W*(?:(?:is|are|was|were|has|have)\s+)?(?:(?:now |since |completely |interval )?resolved|no longer (?:seen|visible|present|identified|evident)|cleared)\b"
)
_RESIDUAL = re.compile(r"\b(?:residual|remaining|longer)\b")
_UNCERTAIN_PRE = re.compile(
    r"\b(?:possible|possibly|probable|probably|may represent|may be|could be|could represent|cannot exclude|can ?not exclude|"
    r"questionable|suspicious for|concerning for|suggestive of|suggests|likely|equivocal|suspected|presumed|"
    r"differential (?:diagnosis )?includes|versus|vs\.?)\b"
)
_UNCERTAIN_POST = re.compile(
    r"^\W*(?:\w+\s+){0,3}?(?:cannot be (?:excluded|ruled out)|can ?not be (?:excluded|ruled out)|not (?:be )?excluded|"
    r"is (?:possible|suspected|likely|not excluded)|are (?:possible|suspected|likely)|is questioned)\b|^\s*\?"
)
_CHANGE_CUES: list[tuple[str, re.Pattern[str]]] = [
    (Change.resolved, re.compile(r"\b(?:resolved|resolution|no longer (?:seen|visible|present|identified|evident)|cleared|clearing)\b")),
    (Change.new, re.compile(r"\b(?:new|newly|interval development|interval appearance|has developed|developing|now seen|now present)\b")),
    (Change.worsened, re.compile(r"\b(?:increased|increasing|increase|worse|worsened|worsening|enlarging|larger|progression|progressed|progressive)\b")),
    (Change.improved, re.compile(r"\b(?:decreased|decreasing|decrease|improved|improving|improvement|smaller|less|reduced|diminished|regression|regressed)\b")),
    (Change.stable, re.compile(r"\b(?:stable|unchanged|similar|persistent|persists|again (?:seen|noted|demonstrated)|redemonstrated|no (?:significant |interval )?change|not changed)\b")),
]
_NO_PRIOR = re.compile(r"\b(?:no (?:prior|previous|comparison)(?: (?:study|studies|exam|examination|imaging|films?|radiographs?))?(?: (?:is |are )?available)?|without comparison|none available for comparison)\b")
_CRITICAL = re.compile(
    r"\b(?:critical (?:result|finding|value)s?|urgent|emergent|immediately|communicated (?:to|with)|discussed (?:by telephone )?with|called to)\b"
)
_NOT_CRITICAL = re.compile(r"\b(?:no|not|non)[- ](?:urgent|emergent|critical)\b")
_SIDE = re.compile(r"\b(right|left|bilateral|both)\b")
_SENTENCE = re.compile(r"[.;\n]+(?:\s|$)|\s*\bbut\b\s*|\s*\bhowever\b,?\s*|\s*\balthough\b\s*")
_CHUNK = re.compile(r",|\bwith\b|\bwhile\b|\bwhereas\b|\band (?=(?:the |a |an )?(?:right|left|bilateral)\b)")
_TOKEN = re.compile(r"[a-z0-9?]+|,")
_LIST_WORDS = {
    "or", "and", "nor", "of", "a", "an", "any", "the", "focal", "acute", "large", "small", "moderate", "significant",
    "definite", "definitive", "pleural", "airspace", "evidence", "signs", "sign", "other", "residual", "remaining",
    "new", "longer", "visible", "appreciable", "displaced", "lung", "pulmonary", "interval", "further", "obvious",
}
_LATERAL = {"right", "left", "bilateral", "both"}
_TERMINATORS = {"is", "are", "was", "were", "has", "have", "which", "with", "remains", "remain", "persists", "seen", "noted", "there"}
_NEG_WINDOW = 8  # tokens


@dataclass(frozen=True)
class Label:
    """One finding x change label; `uncertain` when hedged ("possible", "cannot be excluded")."""

    finding: str
    change: str
    uncertain: bool = False
    side: str | None = None


@dataclass(frozen=True)
class ReportLabels:
    labels: tuple[Label, ...] = ()
    urgent: bool = False  # a critical cue, or a new/worsening pneumothorax
    no_prior: bool = False
    negated: tuple[str, ...] = field(default=())  # findings stated absent (kept for inspection)

    def pairs(self, uncertain_as_positive: bool = True) -> frozenset[tuple[str, str]]:
        return frozenset((lb.finding, lb.change) for lb in self.labels if uncertain_as_positive or not lb.uncertain)

    def findings(self, uncertain_as_positive: bool = True) -> frozenset[str]:
        """Findings present in the current image (a resolved finding is no longer present)."""
        return frozenset(
            lb.finding for lb in self.labels
            if lb.change != Change.resolved and (uncertain_as_positive or not lb.uncertain)
        )


def _side_before(text: str, start: int) -> str | None:
    window = text[max(0, start - 40):start]
    m = list(_SIDE.finditer(window))
    if not m:
        return None
    w = m[-1].group(1)
    return "bilateral" if w == "both" else w


def _negated_before(text: str, start: int, mention_spans: list[tuple[int, int]]) -> tuple[bool, bool]:
    """(negated, resolved-style negation) from a pre-negation cue whose scope reaches `start`."""
    cues = [m for m in _PRE_NEG.finditer(text, 0, start)]
    if not cues:
        return False, False
    cue = cues[-1]
    between = text[cue.end():start]
    # Mask other findings' mentions in the scope: a list of findings keeps the scope open.
    masked = list(between)
    for s, e in mention_spans:
        if e <= cue.end() or s >= start:
            continue
        for i in range(max(s, cue.end()), min(e, start)):
            masked[i - cue.end()] = " "
    tokens = _TOKEN.findall("".join(masked))
    if len([t for t in tokens if t != ","]) > _NEG_WINDOW:
        return False, False
    after_comma = False
    for t in tokens:
        if t == ",":
            after_comma = True
            continue
        if t in _TERMINATORS:
            return False, False
        if after_comma and t not in _LIST_WORDS:
            return False, False  # a new subject after a comma ends the scope ("no X, right Y ...")
        after_comma = False
    resolved = bool(_RESIDUAL.search(text, cue.start(), start)) or "longer" in between
    return True, resolved


def _label_chunk_change(chunk: str, spans: list[tuple[int, int]]) -> str | None:
    masked = list(chunk)
    for s, e in spans:  # "enlarged heart" must not read as "enlarging"
        for i in range(s, e):
            masked[i] = " "
    text = "".join(masked)
    for change, rx in _CHANGE_CUES:
        if rx.search(text):
            return change
    return None


@lru_cache(maxsize=65536)
def label_report(text: str, has_prior: bool | None = None) -> ReportLabels:
    """Label one report. `has_prior=False` makes un-cued findings `no_prior`."""
    low = _NORMAL_HEART.sub(" ", (text or "").lower())
    no_prior = has_prior is False or bool(_NO_PRIOR.search(low))
    default_change = Change.no_prior if no_prior else Change.stable
    found: dict[tuple[str, str], Label] = {}
    negated: list[str] = []
    critical = False
    for sentence in _SENTENCE.split(low):
        if not sentence or not sentence.strip():
            continue
        if _CRITICAL.search(sentence) and not _NOT_CRITICAL.search(sentence):
            critical = True
        # Mentions in this sentence (longest match wins where patterns overlap).
        mentions: list[tuple[int, int, str]] = []
        for finding, rx in _FINDING_RES:
            for m in rx.finditer(sentence):
                if any(not (m.end() <= s or m.start() >= e) for s, e, _ in mentions):
                    continue
                mentions.append((m.start(), m.end(), str(finding)))
        if not mentions:
            continue
        mentions.sort()
        spans = [(s, e) for s, e, _ in mentions]
        # Clause chunks for change cues.
        bounds = [0] + [m.end() for m in _CHUNK.finditer(sentence)] + [len(sentence) + 1]
        for s, e, finding in mentions:
            after = sentence[e:]
            neg, neg_resolved = _negated_before(sentence, s, spans)
            post_resolved = bool(_POST_RESOLVED.search(after))
            post_neg = bool(_POST_NEG.search(after))
            uncertain = bool(_UNCERTAIN_POST.search(after)) or bool(
                _UNCERTAIN_PRE.search(sentence[max(0, s - 60):s])
            )
            ci = max(i for i, b in enumerate(bounds) if b <= s)
            c0, c1 = bounds[ci], bounds[ci + 1] if ci + 1 < len(bounds) else len(sentence)
            chunk = sentence[c0:c1]
            chunk_spans = [(max(a, c0) - c0, min(b, c1) - c0) for a, b in spans if a < c1 and b > c0]
            if neg_resolved or post_resolved:
                change = Change.resolved
            elif (neg or post_neg) and not uncertain:
                negated.append(str(finding))
                continue
            else:
                change = _label_chunk_change(chunk, chunk_spans) or default_change
                if neg and uncertain:  # "no definite ... cannot be excluded": hedged, keep it
                    pass
            label = Label(finding, str(change), uncertain=uncertain, side=None if finding == FindingType.cardiomegaly else _side_before(sentence, s))
            key = (label.finding, label.change)
            old = found.get(key)
            if old is None or (old.uncertain and not label.uncertain):
                found[key] = label
    labels = tuple(sorted(found.values(), key=lambda lb: (lb.finding, lb.change)))
    urgent = critical or any(
        lb.finding == FindingType.pneumothorax and lb.change in (Change.new, Change.worsened) and not lb.uncertain
        for lb in labels
    )
    return ReportLabels(labels=labels, urgent=urgent, no_prior=no_prior, negated=tuple(negated))
