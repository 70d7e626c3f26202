"""Recalibration proposals (issue 30): fit a per-finding-type Platt map of the engine's raw confidence
on one window of signed outcomes, measure ECE before and after on a later window the fit never saw,
and store it as a *proposal*. It changes nothing until an admin accepts it (`priorwatch.recalibration`
accept / reject / revert, all audited); monitoring never refits or applies one by itself.

Why Platt (two parameters per type): a type has tens to a few hundred labelled claims a month; Platt
fixes both a shift (over- or under-confidence) and a spread, keeps the order of findings (monotone),
and with a ridge towards the identity stays safe on few labels. Temperature scaling alone cannot
fix a shift; isotonic regression needs hundreds of labels per type and gives steps.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from monitoring.calibration import claims, ece, fit_platt, mapped
from monitoring.dataset import load_frame
from monitoring.settings import MonitoringSettings
from priorwatch.models import AuditLog, Recalibration
from priorwatch.recalibration import RecalibrationError


def _in_the_large(conf: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(share right - mean confidence, two-sided p that the confidence is a probability of being right)."""
    if len(conf) == 0:
        return 0.0, 1.0
    v = float((conf * (1 - conf)).sum())
    z = float(right.sum() - conf.sum()) / math.sqrt(v) if v > 0 else 0.0
    return float(right.mean() - conf.mean()), math.erfc(abs(z) / math.sqrt(2))


def propose(engine: Engine, fit: tuple[datetime, datetime], evaluate: tuple[datetime, datetime],
            ms: MonitoringSettings, created_by: str, as_of: datetime | None = None) -> Recalibration:
    """Fit on `fit`, evaluate on `evaluate` (which must start at or after the fit's end), store the proposal
    and audit it. A type gets a map only when its fit claims are miscalibrated (right at least
    `calibration_gap_threshold` more or less often than their confidence says, p < alpha / types judged) and
    number at least
    `recalibration_min_labels`: what is not broken on the fit window is left alone, decided without the
    evaluation window."""
    if evaluate[0] < fit[1]:
        raise RecalibrationError("the evaluation window must start after the fit window ends (no peeking)")
    as_of = as_of or evaluate[1]
    fc = claims(load_frame(engine, fit[0], fit[1], ms, as_of=as_of))
    ec = claims(load_frame(engine, evaluate[0], evaluate[1], ms, as_of=as_of))
    bins = ms.calibration_bins
    counts = fc["finding"].value_counts()
    n_tested = max(1, int((counts >= ms.recalibration_min_labels).sum()))  # Bonferroni over the types judged
    params: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for typ in sorted(set(fc["finding"]) | set(ec["finding"])):
        f = fc[fc["finding"] == typ]
        e = ec[ec["finding"] == typ]
        row: dict[str, Any] = {"n_fit": int(len(f)), "n_eval": int(len(e))}
        gap, p = _in_the_large(f["raw_confidence"].to_numpy(float), f["correct"].to_numpy(bool))
        row.update({"fit_gap": gap, "fit_p": p})
        if len(f) < ms.recalibration_min_labels:
            row["note"] = f"fewer than {ms.recalibration_min_labels} labelled claims to fit: raw confidence kept"
        elif abs(gap) < ms.calibration_gap_threshold or p >= ms.alpha / n_tested:
            row["note"] = "calibrated within the gap threshold on the fit window: raw confidence kept"
        else:
            a, b = fit_platt(f["raw_confidence"].to_numpy(), f["correct"].to_numpy(), ms.recalibration_ridge)
            params[str(typ)] = {"a": a, "b": b, "n_fit": int(len(f))}
        if len(e):
            right = e["correct"].to_numpy(bool)
            shown = e["confidence"].to_numpy(float)  # what readers saw (an earlier accepted map included)
            after = (mapped(e["raw_confidence"].to_numpy(float), params[str(typ)]["a"], params[str(typ)]["b"])
                     if str(typ) in params else e["raw_confidence"].to_numpy(float))
            row.update({"ece_before": ece(shown, right, bins), "ece_after": ece(after, right, bins),
                        "brier_before": float(np.mean((shown - right) ** 2)),
                        "brier_after": float(np.mean((after - right) ** 2)), "accuracy": float(right.mean()),
                        "mean_confidence_before": float(shown.mean()), "mean_confidence_after": float(after.mean())})
        metrics[str(typ)] = row
    with Session(engine, expire_on_commit=False) as s:
        version = int(s.exec(select(func.max(Recalibration.version))).one() or 0) + 1
        recal = Recalibration(version=version, status="proposed", method="platt", params_json=json.dumps(params),
                              metrics_json=json.dumps(metrics), fit_start=fit[0], fit_end=fit[1],
                              eval_start=evaluate[0], eval_end=evaluate[1], created_by=created_by)
        s.add(recal)
        s.flush()
        s.add(AuditLog(user=created_by, action="recal_propose",
                       detail=json.dumps({"recalibration_id": recal.id, "version": version,
                                          "types": sorted(params)}, sort_keys=True)))
        s.commit()
    return recal
