"""Finding-level concordance between the AI's findings and the final ones: the revision
measure (in the manner of ACR Assess-AI), so a report that says what the AI said in other
words is not a revision.

Per study, finding type by finding type:

- agree: both state the finding with compatible change (equal, or one of them says no change);
- AI false positive: the AI states a finding the final report does not;
- AI miss: the final report states a finding the AI did not;
- change disagreement: both state it, with different change;
- urgency disagreement: the AI's urgent flag differs from the final one;
- a corrected history (issue 29): both give the finding's state on each study of its history and
  they differ: counted as a significant change disagreement (the trajectory was wrong).

Significant discordance (a revision) is an urgency disagreement, a false positive or miss of a
clinically significant finding type, or a change disagreement across the progression /
stability / regression groups (new vs stable, worsened vs improved). Anything else that
differs (a missed support device, worsened vs new, a hedged final finding the AI left out,
another side) is minor. Wording never enters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from monitoring.stats import wilson
from priorwatch.vocabulary import FindingType

FINDINGS: tuple[str, ...] = tuple(str(f) for f in FindingType)
FINDING_INDEX = {f: i for i, f in enumerate(FINDINGS)}
# Device placement and incidental ("other") mentions do not change what the comparison is for:
# their absence on one side is a minor discordance, never a revision.
MINOR_FINDINGS = frozenset({str(FindingType.support_device), str(FindingType.other)})
# Change groups: a disagreement inside a group (new vs worsened) is minor, across groups significant.
CHANGE_GROUP = {"new": "progression", "worsened": "progression", "stable": "stable", "improved": "regression",
                "resolved": "regression"}
NO_CLAIM = frozenset({"unknown", "no_prior", ""})  # no change stated: compatible with any change
CATEGORIES = ("agree", "minor", "change_disagreement", "ai_false_positive", "ai_miss", "urgency_disagreement")
KAPPA_BOOTSTRAP = 200  # resamples of studies for the kappa interval (cheap: weighted sums of 4 counts)


@dataclass(frozen=True)
class Claim:
    """One finding as the AI or the final report states it."""

    finding: str
    change: str = "unknown"
    side: str | None = None
    uncertain: bool = False
    # issue 29: the finding's state on each study of its history, oldest first (present / absent /
    # not_assessable); None: not stated. A reviewer who corrects it revises the trajectory.
    history: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StudyConcordance:
    category: str  # the most serious of CATEGORIES that occurred
    significant: bool  # a revision
    minor: bool  # some difference, none significant
    agree: int
    ai_false_positive: int
    ai_miss: int
    change_disagreement: int
    urgency_disagreement: bool
    ai_present: int  # bitmask over FINDINGS
    final_present: int


def _change_relation(ai: set[str], final: set[str]) -> str:
    """'agree', 'minor' or 'significant' for the best-matching pair of changes."""
    if ai & final or ai <= NO_CLAIM or final <= NO_CLAIM or (ai & NO_CLAIM) or (final & NO_CLAIM):
        return "agree"
    ga = {CHANGE_GROUP.get(c) for c in ai}
    gf = {CHANGE_GROUP.get(c) for c in final}
    return "minor" if ga & gf else "significant"


def _history_corrected(ai: list[Claim], final: list[Claim]) -> bool:
    """Both state the finding's history and no AI history is among the final ones (issue 29)."""
    a = {c.history for c in ai if c.history is not None}
    f = {c.history for c in final if c.history is not None}
    return bool(a and f and not a & f)


def history_states(raw: object) -> tuple[str, ...] | None:
    """A finding's history (JSON text or a list of `Observation` dicts or state words) as its states."""
    items = json.loads(raw) if isinstance(raw, str) and raw else raw
    if not isinstance(items, list) or not items:
        return None
    return tuple(str(o.get("state") if isinstance(o, dict) else o) for o in items)


