"""The hand-labelled sentence set (data/labelled_sentences.txt) and per-field scoring of the
labeler against it. Shares nothing with monitoring.labeler but its output type.

    .venv/bin/python -m tests.monitoring.labelled_set   # prints accuracy per field and the misses
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data" / "labelled_sentences.txt"  # dev: seen while writing the rules
HELDOUT = Path(__file__).parent / "data" / "heldout_sentences.txt"  # held out: never used to tune


@dataclass(frozen=True)
class Gold:
    text: str
    findings: dict[str, tuple[str, str | None, str | None, bool]]  # finding -> (change, side, zone, uncertain)
    negated: frozenset[str]
    urgent: bool


def load(path: Path = DATA) -> list[Gold]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, fs, neg, urg = (p.strip() for p in line.split("||"))
        findings = {}
        if fs != "-":
            for item in fs.split(";"):
                f, ch, side, zone, unc = item.strip().split(":")
                findings[f] = (ch, None if side == "~" else side, None if zone == "~" else zone, unc == "1")
        out.append(Gold(text, findings, frozenset() if neg == "-" else frozenset(neg.split(",")), urg == "1"))
    return out


def score(label_fn, path: Path = DATA) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """{field: (correct, total)} and a list of human-readable misses."""
    tallies: dict[str, list[int]] = {k: [0, 0] for k in (
        "finding_recall", "finding_precision", "change", "side", "zone", "uncertain", "negated", "urgent")}
    misses: list[str] = []

    def tick(key: str, ok: bool, why: str) -> None:
        tallies[key][1] += 1
        if ok:
            tallies[key][0] += 1
        else:
            misses.append(why)

    for g in load(path):
        r = label_fn(g.text)
        pred = {}
        for lb in r.labels:  # one prediction per finding type (the first, as labels are sorted)
            pred.setdefault(lb.finding, lb)
        for f in g.findings:
            tick("finding_recall", f in pred, f"{g.text!r}: missed {f}")
        for f in pred:
            tick("finding_precision", f in g.findings, f"{g.text!r}: extra {f}")
        for f, (ch, side, zone, unc) in g.findings.items():
            if f not in pred:
                continue
            p = pred[f]
            tick("change", p.change == ch, f"{g.text!r}: {f} change {p.change} != {ch}")
            tick("side", p.side == side, f"{g.text!r}: {f} side {p.side} != {side}")
            tick("zone", p.zone == zone, f"{g.text!r}: {f} zone {p.zone} != {zone}")
            tick("uncertain", p.uncertain == unc, f"{g.text!r}: {f} uncertain {p.uncertain} != {unc}")
        tick("negated", frozenset(r.negated) == g.negated, f"{g.text!r}: negated {sorted(r.negated)} != {sorted(g.negated)}")
        tick("urgent", r.urgent == g.urgent, f"{g.text!r}: urgent {r.urgent} != {g.urgent}")
    return {k: (v[0], v[1]) for k, v in tallies.items()}, misses


if __name__ == "__main__":
    from monitoring.labeler import label_report

    import sys

    for path in (DATA, HELDOUT):
        acc, miss = score(label_report, path)
        print(f"{path.name}: {len(load(path))} sentences")
        for k, (c, n) in acc.items():
            print(f"  {k:18s} {c:4d}/{n:<4d} {c / n:6.1%}")
        if "-v" in sys.argv:
            print("  " + "\n  ".join(miss))
