"""Turn a VLM's text into a draft narrative plus findings in DESIGN.md's vocabulary.

Models are asked for JSON (see `adapters.RESPONSE_SCHEMA`), but what comes back may be JSON
in a code fence, JSON inside prose, JSON with trailing commas or Python literals, JSON cut off
by the token limit, or no JSON at all. `parse_model_output` never raises: what cannot be read
as findings comes back as unstructured narrative (``structured=False``), and an urgent claim is
never dropped (an urgent entry that fails validation is kept as an ``other`` finding).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from priorwatch.vocabulary import Change, ComparisonResult, FindingResult, FindingType, Side, Zone

MAX_NARRATIVE_CHARS = 8000

# --- synonyms -------------------------------------------------------------------------------

_FINDING_SYNONYMS: dict[str, FindingType] = {
    "nodule": FindingType.nodule, "nodules": FindingType.nodule, "pulmonary nodule": FindingType.nodule,
    "lung nodule": FindingType.nodule,
    "mass": FindingType.mass, "masses": FindingType.mass, "lung mass": FindingType.mass, "tumor": FindingType.mass,
    "tumour": FindingType.mass, "lesion": FindingType.mass,
    "consolidation": FindingType.consolidation, "pneumonia": FindingType.consolidation,
    "airspace opacity": FindingType.consolidation, "airspace disease": FindingType.consolidation,
    "opacity": FindingType.consolidation, "infiltrate": FindingType.consolidation,
    "effusion": FindingType.effusion, "pleural effusion": FindingType.effusion, "effusions": FindingType.effusion,
    "pleural effusions": FindingType.effusion, "pleural fluid": FindingType.effusion,
    "pneumothorax": FindingType.pneumothorax, "ptx": FindingType.pneumothorax,
    "edema": FindingType.edema, "oedema": FindingType.edema, "pulmonary edema": FindingType.edema,
    "pulmonary oedema": FindingType.edema, "vascular congestion": FindingType.edema,
    "atelectasis": FindingType.atelectasis, "collapse": FindingType.atelectasis,
    "cardiomegaly": FindingType.cardiomegaly, "enlarged heart": FindingType.cardiomegaly,
    "enlarged cardiac silhouette": FindingType.cardiomegaly, "cardiac enlargement": FindingType.cardiomegaly,
    "support_device": FindingType.support_device, "support device": FindingType.support_device,
    "support devices": FindingType.support_device, "device": FindingType.support_device,
    "line": FindingType.support_device, "tube": FindingType.support_device, "catheter": FindingType.support_device,
    "pacemaker": FindingType.support_device, "endotracheal tube": FindingType.support_device,
    "other": FindingType.other,
}

_CHANGE_SYNONYMS: dict[str, Change] = {
    "new": Change.new, "newly": Change.new, "appeared": Change.new, "interval development": Change.new,
    "worsened": Change.worsened, "worse": Change.worsened, "worsening": Change.worsened,
    "increased": Change.worsened, "increasing": Change.worsened, "progressed": Change.worsened,
    "progression": Change.worsened, "enlarged": Change.worsened, "larger": Change.worsened,
    "stable": Change.stable, "unchanged": Change.stable, "no change": Change.stable, "persistent": Change.stable,
    "similar": Change.stable,
    "improved": Change.improved, "improving": Change.improved, "better": Change.improved,
    "decreased": Change.improved, "decreasing": Change.improved, "smaller": Change.improved,
    "resolved": Change.resolved, "resolving": Change.improved, "resolution": Change.resolved, "gone": Change.resolved,
    "no_prior": Change.no_prior, "no prior": Change.no_prior, "none": Change.no_prior, "n/a": Change.no_prior,
    "na": Change.no_prior, "not applicable": Change.no_prior, "baseline": Change.no_prior,
}

_SIDE_SYNONYMS: dict[str, Side] = {
    "right": Side.right, "r": Side.right, "rt": Side.right, "right-sided": Side.right,
    "left": Side.left, "l": Side.left, "lt": Side.left, "left-sided": Side.left,
    "bilateral": Side.bilateral, "both": Side.bilateral, "bilat": Side.bilateral, "b/l": Side.bilateral,
}

_ZONE_SYNONYMS: dict[str, Zone] = {
    "upper": Zone.upper, "apex": Zone.upper, "apical": Zone.upper, "apices": Zone.upper, "upper zone": Zone.upper,
    "upper lobe": Zone.upper,
    "middle": Zone.middle, "mid": Zone.middle, "mid zone": Zone.middle, "middle zone": Zone.middle,
    "perihilar": Zone.middle, "hilar": Zone.middle, "middle lobe": Zone.middle, "lingula": Zone.middle,
    "lower": Zone.lower, "base": Zone.lower, "basal": Zone.lower, "bases": Zone.lower, "basilar": Zone.lower,
    "lower zone": Zone.lower, "lower lobe": Zone.lower,
}

_NULLS = {"", "null", "none", "n/a", "na", "unknown", "not specified", "-"}
_TRUE = {"true", "yes", "y", "1", "urgent", "critical"}
_FALSE = {"false", "no", "n", "0", "routine", "non-urgent", "not urgent"}

# Words that only make sense against a prior (the guard flags them when there is none).
COMPARISON_WORDS = (
    "new", "newly", "worse", "worsened", "worsening", "unchanged", "stable", "improved", "improving",
    "resolved", "resolving", "increased", "decreased", "interval", "progressed", "progression",
    "persistent", "again seen", "since the prior", "compared with", "compared to", "previously",
)

# Terms that make free text urgent unless negated inside their own clause.
URGENT_TERMS = ("pneumothorax", "tension", "free air", "pneumoperitoneum", "urgent", "critical", "malpositioned")
# A negation (or a non-urgent course: resolved, decreasing) before the term, in its clause:
# "No effusion or pneumothorax" negates both; "no effusion; large pneumothorax" negates only the first.
_PRE_NEGATION = re.compile(
    r"\b(no|not|without|negative for|free of|absence of|no evidence of|resolved|resolving|resolution of|"
    r"decreas(?:ed|ing)|smaller|improv(?:ed|ing)|interval resolution of|ruled out)\b", re.I)
# The same after the term: "the pneumothorax has resolved", "pneumothorax is not seen".
_POST_NEGATION = re.compile(
    r"\b(resolved|resolving|absent|not (?:seen|present|identified|visuali[sz]ed|evident)|no longer|ruled out|"
    r"excluded|none|negative|decreas(?:ed|ing)|smaller|improv(?:ed|ing))\b", re.I)
# Where a negation's scope ends: sentence ends, semicolons (not colons: "Pneumothorax: none."), contrastive words, and an
# "and" / "with" / comma that starts a new positive statement ("no effusion, and a large
# pneumothorax"; "no effusion with a new pneumothorax"), as NegEx's termination terms do.
_CLAUSE_BREAK = re.compile(
    r"[.!?;\n]+|\b(?:but|however|although|though|whereas|while|yet|except)\b|,?\s*\b(?:and|with|plus)\b"
    r"(?=\s+(?:a|an|the|there|new|large|small|moderate|massive|tension|interval|increas\w*|worse\w*|"
    r"persistent|left|right|bilateral)\b)|,\s*(?=(?:there is|there are|there has been|a|an|new|large|"
    r"moderate|small|massive|tension|left|right|bilateral)\b)",
    re.I)


def clauses(text: str) -> list[str]:
    """`text` cut where a negation's scope ends (see `_CLAUSE_BREAK`)."""
    return [c.strip() for c in _CLAUSE_BREAK.split(text or "") if c and c.strip()]


