"""Report labeler: turns report text (a draft or a signed final report) into findings of the
shared vocabulary with change, side, zone, uncertainty and urgency, so a radiologist's
wording can be compared with the AI's findings field by field (monitoring.concordance).

How it reads a sentence (NegEx-style rules, measured on tests/monitoring/data/labelled_sentences.txt):

- abbreviations are expanded first (PTX, ETT, NGT, IJ, R/L);
- a sentence is cut into clauses at `;`, "but", "however", "whereas", "while", "although" and at
  "and there is" / "and a ...": a change word only speaks for mentions of its own clause;
- in a clause, a change word placed right before a finding ("new left effusion", "interval
  enlargement of the pneumothorax") belongs to that finding; otherwise to the finding before it
  ("Left pneumothorax, increased in size."); a change word ending a clause after "X and Y"
  speaks for both ("effusions and atelectasis, unchanged");
- a finding with no change word has change `unknown` (never an invented `stable`), or
  `no_prior` in a report without a prior;
- side and zone come from the words of the finding's own phrase (base, apex, lingula,
  retrocardiac, costophrenic...), then from the words right after it ("effusion on the right");
- a hedge (possible, cannot exclude, may represent, likely...) marks the finding uncertain;
- negation ("no", "without", "not seen") removes it and lists it in `negated`;
- urgent: a new or worsened pneumothorax, or a new large pleural effusion (asserted), or a
  critical-result cue ("communicated to"), matching the project's urgency rule.

>>> [(lb.finding, lb.change, lb.side) for lb in label_report("Left pneumothorax, increased in size.").labels]
[('pneumothorax', 'worsened', 'left')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from priorwatch.vocabulary import APPEARING, Change, FindingType

UNKNOWN = "unknown"  # no change stated: compatible with any change in concordance

# --- vocabulary ------------------------------------------------------------------------------

_ABBREV: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bptx\b"), "pneumothorax"),
    (re.compile(r"\bett?\b(?!\s*al)"), "endotracheal tube"),
    (re.compile(r"\bngt\b"), "nasogastric tube"),
    (re.compile(r"\bng\b"), "nasogastric"),
    (re.compile(r"\bij\b"), "internal jugular"),
    (re.compile(r"\bcvc\b"), "central venous catheter"),
    (re.compile(r"\br\b(?=\s+(?:\w+\s+)?(?:pneumothorax|effusion|lung|upper|lower|middle|base|apex|apical|basal|chest|"
                r"hemithorax|pleural|ij|internal|subclavian|sided|sided|side))"), "right"),
    (re.compile(r"\bl\b(?=\s+(?:\w+\s+)?(?:pneumothorax|effusion|lung|upper|lower|middle|base|apex|apical|basal|chest|"
                r"hemithorax|pleural|ij|internal|subclavian|sided|side))"), "left"),
    (re.compile(r"o(?=edema)"), ""),
]

_FINDINGS: dict[str, list[str]] = {
    FindingType.pneumothorax: [r"(?:tension )?pneumothora(?:x|ces)", r"apical lucency"],
    FindingType.effusion: [r"(?:pleural )?effusions?", r"pleural fluid", r"blunting of the (?:\w+ )?costophrenic angles?"],
    FindingType.consolidation: [
        r"consolidations?", r"consolidative opacit(?:y|ies)", r"airspace (?:disease|opacit(?:y|ies)|shadowing)",
        r"pneumonias?", r"infiltrates?", r"infections?",
        r"(?:(?:upper|lower|middle|mid) (?:lobe|zone)|basilar|basal) (?:opacit(?:y|ies)|shadowing)",
        r"(?:lobe|zone) (?:opacit(?:y|ies)|shadowing)",
    ],
    FindingType.edema: [r"(?:pulmonary |interstitial |alveolar )?edema", r"(?:pulmonary )?vascular congestion"],
    FindingType.atelectasis: [r"atelectas[ie]s", r"atelectatic (?:change|changes|opacit(?:y|ies))", r"(?:lobar |lobe )?collapse"],
    FindingType.cardiomegaly: [
        r"cardiomegaly", r"enlarged (?:heart|cardiac silhouette)", r"cardiac enlargement",
        r"(?:heart|cardiac silhouette)(?: size)? is (?:\w+ )?enlarged",
    ],
    FindingType.nodule: [r"nodules?", r"nodular opacit(?:y|ies)"],
    FindingType.mass: [r"mass(?:es)?", r"tumou?rs?", r"neoplasms?"],
    FindingType.support_device: [
        r"(?:endotracheal|nasogastric|enteric|chest|feeding|tracheostomy|et|ng) tubes?",
        r"(?:lines and tubes|tubes and lines|support devices|lines|tubes)",
        r"(?:central venous |central |picc |midline |internal jugular |subclavian )?(?:line|catheter)s?",
        r"picc", r"pacemakers?(?: leads?)?", r"pacers?", r"(?:cardiac )?devices?", r"port-?a-?cath", r"(?:chest )?drains?",
        r"leads?", r"swan-?ganz",
    ],
    FindingType.other: [
        r"fractures?", r"subcutaneous emphysema", r"emphysema", r"fibrosis", r"hernias?", r"pneumomediastinum",
        r"scarring", r"pleural thickening", r"degenerative changes?", r"(?:elevated|raised) (?:right |left )?hemidiaphragm",
    ],
}
_FINDING_RES = [(str(f), re.compile(r"\b(?:" + "|".join(p) + r")\b")) for f, p in _FINDINGS.items()]

# Normal statements about the heart negate cardiomegaly.
_NORMAL_HEART = re.compile(
    r"\b(?:heart size is normal|normal heart size|heart size (?:is )?(?:at the upper limit of |within )normal(?: limits)?|"
    r"cardiac silhouette is (?:normal|within normal limits)|normal cardiac silhouette|"
    r"cardiomediastinal silhouette is (?:normal|within normal limits|unremarkable)|"
    r"heart is (?:normal|not enlarged) in size|no cardiac enlargement)\b"
)

_CLAUSE = re.compile(r";|\bbut\b|\bhowever\b,?|\bwhereas\b|\bwhile\b|\balthough\b|\band (?=there\b|a\b|an\b|the\b)")
_SENTENCE = re.compile(r"(?:\.(?=\s|$)|\n|\?(?=\s|$))+")

_PRE_NEG = re.compile(
    r"\b(?:no evidence of|no signs? of|negative for|free of|absence of|without|no(?! (?:significant |interval |further )?change)|"
    r"not(?! changed| significantly| be excluded| excluded)|nor|ruled out)\b"
)
_POST_NEG = re.compile(
    r"^[\s,]*(?:(?:is|are|was|were|has|have been)\s+)?(?:not (?:seen|identified|present|visualized|visualised|demonstrated|appreciated)|absent)\b"
)
_NEG_SCOPE_BREAK = {"is", "are", "was", "were", "has", "have", "which", "with", "remains", "remain", "persists",
                    "seen", "noted", "there", "following", "after", "since", "in", "and"}
_NEG_LIST_WORDS = {
    "or", "and", "nor", "of", "a", "an", "any", "the", "focal", "acute", "large", "small", "moderate", "significant",
    "definite", "pleural", "airspace", "evidence", "signs", "sign", "other", "residual", "remaining", "new",
    "visible", "appreciable", "suspicious", "pulmonary", "interval", "further", "obvious", "sizeable", "discrete", "overt", "frank",
}
_NEG_WINDOW = 8  # tokens between a negation cue and the finding it may reach

_UNCERTAIN_PRE = re.compile(
    r"\b(?:possible|possibly|probable|probably|perhaps|may represent|may reflect|may be|might|could be|could represent|"
    r"could reflect|cannot exclude|can ?not exclude|questionable|question of|suspicious for|suggestive of|suggests|"
    r"likely|equivocal|suspected|presumed|differential|versus|vs|query|\?)"
)
_UNCERTAIN_POST = re.compile(
    r"^[\s,]*(?:\w+\s+){0,4}?(?:cannot be (?:excluded|ruled out)|can ?not be (?:excluded|ruled out)|not (?:be )?excluded|"
    r"is (?:possible|suspected|likely|questioned)|are (?:possible|suspected|likely)|is probably|are probably|"
    r"perhaps|possibly|likely)\b|^\s*\?"
)

# Change words; order matters only where two patterns overlap (the longer phrase is listed first).
_CHANGE_CUES: list[tuple[str, str]] = [
    (Change.improved, r"largely resolved|partially resolved|partly resolved|resolving|less (?:conspicuous|prominent|"
                      r"extensive|dense|apparent|marked)|now (?:small|smaller|trace|tiny|mild)"),
    (Change.worsened, r"more (?:conspicuous|prominent|extensive|dense|apparent|marked)|now (?:moderate|large|larger|"
                      r"massive|extensive)|has grown|grown|increased|increasing|increase|worse|worsened|worsening|"
                      r"enlarging|enlargement|enlarged|larger|progression|progressed|progressive|extension"),
    (Change.resolved, r"resolved|resolution|no longer (?:seen|visible|present|identified|evident|demonstrated)|"
                      r"cleared|clearing|removed|removal|withdrawn and removed"),
    (Change.new, r"new|newly|interval development|development|interval appearance|has developed|developing|"
                 r"interval placement|placement|placed|inserted|insertion|now seen|now present"),
    (Change.improved, r"decreased|decreasing|decrease|improved|improving|improvement|smaller|reduced|reduction|"
                      r"diminished|regression|regressed"),
    (Change.stable, r"stable|unchanged|similar|persistent|persisting|persists|again (?:seen|noted|demonstrated|"
                    r"visible)|redemonstrated|re-demonstrated|no (?:significant |interval |further )?change|"
                    r"not (?:significantly )?changed|as before|as previously|remains?"),
]
_CHANGE_RE = re.compile(r"\b(?:" + "|".join(f"(?P<c{i}>{p})" for i, (_, p) in enumerate(_CHANGE_CUES)) + r")\b")

_SIZE_LARGE = re.compile(r"\b(?:large|massive|sizeable|very large|moderate to large|moderate-large)\b")

_NO_PRIOR = re.compile(
    r"\b(?:no (?:prior|previous|comparison)(?: (?:study|studies|exam|examination|imaging|films?|radiographs?))?"
    r"(?: (?:is |are )?available)?|without comparison|none available for comparison|comparison: none)\b"
)
_CRITICAL = re.compile(
    r"\b(?:critical (?:result|finding|value)s?|communicated (?:to|with)|discussed (?:by telephone )?with|called to|"
    r"telephoned to)\b"
)
_NOT_CRITICAL = re.compile(r"\b(?:no|not|non)[- ](?:urgent|emergent|critical)\b")

_SIDE_WORD = re.compile(r"\b(right|left|bilateral|bilaterally|both|bibasilar|bibasal|bibasally|lingula|lingular|"
                        r"retrocardiac)\b")
_ZONE_WORD = re.compile(
    r"\b(?:(?P<upper>apex|apices|apical|upper (?:lobe|zone|lung)s?|upper)|"
    r"(?P<middle>mid(?:dle)?[- ]?(?:lobe|zone|lung)s?|lingula|lingular)|"
    r"(?P<lower>base|bases|basal|basilar|bibasilar|bibasal|lower (?:lobe|zone|lung)s?|costophrenic|retrocardiac|"
    r"hemidiaphragm|infrahilar))\b"
)
_PRE_WINDOW = 8  # tokens: how far before a finding a change word may stand and still modify it
_PRE_BREAK = re.compile(r",|\b(?:is|are|was|were|has|have|had|which|and|with|without|following|after|since)\b")


@dataclass(frozen=True)
class Label:
    """One finding as stated in a report; `change` is a vocabulary change or `unknown`."""

    finding: str
    change: str
    uncertain: bool = False
    side: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class ReportLabels:
    labels: tuple[Label, ...] = ()
    urgent: bool = False  # a new/worsened pneumothorax, a new large effusion, or a critical-result cue
    no_prior: bool = False
    negated: tuple[str, ...] = field(default=())  # findings stated absent

    def pairs(self, uncertain_as_positive: bool = True) -> frozenset[tuple[str, str]]:
        return frozenset((lb.finding, lb.change) for lb in self.labels if uncertain_as_positive or not lb.uncertain)

    def findings(self, uncertain_as_positive: bool = True) -> frozenset[str]:
        """Findings present in the current image (a resolved finding is no longer present)."""
        return frozenset(
            lb.finding for lb in self.labels
            if lb.change != Change.resolved and (uncertain_as_positive or not lb.uncertain)
        )


def _normalise(text: str) -> str:
    low = (text or "").lower().replace("\u2019", "'")
    for rx, rep in _ABBREV:
        low = rx.sub(rep, low)
    return low


def _mentions(clause: str) -> list[tuple[int, int, str]]:
    """(start, end, finding) of each finding mention, longest match first where they overlap."""
    cands: list[tuple[int, int, str]] = []
    for finding, rx in _FINDING_RES:
        cands.extend((m.start(), m.end(), finding) for m in rx.finditer(clause))
    cands.sort(key=lambda c: (-(c[1] - c[0]), c[0]))
    out: list[tuple[int, int, str]] = []
    for s, e, f in cands:
        if all(e <= a or s >= b for a, b, _ in out):
            out.append((s, e, f))
    return sorted(out)


def _negated(clause: str, start: int, spans: list[tuple[int, int]]) -> bool:
    cues = list(_PRE_NEG.finditer(clause, 0, start))
    if not cues:
        return False
    cue = cues[-1]
    between = list(clause[cue.end():start])
    for s, e in spans:  # other findings in a list ("no effusion, consolidation or pneumothorax") keep the scope
        for i in range(max(s, cue.end()), min(e, start)):
            between[i - cue.end()] = " "
    tokens = re.findall(r"[a-z0-9]+|,", "".join(between))
    if len([t for t in tokens if t != ","]) > _NEG_WINDOW:
        return False
    after_comma = False
    for t in tokens:
        if t == ",":
            after_comma = True
            continue
        if t in _NEG_SCOPE_BREAK and t != "and":
            return False
        if after_comma and t not in _NEG_LIST_WORDS:
            return False
        after_comma = False
    return True


def _side(phrase_before: str, phrase_after: str, finding: str) -> str | None:
    if finding == FindingType.cardiomegaly:
        return None
    for text, last in ((phrase_before, True), (phrase_after, False)):
        ms = list(_SIDE_WORD.finditer(text))
        if ms:
            words = {m.group(1) for m in ms}
            if words & {"bilateral", "bilaterally", "both", "bibasilar", "bibasal", "bibasally"} or {"right", "left"} <= words:
                return "bilateral"
            w = (ms[-1] if last else ms[0]).group(1)
            return "left" if w in ("lingula", "lingular", "retrocardiac") else w
    if finding == FindingType.edema:
        return "bilateral"  # pulmonary edema is bilateral unless a side is said
    return None


def _zone(phrase_before: str, mention: str, phrase_after: str) -> str | None:
    for text in (mention, phrase_before, phrase_after):
        ms = list(_ZONE_WORD.finditer(text))
        if ms:
            m = ms[-1] if text is phrase_before else ms[0]
            return next(k for k in ("upper", "middle", "lower") if m.group(k))
    return None


def _cue_change(m: re.Match[str]) -> str:
    for i, (change, _) in enumerate(_CHANGE_CUES):
        if m.group(f"c{i}") is not None:
            return str(change)
    return UNKNOWN  # pragma: no cover - every alternative is a named group


def _assign_changes(clause: str, mentions: list[tuple[int, int, str]]) -> list[str | None]:
    """The change word each mention owns (None: no change word)."""
    masked = list(clause)
    for s, e, _ in mentions:  # "cardiac enlargement" is a finding, not a change word
        for i in range(s, e):
            masked[i] = " "
    text = "".join(masked)
    out: list[str | None] = [None] * len(mentions)
    trailing: list[str] = []
    for m in _CHANGE_RE.finditer(text):
        change = _cue_change(m)
        nxt = next((k for k, (s, _, _) in enumerate(mentions) if s >= m.end()), None)
        prv = max((k for k, (_, e, _) in enumerate(mentions) if e <= m.start()), default=None)
        pre = False
        if nxt is not None:
            gap = clause[m.end():mentions[nxt][0]]
            pre = not _PRE_BREAK.search(gap) and len(gap.split()) <= _PRE_WINDOW
        k = nxt if pre or prv is None else prv
        if k is None:
            continue
        if out[k] is None or (pre and k == nxt):
            out[k] = change
        if k == prv and nxt is None:
            trailing.append(change)
    if trailing:  # "effusions and atelectasis, unchanged": a clause-final change word speaks for the list
        for k in range(len(mentions)):
            if out[k] is None:
                out[k] = trailing[-1]
    return out


@lru_cache(maxsize=65536)
def label_report(text: str, has_prior: bool | None = None) -> ReportLabels:
    """Label one report. `has_prior=False` makes findings without a change word `no_prior`."""
    low = _normalise(text)
    no_prior = has_prior is False or bool(_NO_PRIOR.search(low))
    default_change = str(Change.no_prior) if no_prior else UNKNOWN
    labels: list[Label] = []
    negated: list[str] = []
    critical = False
    for sentence in _SENTENCE.split(low):
        if not sentence.strip():
            continue
        if _CRITICAL.search(sentence) and not _NOT_CRITICAL.search(sentence):
            critical = True
        if _NORMAL_HEART.search(sentence):
            negated.append(str(FindingType.cardiomegaly))
            sentence = _NORMAL_HEART.sub(" ", sentence)
        for clause in _CLAUSE.split(sentence):
            mentions = _mentions(clause)
            if not mentions:
                continue
            spans = [(s, e) for s, e, _ in mentions]
            changes = _assign_changes(clause, mentions)
            hedged_clause = bool(_UNCERTAIN_PRE.search(clause))
            for k, (s, e, finding) in enumerate(mentions):
                before = clause[mentions[k - 1][1] if k else 0:s]
                after = clause[e:mentions[k + 1][0] if k + 1 < len(mentions) else len(clause)]
                change = changes[k]
                post_neg = bool(_POST_NEG.search(after))
                if change != Change.resolved and (_negated(clause, s, spans) or post_neg):
                    negated.append(finding)
                    continue
                uncertain = bool(_UNCERTAIN_POST.search(after)) or bool(_UNCERTAIN_PRE.search(clause[:s])) or (
                    hedged_clause and bool(_UNCERTAIN_PRE.search(after)) and k == len(mentions) - 1
                    and bool(re.match(r"^\s*(?:is|are)?\s*(?:probably|possibly|likely)", after)))
                labels.append(Label(finding, change or default_change, uncertain=uncertain,
                                    side=_side(before, after, finding), zone=_zone(before, clause[s:e], after)))
                if finding == FindingType.effusion and change == Change.new and _SIZE_LARGE.search(before + clause[s:e]):
                    labels[-1] = Label(finding, "new_large", uncertain, labels[-1].side, labels[-1].zone)
    merged = _merge(labels)
    urgent = critical or any(
        not lb.uncertain and (
            (lb.finding == FindingType.pneumothorax and lb.change in APPEARING)
            or (lb.finding == FindingType.effusion and lb.change == "new_large"))
        for lb in labels
    )
    merged = tuple(Label(lb.finding, "new" if lb.change == "new_large" else lb.change, lb.uncertain, lb.side, lb.zone)
                   for lb in merged)
    present = {lb.finding for lb in merged}
    return ReportLabels(labels=merged, urgent=urgent, no_prior=no_prior,
                        negated=tuple(dict.fromkeys(f for f in negated if f not in present)))


def _merge(labels: list[Label]) -> tuple[Label, ...]:
    """One label per finding and change: a mention with a change word absorbs the same finding's
    mentions without one; an asserted mention beats a hedged one; sides and zones fill in."""
    by_finding: dict[str, list[Label]] = {}
    for lb in labels:
        by_finding.setdefault(lb.finding, []).append(lb)
    out: list[Label] = []
    for finding, group in by_finding.items():
        known = [lb for lb in group if lb.change not in (UNKNOWN, Change.no_prior)]
        rest = [lb for lb in group if lb not in known]
        keep = known or rest
        merged: dict[str, Label] = {}
        for lb in keep:
            old = merged.get(lb.change)
            if old is None:
                merged[lb.change] = lb
                continue
            merged[lb.change] = Label(finding, lb.change, old.uncertain and lb.uncertain,
                                      _join_side(old.side, lb.side), old.zone or lb.zone)
        for lb in rest if known else []:  # fill side/zone of the known label from the bare mentions
            for ch, kl in merged.items():
                merged[ch] = Label(finding, ch, kl.uncertain, kl.side or lb.side, kl.zone or lb.zone)
        out.extend(merged.values())
    return tuple(sorted(out, key=lambda lb: (lb.finding, lb.change)))


def _join_side(a: str | None, b: str | None) -> str | None:
    if a is None or b is None or a == b:
        return a or b
    return "bilateral"
