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


def propose(engine: Engine, fit: tuple[datetime, datetime], evaluate: tuple[datetime, datetime],
            ms: MonitoringSettings, created_by: str, as_of: datetime | None = None) -> Recalibration:
    """Fit on `fit`, evaluate on `evaluate` (which must start at or after the fit's end), store the proposal
    and audit it. Types with fewer than `recalibration_min_labels` fit claims keep their raw confidence."""
    if evaluate[0] < fit[1]:
        raise RecalibrationError("the evaluation window must start after the fit window ends (no peeking)")
    as_of = as_of or evaluate[1]
    fc = claims(load_frame(engine, fit[0], fit[1], ms, as_of=as_of))
    ec = claims(load_frame(engine, evaluate[0], evaluate[1], ms, as_of=as_of))
    bins = ms.calibration_bins
    params: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for typ in sorted(set(fc["finding"]) | set(ec["finding"])):
        f = fc[fc["finding"] == typ]
        e = ec[ec["finding"] == typ]
        row: dict[str, Any] = {"n_fit": int(len(f)), "n_eval": int(len(e))}
        if len(f) >= ms.recalibration_min_labels:
            a, b = fit_platt(f["raw_confidence"].to_numpy(), f["correct"].to_numpy(), ms.recalibration_ridge)
            params[str(typ)] = {"a": a, "b": b, "n_fit": int(len(f))}
        else:
            row["note"] = f"fewer than {ms.recalibration_min_labels} labelled claims to fit: raw confidence kept"
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