def _negated(clause: str, start: int, end: int) -> bool:
    return bool(_PRE_NEGATION.search(clause[:start]) or _POST_NEGATION.search(clause[end:]))


@dataclass
class ParsedOutput:
    """What was read from one model output."""

    narrative: str
    findings: list[FindingResult] = field(default_factory=list)
    structured: bool = False
    notes: list[str] = field(default_factory=list)
    urgent_text: bool = False  # unstructured text that names an urgent term, not negated

    def to_result(
        self, *, engine: str, engine_version: str, model: str, model_version: str, has_prior: bool
    ) -> ComparisonResult:
        return ComparisonResult(
            engine=engine,
            engine_version=engine_version,
            model=model,
            model_version=model_version,
            has_prior=has_prior,
            findings=list(self.findings),
            draft_text=self.narrative,
            urgent=self.urgent_text or any(f.urgent for f in self.findings),
            structured=self.structured,
            notes=list(self.notes),
        )


# --- JSON extraction ------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def _balanced_spans(text: str, opener: str, closer: str) -> list[tuple[int, int | None]]:
    """Spans of balanced `opener`...`closer` groups (string-aware); an unclosed one ends as None."""
    spans: list[tuple[int, int | None]] = []
    i = 0
    n = len(text)
    while i < n:
        start = text.find(opener, i)
        if start < 0:
            break
        depth, in_str, esc, j = 0, False, False, start
        end: int | None = None
        while j < n:
            c = text[j]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    end = j + 1
                    break
            j += 1
        spans.append((start, end))
        if end is None:
            break  # the rest is one unclosed group
        i = end
    return spans


