"""The worklist page: filters, the table (urgent first, then longest waiting), open a study.

It draws and calls `dashboard.commands`; it reads no database itself.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard import commands, queries
from dashboard.ui import PAGE_WORKLIST, STATUS_LABELS, audit_page_view, db_error, open_item, plural, show_flash


def refresh_seconds() -> float | None:
    """How often the worklist refreshes itself (PRIORWATCH_DASHBOARD_REFRESH_S; 0 = never)."""
    try:
        v = float(os.environ.get("PRIORWATCH_DASHBOARD_REFRESH_S", "10"))
    except ValueError:
        v = 10.0
    return v if v > 0 else None


def _filters_from_state() -> queries.WorklistFilters:
    ss = st.session_state
    statuses = tuple(ss.get("f_status", list(queries.OPEN_STATUSES)))
    urgency = {"All": "all", "Urgent only": "urgent", "Routine only": "routine"}[ss.get("f_urgency", "All")]
    return queries.WorklistFilters(
        statuses=statuses or queries.ALL_STATUSES,
        urgency=urgency,
        modalities=tuple(ss.get("f_modality", [])),
        sites=tuple(ss.get("f_site", [])),
    )


def _row_label(r: dict[str, Any]) -> str:
    flag = "URGENT · " if r["urgent"] else ""
    return f"{flag}{r['patient']} · {r['study']} · {r['top_finding']} ({r['change']}) · {STATUS_LABELS.get(r['status'], r['status'])}"


def _reader(r: dict[str, Any]) -> str:
    return f"{r['claimed_by']} since {r['claimed_at']:%H:%M}" if r.get("claimed_by") and r.get("claimed_at") else ""


def worklist_page(user: dict[str, Any]) -> None:
    st.title("Worklist")
    audit_page_view(PAGE_WORKLIST, user["username"])
    show_flash()
    opts = commands.filter_options()
    c1, c2, c3, c4 = st.columns([2, 1.3, 1, 1.4])
    c1.multiselect(
        "Status",
        list(queries.ALL_STATUSES),
        default=list(queries.OPEN_STATUSES),
        format_func=lambda v: STATUS_LABELS.get(v, v),
        key="f_status",
    )
    c2.radio("Urgency", ["All", "Urgent only", "Routine only"], key="f_urgency", horizontal=False)
    c3.multiselect("Modality", opts["modalities"], key="f_modality", placeholder="All")
    c4.multiselect("Site", opts["sites"], key="f_site", placeholder="All")
    worklist_table()


_COLUMNS = {
    "Urgent": st.column_config.TextColumn("Urgent", width=62),
    "Patient": st.column_config.TextColumn("Patient", width=170),
    "Study": st.column_config.TextColumn("Study", width=150),
    "Interval": st.column_config.TextColumn("Interval", width=62),
    "Top finding": st.column_config.TextColumn("Top finding", width=135),
    "Change": st.column_config.TextColumn("Change", width=66),
    "Conf.": st.column_config.NumberColumn("Conf.", format="%.2f", width=50),  # none: no finding
    "Status": st.column_config.TextColumn("Status", width=70),
    "Being read by": st.column_config.TextColumn("Being read by", width=110),
    "Waiting": st.column_config.TextColumn("Waiting", width=72),
}


def _table_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "Urgent": "URGENT" if r["urgent"] else "",
        "Patient": f"{r['patient']} {r['age_sex']}",
        "Study": r["study"],
        "Interval": r["interval"],
        "Top finding": r["top_finding"],
        "Change": r["change"],
        "Conf.": r["confidence"],
        "Status": STATUS_LABELS.get(r["status"], r["status"]),
        "Being read by": _reader(r),
        "Waiting": r["waiting"],
    }


@st.fragment(run_every=refresh_seconds())
def worklist_table() -> None:
    try:
        rows = commands.worklist(_filters_from_state())
    except SQLAlchemyError as exc:
        db_error(exc)
        return
    n_urgent = sum(1 for r in rows if r["urgent"])
    st.caption(
        f"{plural(len(rows), 'study', 'studies')} · {n_urgent} urgent · urgent first, then longest waiting · "
        f"click a row to open it · updated {datetime.now().strftime('%H:%M:%S')}"
    )
    if not rows:
        f = _filters_from_state()
        if f == queries.WorklistFilters():
            st.info("The worklist is empty: no flagged studies are waiting for review. New results appear here automatically.")
        else:
            st.info("No studies match these filters. Widen the filters to see more.")
        return
    event = st.dataframe(
        [_table_row(r) for r in rows],
        hide_index=True,
        width="stretch",
        key="wl_table",
        placeholder="—",
        on_select="rerun",
        selection_mode=["single-row", "single-cell"],  # a click anywhere on a row opens it
        column_config=_COLUMNS,
    )
    ids = [r["item_id"] for r in rows]
    sel = getattr(event, "selection", None)
    picked = list(getattr(sel, "rows", []) or []) + [c[0] for c in (getattr(sel, "cells", []) or [])]
    if picked and 0 <= picked[0] < len(ids):
        st.session_state.pop("wl_table", None)
        open_item(ids[picked[0]])
        st.rerun(scope="app")
    _pick_box(rows, ids)


def _pick_box(rows: list[dict[str, Any]], ids: list[int]) -> None:
    """The keyboard way to open a study: a select box and a button."""
    labels = {r["item_id"]: _row_label(r) for r in rows}
    if st.session_state.get("wl_pick") not in ids:
        st.session_state.pop("wl_pick", None)
    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    pick = c1.selectbox(
        "Study to review",
        ids,
        format_func=lambda i: labels.get(i, str(i)),
        key="wl_pick",
        help="Keyboard: Tab here, choose with the arrow keys, then Tab to 'Open review' and press Enter.",
    )
    if c2.button("Open review", type="primary", key="wl_open"):
        open_item(int(pick))
        st.rerun(scope="app")
