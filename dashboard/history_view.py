"""The patient's history on the review page (issue 29): the study strip under the viewer's panes, each
finding's sizes over time, and the line naming the prior and the baseline the draft compares with.

Pure functions of what `commands.open_study` returned (no database here); the review page draws
them. The strip's thumbnails come from the same session-only image route as the viewer's images.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from priorwatch.models import Comparison, Finding, Instance, Study

ROLE_LABELS = {"most_recent": "compared prior", "baseline": "baseline", "intermediate": "intermediate study"}


@dataclass(frozen=True)
class StripStudy:
    """One study of the strip: what its tile says and what a pane shows when it is picked."""

    study_id: int
    date: str
    view: str
    role: str  # "current", a PriorRole's label, or "" for an earlier study the engine did not use
    url: str  # the viewer-size image at the page's window
    thumb_url: str
    markers: tuple[str, str]

    @property
    def caption(self) -> str:
        return " · ".join(x for x in (self.role.capitalize() or "Earlier study", self.date, self.view) if x)


def prior_choices(comp: Comparison) -> list[dict[str, Any]]:
    """The result's chosen priors (role, reason, fetched, problem); [] on results from before issue 29."""
    return json.loads(comp.prior_choices_json) if comp.prior_choices_json else []


def roles_by_study(comp: Comparison) -> dict[str, str]:
    return {c["study_uid"]: ROLE_LABELS.get(c["role"], c["role"]) for c in prior_choices(comp)}


def strip_studies(current: Study, cur_inst: Instance | None, priors: Sequence[tuple[Study, Instance]],
                  comp: Comparison, url: Callable[[Instance, bool], str],
                  markers: Callable[[Instance], tuple[str, str]]) -> list[StripStudy]:
    """The current study and every earlier one with an image, oldest first (the current last).
    `url(instance, is_current)` gives the viewer URL at the page's window (the overlay only on the current)."""
    roles = roles_by_study(comp)
    rows = [(p, inst, roles.get(p.study_uid, "")) for p, inst in priors]
    rows.sort(key=lambda t: t[0].study_date or dt.date.min)
    if cur_inst is not None:
        rows.append((current, cur_inst, "current"))
    out = []
    for study, inst, role in rows:
        full = url(inst, role == "current")
        out.append(StripStudy(study.id or 0, str(study.study_date or "date unknown"), inst.view_position or "",
                              role, full, full + "&thumb=1", markers(inst)))
    return out


def strip_html(studies: Sequence[StripStudy]) -> str:
    """The strip's tiles; each has a Left and a Right button that put its study in that pane."""
    tiles = []
    for i, s in enumerate(studies):
        tiles.append(
            f'<div class="tile" data-i="{i}" data-role="{html.escape(s.role)}">'
            f'<div class="th" role="img" aria-label="{html.escape(s.caption)}" '
            f'style="background-image:url(&quot;{html.escape(s.thumb_url)}&quot;)"></div>'
            f'<div class="tl">{html.escape(s.date)} {html.escape(s.view)}</div>'
            f'<div class="tr">{html.escape(s.role or "earlier")}</div>'
            f'<div class="tb"><button class="toL" title="Show on the left">◧ L</button>'
            f'<button class="toR" title="Show on the right">R ◨</button></div></div>')
    return '<div class="strip" id="strip">' + "".join(tiles) + "</div>"


def strip_json(studies: Sequence[StripStudy]) -> str:
    return json.dumps([{"url": s.url, "cap": s.caption, "mk": list(s.markers), "id": s.study_id} for s in studies])


def history_line(comp: Comparison) -> str | None:
    """The sentence that names what the draft compares with: the prior, the baseline, the others,
    and any prior that could not be fetched (never dropped silently)."""
    order = list(ROLE_LABELS)  # the compared prior first, then the baseline, then the others
    choices = sorted(prior_choices(comp), key=lambda c: (order.index(c["role"]) if c["role"] in order else 9,
                                                        c.get("date") or ""))
    if not choices:
        return None
    parts = []
    for c in choices:
        what = f"the {ROLE_LABELS.get(c['role'], c['role'])} of {c.get('date') or 'unknown date'}"
        if not c.get("fetched", True):
            what += f" (not fetched: {c.get('problem') or 'no reason given'})"
        parts.append(what)
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"This draft compares the current study with {listed}."


def _history(f: Finding) -> list[dict[str, Any]]:
    return json.loads(f.history_json) if f.history_json else []


def _mm(v: float | None, state: str) -> str:
    if v is not None:
        return f"{v:g}"
    return {"absent": "0", "not_assessable": "n/a"}.get(state, "?")


def sizes_text(f: Finding) -> str:
    """'8 → 11 → 15 mm', oldest first; 0 = looked for and not seen, n/a = not assessable there."""
    hist = _history(f)
    if not hist:
        return f"{f.size_mm:g} mm" if f.size_mm is not None else ""
    return " → ".join(_mm(h.get("size_mm"), h.get("state", "")) for h in hist) + " mm"


def sizes_series(f: Finding) -> list[float]:
    """The sparkline's points: the sizes over the history, 0 where looked for and not seen."""
    return [float(h["size_mm"]) if h.get("size_mm") is not None else 0.0
            for h in _history(f) if h.get("size_mm") is not None or h.get("state") == "absent"]


def chart_rows(findings: Sequence[Finding], label: Callable[[Finding], str]) -> list[dict[str, Any]]:
    """One row per finding per study with a size (or an absence): the sizes-over-time chart's data."""
    rows = []
    for f in findings:
        for h in _history(f):
            if h.get("date") and (h.get("size_mm") is not None or h.get("state") == "absent"):
                rows.append({"finding": label(f), "date": h["date"], "size (mm)": float(h.get("size_mm") or 0.0)})
    return rows
