"""Reading one sentence or clause of a report for the labeler: the normalised text, the finding
mentions, negation and device-position rules, each mention's own words (side, zone) and the
change word each mention owns. Private to `monitoring.labeler`."""

from __future__ import annotations

import re

from monitoring.labeling.vocabulary import (
    ETT_MAX_ABOVE_CARINA_CM, ETT_MIN_ABOVE_CARINA_CM, UNKNOWN, _ABBREV, _ABOVE_CARINA, _AFTER_CUT,
    _BOTH_BEFORE, _CARINA_LOW, _CHANGE_CUES, _CHANGE_RE, _DEVICE_NAMED, _EARLIER, _ENTERIC_MISPLACED,
    _ENTERIC_TUBE, _FINDING_RES, _HEDGED_CHANGE, _IMPERATIVE, _LINE_IN_VENTRICLE, _LIST_LINK, _MALPOSITION,
    _NEG_LIST_WORDS, _NEG_SCOPE_BREAK, _NEG_WINDOW, _OWN_CUT, _PACING, _PIECE, _POSITION_OK, _PRE_BREAK,
    _PRE_NEG, _PRE_WINDOW, _SIDE_WORD, _TRACHEAL, _UNCERTAIN_PRE, _ZONE_WORD
)
from priorwatch.vocabulary import Change, FindingType


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


def _malpositioned(sentence: str) -> bool:
    """A tube or line stated out of place in this sentence. Read piece by piece (commas, semicolons, "and"),
    each about the last device named; a hedged, corrected or earlier ("previously") position is not."""
    if not _DEVICE_NAMED.search(sentence):
        return False
    enteric: bool | None = None
    for piece in _PIECE.split(sentence):
        if _ENTERIC_TUBE.search(piece):
            enteric = True
        elif _DEVICE_NAMED.search(piece) and not re.search(r"\btips?\b", piece):
            enteric = False
        ok = any(not re.search(r"\bnot\W+(?:\w+\W+){0,2}$", piece[:m.start()]) for m in _POSITION_OK.finditer(piece))
        if ok or _UNCERTAIN_PRE.search(piece) or _EARLIER.search(piece):
            continue
        if not enteric and not _PACING.search(sentence) and _LINE_IN_VENTRICLE.search(piece):
            return True
        above = _ABOVE_CARINA.search(piece)
        if above and not enteric and _TRACHEAL.search(sentence):
            cm = float(above.group(1)) / (10 if above.group(2) == "mm" else 1)
            if not ETT_MIN_ABOVE_CARINA_CM <= cm <= ETT_MAX_ABOVE_CARINA_CM:
                return True
        if _MALPOSITION.search(piece) or _IMPERATIVE.search(piece) or (_ENTERIC_MISPLACED if enteric else _CARINA_LOW).search(piece):
            return True
    return False


_PLACES_ONLY = re.compile(r"^(?:\W*\b(?:right|left|bilateral|both|upper|middle|mid|lower|lobes?|zones?|lingula|lingular|"
                          r"apical|basal|perihilar|bases?|apex|apices|and|the|in|of)\b)*\W*$")


def _own(phrase_before: str, phrase_after: str, last: bool) -> tuple[str, str]:
    """The parts of the text around a mention that describe it: the before-phrase after its last "with"/"and",
    the after-phrase up to its first "with"/"and" ("effusion with basal atelectasis" gives the effusion no zone),
    or its first comma where another finding follows ("effusion, increased perihilar oedema")."""
    before = phrase_before if _PLACES_ONLY.match(phrase_before) else _OWN_CUT.split(phrase_before)[-1]  # "RML and lingular"
    return before, (_OWN_CUT if last else _AFTER_CUT).split(phrase_after)[0]


def _side(phrase_before: str, mention: str, phrase_after: str, finding: str) -> str | None:
    if finding == FindingType.cardiomegaly:
        return None
    for text, last in ((mention, True), (phrase_before, True), (phrase_after, False)):
        ms = list(_SIDE_WORD.finditer(text))
        if ms:
            words = {"left" if m.group(1) in ("lingula", "lingular", "retrocardiac") else m.group(1) for m in ms}
            if words & {"bilateral", "bilaterally", "both", "bibasilar", "bibasal", "bibasally"} or {"right", "left"} <= words:
                return "bilateral"
            w = (ms[-1] if last else ms[0]).group(1)
            return "left" if w in ("lingula", "lingular", "retrocardiac") else w
    return None


def _zone(phrase_before: str, mention: str, phrase_after: str, finding: str) -> str | None:
    if re.search(r"diversion|redistribution", mention):
        return None  # "upper lobe diversion" names a sign of oedema, not where it is
    joined = phrase_before + (mention if finding != FindingType.other else " ")  # "left lower" + "lobe collapse"
    for text in (mention if finding != FindingType.other else "", joined, phrase_after):
        ms = list(_ZONE_WORD.finditer(text))
        if ms:
            m = ms[-1] if text is joined else ms[0]
            return next(k for k in ("upper", "middle", "lower") if m.group(k))
    return None


def _cue_change(m: re.Match[str]) -> str:
    for i, (change, _) in enumerate(_CHANGE_CUES):
        if m.group(f"c{i}") is not None:
            return str(change)
    return UNKNOWN  # pragma: no cover - every alternative is a named group


def _assign_changes(clause: str, mentions: list[tuple[int, int, str]]) -> tuple[list[str | None], list[bool]]:
    """The change word each mention owns (None: no change word), and whether that word is hedged
    ("perhaps slightly smaller")."""
    masked = list(clause)
    for s, e, _ in mentions:  # "cardiac enlargement" is a finding, not a change word
        for i in range(s, e):
            masked[i] = " "
    text = "".join(masked)
    out: list[str | None] = [None] * len(mentions)
    hedged = [False] * len(mentions)
    trailing: list[str] = []
    every = False  # "..., both slightly increased": the trailing change word speaks for every finding
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
        if out[k] is None or (pre and k == nxt) or (out[k] == Change.stable and change != Change.stable):
            # "again noted ... and has slightly increased": a stated change beats "again seen"
            out[k] = change
            hedged[k] = bool(_HEDGED_CHANGE.search(text[:m.start()]))
        if k == prv and nxt is None:
            trailing.append(change)
            every = every or bool(_BOTH_BEFORE.search(text[:m.start()]))
    if trailing:  # "effusions and atelectasis, unchanged": a clause-final change word speaks for the list
        for k in range(len(mentions) - 2, -1, -1):  # back from the last mention while the gaps are list links
            if not every and not _LIST_LINK.match(clause[mentions[k][1]:mentions[k + 1][0]]):
                break
            if out[k] is None:
                out[k] = trailing[-1]
    for k, (s, e, f) in enumerate(mentions):  # "heart remains enlarged" is one mention that says it is stable
        if out[k] is None and f == FindingType.cardiomegaly and re.search(r"\b(?:remains|still)\b", clause[s:e]):
            out[k] = str(Change.stable)
    return out, hedged
