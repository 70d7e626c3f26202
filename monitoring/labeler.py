"""Report labeler: turns report text (a draft or a signed final report) into findings of the
shared vocabulary with change, side, zone, uncertainty and urgency, so a radiologist's
wording can be compared with the AI's findings field by field (monitoring.concordance).

How it reads a sentence (NegEx-style rules; measured on the dev sets of tests/monitoring/labelled_set.py,
and once, frozen, on a blind held-out set written by someone who never read this file):

- abbreviations are expanded first (PTX, ETT, NGT, IJ; lobes and zones RUL...LLL, RLZ...; "R"/"L";
  "R > L"); "not present on 14/06", "not seen previously", "absent on the prior" become "newly seen",
  so they read as new and never as negation; "now 4 cm, previously 2 cm" becomes a change word;
- a sentence is cut into clauses at `;`, "but", "however", "whereas", "while", "although" and at
  "and there is" / "and a ...": a change word only speaks for mentions of its own clause (unless
  the sentence ends "both/all <change>");
- in a clause, a change word placed right before a finding ("new left effusion", "interval
  enlargement of the pneumothorax") belongs to that finding; otherwise to the finding before it
  ("Left pneumothorax, increased in size."); a change word ending a clause after "X and Y"
  speaks for both ("effusions and atelectasis, unchanged"); a stated change beats "again seen";
  "Left pneumothorax. This is new." carries the change back;
- a finding with no change word has change `unknown` (never an invented `stable`), or
  `no_prior` in a report without a prior;
- side and zone come from the words of the finding's own phrase (base, apex, lingula, perihilar,
  mid zone, retrocardiac, costophrenic...), then from the words right after it ("effusion on the
  right"); a finding linked to the one before ("left effusion with adjacent atelectasis", "LLL
  collapse/consolidation") shares its side; a description ("left basal opacity", "blunting of the
  costophrenic angle", "apical lucency") followed by a named finding gives it its side, zone and change;
- a hydro-/haemo-/pyopneumothorax is a pneumothorax and an effusion; a nodule of 3 cm or more is a mass;
- a hedge (possible, cannot exclude, may represent, likely, "?", a hedged change word...) marks the
  finding uncertain; negation ("no", "without", "not seen", "excluded") removes it and lists it in
  `negated`;
- urgent is the project's rule, `priorwatch.vocabulary.is_urgent`: a new or worsened pneumothorax or a
  new large pleural effusion (asserted), or a malpositioned tube or line (asserted: NG tube in the
  airway or oesophagus, ETT in a bronchus or the pharynx or outside 2-8 cm above the carina, a line in
  an artery or a neck vein...); and a documented critical-result communication ("discussed with
  Dr X at 14:05"; a request to discuss is not one).

>>> [(lb.finding, lb.change, lb.side) for lb in label_report("Left pneumothorax, increased in size.").labels]
[('pneumothorax', 'worsened', 'left')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from monitoring.labeling.clauses import (
    _assign_changes, _cue_change, _malpositioned, _mentions, _negated, _normalise, _own, _side, _zone,
)
from monitoring.labeling.vocabulary import (
    MASS_MIN_MM, UNKNOWN, _BACKREF, _BOTH, _CHANGE_RE, _CLAUSE, _CLEAR_ANGLES, _CRITICAL, _DESCRIPTOR,
    _HYDRO, _LINKED, _NORMAL_HEART, _NOT_CRITICAL, _NO_PRIOR, _POST_NEG, _SENTENCE, _SIZE, _SIZE_LARGE,
    _UNCERTAIN_POST, _UNCERTAIN_PRE
)
from priorwatch.vocabulary import Change, FindingType, is_urgent


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


@lru_cache(maxsize=65536)
def label_report(text: str, has_prior: bool | None = None) -> ReportLabels:
    """Label one report. `has_prior=False` makes findings without a change word `no_prior`."""
    low = _normalise(text)
    no_prior = has_prior is False or bool(_NO_PRIOR.search(low))
    default_change = str(Change.no_prior) if no_prior else UNKNOWN
    labels: list[Label] = []
    large_of: list[bool] = []  # per label: stated large (for "new large effusion")
    negated: list[str] = []
    urgent = False
    last = (0, 0)  # the labels of the previous sentence that had findings
    for sentence in _SENTENCE.split(low):
        if not sentence.strip():
            continue
        if not _mentions(sentence) and _BACKREF.match(sentence) and (cue := _CHANGE_RE.search(sentence)):
            for i in range(*last):  # "Left pneumothorax. This is new."
                if labels[i].change in (UNKNOWN, Change.no_prior):
                    labels[i] = Label(labels[i].finding, _cue_change(cue), labels[i].uncertain, labels[i].side, labels[i].zone)
        start = len(labels)
        if _CRITICAL.search(sentence) and not _NOT_CRITICAL.search(sentence):
            urgent = True  # a documented critical-result communication
        if _malpositioned(sentence):
            urgent = urgent or is_urgent(FindingType.support_device, UNKNOWN, malpositioned=True)
        if _NORMAL_HEART.search(sentence):
            negated.append(str(FindingType.cardiomegaly))
            sentence = _NORMAL_HEART.sub(" ", sentence)
        if _CLEAR_ANGLES.search(sentence):
            negated.append(str(FindingType.effusion))
            sentence = _CLEAR_ANGLES.sub(" ", sentence)
        both = any(_CHANGE_RE.match(sentence, m.end()) for m in _BOTH.finditer(sentence))
        for clause in [sentence] if both else _CLAUSE.split(sentence):
            _read_clause(clause, default_change, labels, large_of, negated)
        if len(labels) > start:
            last = (start, len(labels))
    urgent = urgent or any(not lb.uncertain and is_urgent(lb.finding, lb.change, large=large)
                           for lb, large in zip(labels, large_of))
    merged = _merge(labels)
    present = {lb.finding for lb in merged}
    return ReportLabels(labels=merged, urgent=urgent, no_prior=no_prior,
                        negated=tuple(dict.fromkeys(f for f in negated if f not in present)))


def _read_clause(clause: str, default_change: str, labels: list[Label], large_of: list[bool],
                 negated: list[str]) -> None:
    """Label each finding mentioned in one clause (into `labels`, with `large_of`), or list it in
    `negated`: its change word, side and zone, hedges, a size that makes a nodule a mass; a
    descriptor ("left basal opacity") lends its side, zone and change to the finding it describes."""
    mentions = _mentions(clause)
    if not mentions:
        return
    spans = [(s, e) for s, e, _ in mentions]
    changes, hedged_change = _assign_changes(clause, mentions)
    hedged_clause = bool(_UNCERTAIN_PRE.search(clause))
    carry: tuple[str | None, str | None, str | None] | None = None  # a descriptor's side, zone, change
    prev: Label | None = None
    for k, (s, e, finding) in enumerate(mentions):
        before = clause[mentions[k - 1][1] if k else 0:s]
        after = clause[e:mentions[k + 1][0] if k + 1 < len(mentions) else len(clause)]
        change = changes[k]
        own_before, own_after = _own(before, after, k == len(mentions) - 1)
        size = _SIZE.search(own_before + clause[s:e])
        if finding in (FindingType.nodule, FindingType.mass) and size:  # "a 4 cm nodular opacity" is a mass
            mm = float(size.group(1)) * (10 if size.group(2) == "cm" else 1)
            finding = str(FindingType.mass if mm >= MASS_MIN_MM else FindingType.nodule)
        if finding == FindingType.support_device:  # "tube enters the left main bronchus with its tip over ..."
            own_after = after
        side = _side(own_before, clause[s:e], own_after, finding)
        zone = _zone(own_before, clause[s:e], own_after, finding)
        if prev is not None and prev.side and not side and _LINKED.match(before):
            side, zone = prev.side, zone or prev.zone  # "left effusion with adjacent atelectasis"
        if carry is not None:
            side, zone, change = side or carry[0], zone or carry[1], change or carry[2]
        later = [f for _, _, f in mentions[k + 1:] if f != FindingType.support_device]
        if _DESCRIPTOR.search(clause[s:e]) and later and not _negated(clause, s, spans):
            carry = (side, zone, change)  # "left basal opacity, likely atelectasis": the atelectasis's
            continue
        post_neg = bool(_POST_NEG.search(after))
        # A hydro-/haemo-/pyopneumothorax is a pneumothorax and an effusion.
        kinds = [finding, str(FindingType.effusion)] if _HYDRO.match(clause, s) else [finding]
        if change != Change.resolved and (_negated(clause, s, spans) or post_neg):
            negated.extend(kinds)
            continue
        uncertain = hedged_change[k] or bool(_UNCERTAIN_POST.search(after)) or bool(_UNCERTAIN_PRE.search(clause[:s])) or (
            hedged_clause and bool(_UNCERTAIN_PRE.search(after)) and k == len(mentions) - 1
            and bool(re.match(r"^\s*(?:is|are)?\s*(?:probably|possibly|likely)", after)))
        size_after = after if k == len(mentions) - 1 else re.split(r"\band\b|\bwith\b", after)[0]
        large = bool(_SIZE_LARGE.search(before + clause[s:e] + size_after))
        for f in kinds:
            prev = Label(f, change or default_change, uncertain=uncertain, side=side, zone=zone)
            labels.append(prev)
            large_of.append(large)


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
