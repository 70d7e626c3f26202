"""Score a results file against a labelled set in the MS-CXR-T layout.

MS-CXR-T (temporal image classification, PhysioNet) labels pairs of chest radiographs
(a current and its prior) with the direction of change of five findings. A site that has
it (or a set of its own in the same layout) can measure any engine that writes our results
JSON on it; nothing here downloads anything.

Labels: a CSV like MS-CXR-T's `MS_CXR_T_temporal_image_classification_v1.0.0.csv`, one row
per pair:

- `previous_dicom_id` — the prior image's id;
- `dicom_id` — the current image's id;
- one column per finding: `consolidation`, `edema`, `pleural_effusion`, `pneumonia`,
  `pneumothorax`, each `improving`, `stable`, `worsening` or empty (not labelled for that
  pair). Other columns (`study_id`, `subject_id`, `split`, ...) are ignored.

Results: our `priorwatch results --json` format — a JSON list of comparison records (or an
object with such a list under `results`), each with `findings` (`finding`, `change`, ...).
A record is matched to a label row by its *key*: the record's `dicom_id` (and, when present,
`previous_dicom_id`) if it has them; otherwise `current_study_uid` (and `prior_study_uid`);
otherwise `accession_number`. The label row's `dicom_id` / `previous_dicom_id` are compared
with that key, so a site either stores image ids in its records or names its label rows by
study UID or accession. Rows without a matching record count as missing and are scored as
"stable" predictions (what a silent engine says), and reported.

Mapping our vocabulary to MS-CXR-T's:

- finding: `consolidation` → consolidation and pneumonia; `edema` → edema; `effusion` →
  pleural_effusion; `pneumothorax` → pneumothorax (nodule / mass / others have no label);
- change: `improved` / `resolved` → improving; `stable` → stable; `new` / `worsened` →
  worsening. Several findings of one label in a record: the most confident non-stable one;
  none: stable.

Score: per finding, accuracy over the pairs labelled for it and macro accuracy (the mean of
the per-class recalls over the classes present); the overall macro accuracy is the mean over
findings with labels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

__all__ = ["FINDINGS", "CLASSES", "FINDING_MAP", "CHANGE_MAP", "predict_labels", "score", "score_files", "print_scores"]

FINDINGS = ("consolidation", "edema", "pleural_effusion", "pneumonia", "pneumothorax")
CLASSES = ("improving", "stable", "worsening")
FINDING_MAP: dict[str, tuple[str, ...]] = {
    "consolidation": ("consolidation", "pneumonia"),
    "edema": ("edema",),
    "effusion": ("pleural_effusion",),
    "pneumothorax": ("pneumothorax",),
}
CHANGE_MAP = {"improved": "improving", "resolved": "improving", "stable": "stable", "new": "worsening", "worsened": "worsening"}


def _records(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        doc = doc.get("results", doc.get("comparisons", []))
    if not isinstance(doc, list):
        raise ValueError("a results file holds a JSON list of comparison records")
    return [r for r in doc if isinstance(r, dict)]


def _keys(rec: dict[str, Any]) -> list[tuple[str, str | None]]:
    out = []
    for cur, pri in (("dicom_id", "previous_dicom_id"), ("current_study_uid", "prior_study_uid"), ("accession_number", None)):
        if rec.get(cur):
            out.append((str(rec[cur]), str(rec[pri]) if pri and rec.get(pri) else None))
    return out


def predict_labels(rec: dict[str, Any]) -> dict[str, str]:
    """One record's findings in MS-CXR-T terms: {finding: improving | stable | worsening}."""
    best: dict[str, tuple[float, str]] = {}
    for f in rec.get("findings") or []:
        change = CHANGE_MAP.get(str(f.get("change")))
        if change is None or change == "stable":
            continue
        for label in FINDING_MAP.get(str(f.get("finding")), ()):
            conf = float(f.get("confidence") or 0.0)
            if label not in best or conf > best[label][0]:
                best[label] = (conf, change)
    return {k: best[k][1] if k in best else "stable" for k in FINDINGS}


def score(records: list[dict[str, Any]], labels: list[dict[str, str]]) -> dict[str, Any]:
    index: dict[tuple[str, str | None], dict[str, Any]] = {}
    for rec in records:
        for k in _keys(rec):
            index.setdefault(k, rec)
    per: dict[str, dict[str, Any]] = {}
    counts = {f: {c: [0, 0] for c in CLASSES} for f in FINDINGS}  # [right, total] per true class
    missing = 0
    for row in labels:
        cur, pri = (row.get("dicom_id") or "").strip(), (row.get("previous_dicom_id") or "").strip() or None
        rec = index.get((cur, pri)) or index.get((cur, None))
        if rec is None:
            missing += 1
        pred = predict_labels(rec) if rec is not None else {k: "stable" for k in FINDINGS}
        for f in FINDINGS:
            truth = (row.get(f) or "").strip().lower()
            if truth not in CLASSES:
                continue
            counts[f][truth][1] += 1
            counts[f][truth][0] += pred[f] == truth
    for f in FINDINGS:
        tot = sum(v[1] for v in counts[f].values())
        if not tot:
            continue
        recalls = [v[0] / v[1] for v in counts[f].values() if v[1]]
        per[f] = dict(n=tot, accuracy=sum(v[0] for v in counts[f].values()) / tot,
                      macro_accuracy=sum(recalls) / len(recalls),
                      per_class={c: (v[0] / v[1] if v[1] else None) for c, v in counts[f].items()})
    macro = sum(d["macro_accuracy"] for d in per.values()) / len(per) if per else float("nan")
    return dict(pairs=len(labels), matched=len(labels) - missing, missing=missing, per_finding=per, macro_accuracy=macro)


def score_files(results: str | Path, labels: str | Path) -> dict[str, Any]:
    recs = _records(json.loads(Path(results).read_text()))
    with open(labels, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"dicom_id", "previous_dicom_id"} <= set(rows[0]):
        raise ValueError("the labels CSV needs dicom_id and previous_dicom_id columns (MS-CXR-T layout)")
    return score(recs, rows)


def print_scores(s: dict[str, Any]) -> None:
    print(f"{'finding':<18}{'n':>5}{'acc':>7}{'macro':>7}  improving / stable / worsening recall")
    for f, d in s["per_finding"].items():
        pc = " / ".join("-" if d["per_class"][c] is None else f"{d['per_class'][c]:.2f}" for c in CLASSES)
        print(f"{f:<18}{d['n']:>5}{d['accuracy']:>7.2f}{d['macro_accuracy']:>7.2f}  {pc}")
    print(f"pairs {s['pairs']} (matched {s['matched']}, missing {s['missing']}); macro accuracy {s['macro_accuracy']:.3f}")