def _repair(s: str) -> str:
    """Common near-JSON: trailing commas, Python literals, single-quoted strings, bare keys."""
    s = re.sub(r",\s*([}\]])", r"\1", s)
    s = re.sub(r"\bTrue\b", "true", s)
    s = re.sub(r"\bFalse\b", "false", s)
    s = re.sub(r"\bNone\b", "null", s)
    if "'" in s and '"' not in s:
        s = s.replace("'", '"')
    s = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:", r'\1"\2":', s)
    return s


def _close_truncated(s: str) -> str:
    """Close a JSON document cut off mid-way (token limit): open string, then open brackets."""
    stack: list[str] = []
    in_str = esc = False
    for c in s:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]" and stack:
            stack.pop()
    out = s + ('"' if in_str else "")
    out = re.sub(r",\s*$", "", out.rstrip())
    out = re.sub(r'[,{]\s*"[^"]*"\s*:?\s*$', lambda m: "{" if m.group(0).startswith("{") else "", out)
    return out + "".join(reversed(stack))


def _loads(candidate: str) -> Any:
    for attempt in (candidate, _repair(candidate)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            continue
    return None


def _schema_like(obj: Any) -> bool:
    if isinstance(obj, dict):
        keys = {str(k).lower() for k in obj}
        return bool(keys & ({"findings", "finding"} | set(_NARRATIVE_KEYS)))
    if isinstance(obj, list):
        return any(isinstance(x, dict) and "finding" in {str(k).lower() for k in x} for x in obj)
    return False


def extract_json(text: str) -> tuple[Any, bool]:
    """The first JSON value in `text` that looks like our schema; (value, truncated) or (None, False)."""
    candidates: list[tuple[str, bool]] = [(m.group(1).strip(), False) for m in _FENCE.finditer(text)]
    stripped = text.strip()
    candidates.append((stripped, False))
    spans = [sp for opener, closer in (("{", "}"), ("[", "]")) for sp in _balanced_spans(text, opener, closer)]
    for start, end in sorted(spans, key=lambda sp: sp[0]):  # outermost (earliest) first
        candidates.append((text[start:], True) if end is None else (text[start:end], False))
    for cand, truncated in candidates:
        if not cand:
            continue
        obj = _loads(cand)
        if obj is None and truncated:
            obj = _loads(_close_truncated(cand))
        if obj is not None and _schema_like(obj):
            return obj, truncated
    # An unclosed fence (```json {... with no closing fence) is a truncated document.
    m = re.search(r"```(?:json|JSON)?\s*(\{.*)$", text, re.S)
    if m:
        obj = _loads(_close_truncated(m.group(1)))
        if obj is not None and _schema_like(obj):
            return obj, True
    return None, False


# --- validation -----------------------------------------------------------------------------

_NARRATIVE_KEYS = ("narrative", "draft", "draft_text", "summary", "impression", "report", "text", "comparison")


def _key(d: dict[str, Any], *names: str) -> Any:
    low = {str(k).lower().strip(): v for k, v in d.items()}
    for n in names:
        if n in low:
            return low[n]
    return None


def _norm(v: Any) -> str:
    return re.sub(r"\s+", " ", str(v).strip().lower().replace("-", " ").replace("_", " ")) if v is not None else ""


def _lookup(v: Any, table: dict[str, Any]) -> Any:
    if v is None:
        return None
    raw = str(v).strip().lower()
    if raw in table:
        return table[raw]
    n = _norm(v)
    if n in table:
        return table[n]
    if n.replace(" ", "_") in table:
        return table[n.replace(" ", "_")]
    for word, val in sorted(table.items(), key=lambda kv: -len(kv[0])):  # longest phrase first
        if len(word) > 2 and re.search(rf"\b{re.escape(word)}\b", n):
            return val
    return None


def _confidence(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, str):
        s = v.strip().lower()
        words = {"high": 0.8, "moderate": 0.6, "medium": 0.6, "low": 0.3, "very high": 0.9, "very low": 0.1}
        if s in words:
            return words[s]
        m = re.match(r"^(-?\d+(?:\.\d+)?)\s*(%?)$", s)
        if not m:
            return None
        x = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    else:
        return None
    if x != x:  # NaN
        return None
    if 1.0 < x <= 100.0:
        x /= 100.0  # a percentage without the sign
    return min(1.0, max(0.0, x))


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


DEFAULT_CONFIDENCE = 0.5


def _finding(item: Any, i: int, has_prior: bool, notes: list[str]) -> FindingResult | None:
    """One validated finding, or None (with a note) for an entry that cannot be used."""
    if isinstance(item, str):
        item = {"finding": item}
    if not isinstance(item, dict):
        notes.append(f"finding {i}: not an object; ignored")
        return None
    urgent = _bool(_key(item, "urgent", "critical", "is_urgent"))
    raw_finding = _key(item, "finding", "type", "name", "label", "observation")
    ftype = _lookup(raw_finding, _FINDING_SYNONYMS)
    if ftype is None:
        if raw_finding is None and not urgent:
            notes.append(f"finding {i}: no finding type; ignored")
            return None
        ftype = FindingType.other
        if raw_finding is not None:
            notes.append(f"finding {i}: '{str(raw_finding)[:60]}' is not in the vocabulary; kept as 'other'")
    raw_change = _key(item, "change", "interval_change", "status", "trend")
    change = _lookup(raw_change, _CHANGE_SYNONYMS)
    if change is None:
        change = Change.no_prior if not has_prior else Change.new
        if raw_change is None:
            notes.append(f"finding {i}: no change given; read as '{change}'")
        else:
            notes.append(f"finding {i}: change '{str(raw_change)[:40]}' not understood; read as '{change}'")
    raw_side = _key(item, "side", "laterality")
    side = None if _norm(raw_side) in _NULLS else _lookup(raw_side, _SIDE_SYNONYMS)
    if side is None and _norm(raw_side) not in _NULLS:
        notes.append(f"finding {i}: side '{str(raw_side)[:30]}' not understood; left empty")
    raw_zone = _key(item, "zone", "location", "region")
    zone = None if _norm(raw_zone) in _NULLS else _lookup(raw_zone, _ZONE_SYNONYMS)
    if zone is None and _norm(raw_zone) not in _NULLS:
        notes.append(f"finding {i}: zone '{str(raw_zone)[:30]}' not understood; left empty")
        if side is None:
            side = _lookup(raw_zone, _SIDE_SYNONYMS)  # "right base" given as the zone
    conf = _confidence(_key(item, "confidence", "probability", "score", "certainty"))
    if conf is None:
        conf = DEFAULT_CONFIDENCE
        notes.append(f"finding {i}: no usable confidence; set to {DEFAULT_CONFIDENCE}")
    return FindingResult(
        finding=ftype, side=side, zone=zone, change=change, urgent=bool(urgent), confidence=conf
    )


def _narrative_from(findings: list[FindingResult]) -> str:
    if not findings:
        return "No findings reported."
    parts = []
    for f in findings:
        where = " ".join(x for x in (f.side, f.zone) if x)
        change = "" if f.change == Change.no_prior else f"{f.change} "
        parts.append(f"{change}{f.finding.replace('_', ' ')}{' (' + where + ')' if where else ''}".capitalize())
    return ". ".join(parts) + "."


def urgent_terms_in(text: str) -> list[str]:
    """Urgent terms named in free text and not negated inside their clause."""
    hits: set[str] = set()
    for clause in clauses(text):
        low = clause.lower()
        for term in URGENT_TERMS:
            for m in re.finditer(rf"\b{re.escape(term)}\b", low):
                if not _negated(low, m.start(), m.end()):
                    hits.add(term)
    return sorted(hits)


def parse_model_output(text: str | None, *, has_prior: bool) -> ParsedOutput:
    """Read one model output; never raises.

    Parameters
    ----------
    text
        The model's decoded reply (the prompt already removed).
    has_prior
        Whether a prior was given: decides what a missing or unreadable change is read as.
    """
    try:
        return _parse(text or "", has_prior)
    except Exception as exc:  # the parser must never take down a worker
        raw = (text or "").strip()[:MAX_NARRATIVE_CHARS]
        return ParsedOutput(
            narrative=raw or "(the model returned no text)",
            structured=False,
            notes=[f"model output could not be parsed ({type(exc).__name__}); shown as unstructured text"],
            urgent_text=bool(urgent_terms_in(raw)),
        )


def _parse(text: str, has_prior: bool) -> ParsedOutput:
    obj, truncated = extract_json(text)
    notes: list[str] = []
    if obj is None:
        raw = text.strip()[:MAX_NARRATIVE_CHARS]
        urgent = urgent_terms_in(raw)
        notes.append("model output was not valid JSON; shown as unstructured text")
        if urgent:
            notes.append(f"unstructured text names urgent term(s) {', '.join(urgent)}: marked urgent for review")
        return ParsedOutput(
            narrative=raw or "(the model returned no text)", structured=False, notes=notes, urgent_text=bool(urgent)
        )
    if truncated:
        notes.append("model output was cut off; the JSON was closed and read as far as it went")
    if isinstance(obj, list):
        items, narrative = obj, None
    elif "findings" not in {str(k).lower() for k in obj} and _key(obj, "finding") is not None \
            and not isinstance(_key(obj, "finding"), list):
        items, narrative = [obj], _key(obj, *_NARRATIVE_KEYS)  # one finding object on its own
    else:
        items = _key(obj, "findings", "finding")
        narrative = _key(obj, *_NARRATIVE_KEYS)
        if isinstance(items, dict):
            items = [items]
        if items is not None and not isinstance(items, list):
            notes.append("'findings' is not a list; ignored")
            items = []
        items = items or []
    findings = [f for i, it in enumerate(items) if (f := _finding(it, i, has_prior, notes)) is not None]
    if not isinstance(narrative, str) or not narrative.strip():
        if narrative is not None:
            notes.append("narrative was not text; written from the findings")
        narrative = _narrative_from(findings)
    return ParsedOutput(narrative=narrative.strip()[:MAX_NARRATIVE_CHARS], findings=findings, structured=True, notes=notes)