def compare_study(ai: Iterable[Claim], final: Iterable[Claim], ai_urgent: bool, final_urgent: bool) -> StudyConcordance:
    """Concordance of one study's AI findings with its final findings."""
    ai_by: dict[str, list[Claim]] = {}
    fin_by: dict[str, list[Claim]] = {}
    for c in ai:
        ai_by.setdefault(c.finding, []).append(c)
    for c in final:
        fin_by.setdefault(c.finding, []).append(c)
    agree = fp = miss = chg = 0
    significant = minor = False
    worst = 0
    for f in set(ai_by) | set(fin_by):
        a, b = ai_by.get(f), fin_by.get(f)
        if a and b:
            rel = _change_relation({c.change for c in a}, {c.change for c in b})
            if rel == "agree" and _history_corrected(a, b):
                rel = "significant"  # a corrected history is a corrected trajectory: "new" vs "recurrent"
            if rel == "agree":
                agree += 1
                sides_a = {c.side for c in a if c.side}
                sides_b = {c.side for c in b if c.side}
                if sides_a and sides_b and not sides_a & sides_b:
                    minor = True
            else:
                chg += 1
                if rel == "significant":
                    significant = True
                    worst = max(worst, CATEGORIES.index("change_disagreement"))
                else:
                    minor = True
        elif a:
            fp += 1
            if f in MINOR_FINDINGS:
                minor = True
            else:
                significant = True
                worst = max(worst, CATEGORIES.index("ai_false_positive"))
        elif b:
            miss += 1
            if f in MINOR_FINDINGS or all(c.uncertain for c in b):
                minor = True
            else:
                significant = True
                worst = max(worst, CATEGORIES.index("ai_miss"))
    urg = bool(ai_urgent) != bool(final_urgent)
    if urg:
        significant = True
        worst = CATEGORIES.index("urgency_disagreement")
    if not significant and minor:
        worst = CATEGORIES.index("minor")
    ai_mask = sum(1 << FINDING_INDEX[f] for f in ai_by if f in FINDING_INDEX)
    fin_mask = sum(1 << FINDING_INDEX[f] for f in fin_by if f in FINDING_INDEX)
    return StudyConcordance(CATEGORIES[worst], significant, minor and not significant, agree, fp, miss, chg, urg,
                            ai_mask, fin_mask)


def presence_matrix(masks: Sequence[int] | np.ndarray) -> np.ndarray:
    """(n_studies, n_findings) booleans from bitmasks."""
    m = np.asarray(masks, dtype=np.int64).reshape(-1, 1)
    return (m >> np.arange(len(FINDINGS), dtype=np.int64)) & 1 == 1


def _kappa(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Cohen's kappa from 2x2 counts (a both present, b AI only, c final only, d neither)."""
    n = a + b + c + d
    with np.errstate(invalid="ignore", divide="ignore"):
        po = (a + d) / n
        pe = ((a + b) * (a + c) + (c + d) * (b + d)) / (n * n)
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


def agreement(ai_masks: np.ndarray, final_masks: np.ndarray, seed: int = 0) -> dict[str, object]:
    """Per finding type PPV and sensitivity of the AI against the final findings (Wilson 95 %
    intervals), and Cohen's kappa over studies x finding types (bootstrap 95 % interval over studies)."""
    A, F = presence_matrix(ai_masks), presence_matrix(final_masks)
    tp, fp, fn = (A & F).sum(0), (A & ~F).sum(0), (~A & F).sum(0)
    plo, phi = wilson(tp, tp + fp)
    slo, shi = wilson(tp, tp + fn)
    per: dict[str, dict[str, object]] = {}
    for i, f in enumerate(FINDINGS):
        per[f] = {"tp": int(tp[i]), "fp": int(fp[i]), "fn": int(fn[i]),
                  "ppv": float(tp[i] / (tp[i] + fp[i])) if tp[i] + fp[i] else None,
                  "ppv_lo": float(plo[i]) if tp[i] + fp[i] else None, "ppv_hi": float(phi[i]) if tp[i] + fp[i] else None,
                  "sensitivity": float(tp[i] / (tp[i] + fn[i])) if tp[i] + fn[i] else None,
                  "sens_lo": float(slo[i]) if tp[i] + fn[i] else None, "sens_hi": float(shi[i]) if tp[i] + fn[i] else None}
    n = len(A)
    out: dict[str, object] = {"per_finding": per, "kappa": None, "kappa_lo": None, "kappa_hi": None}
    if n:
        counts = np.column_stack([(A & F).sum(1), (A & ~F).sum(1), (~A & F).sum(1), (~A & ~F).sum(1)]).astype(float)
        tot = counts.sum(0)
        out["kappa"] = float(_kappa(*tot))
        if n >= 2:
            rng = np.random.default_rng(seed)
            w = rng.multinomial(n, np.full(n, 1.0 / n), size=KAPPA_BOOTSTRAP).astype(float)
            boot = w @ counts
            ks = _kappa(boot[:, 0], boot[:, 1], boot[:, 2], boot[:, 3])
            ks = ks[np.isfinite(ks)]
            if len(ks):
                out["kappa_lo"], out["kappa_hi"] = float(np.quantile(ks, 0.025)), float(np.quantile(ks, 0.975))
    return out
