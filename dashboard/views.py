"""The dashboard's pages, drawn with Streamlit. Data access is in `dashboard.queries`.

Session state used across reruns:

- ``user``: ``{"username", "role"}`` once logged in
- ``page``: the current page label (the sidebar radio, key ``nav``, follows it)
- ``review_item``: the worklist item open on the review page
- ``review_started``: ``{item_id: datetime}`` when each open review began (time spent)
- ``flash``: a one-shot message shown on the next page drawn
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard import auth, images, queries
from priorwatch.db import init_db, session_scope
from priorwatch.models import User, utcnow
from priorwatch.settings import get_settings
from priorwatch.vocabulary import Change, FindingType, Side, Zone

PAGE_WORKLIST = "Worklist"
PAGE_REVIEW = "Review"
PAGE_MONITORING = "Monitoring"
PAGE_USERS = "Users"
PAGES_BY_ROLE: dict[str, list[str]] = {
    auth.Role.radiologist: [PAGE_WORKLIST, PAGE_REVIEW],
    auth.Role.qa: [PAGE_MONITORING],
    auth.Role.admin: [PAGE_WORKLIST, PAGE_REVIEW, PAGE_MONITORING, PAGE_USERS],
}
# Plain-text marks (no emoji): they render on a reading-room workstation without emoji fonts.
GUARD_MARKS = {
    "supported": "✓ supported",
    "unsupported": "⚠ UNSUPPORTED",
    "unverified": "? unverified",
    None: "? unverified",
}
STATUS_LABELS = {
    "pending": "pending",
    "in_review": "in review",
    "accepted": "accepted",
    "edited": "edited",
    "rejected": "rejected",
}
NONE_OPTION = "—"


def refresh_seconds() -> float | None:
    """How often the worklist refreshes itself (PRIORWATCH_DASHBOARD_REFRESH_S; 0 = never)."""
    try:
        v = float(os.environ.get("PRIORWATCH_DASHBOARD_REFRESH_S", "10"))
    except ValueError:
        v = 10.0
    return v if v > 0 else None


# ---------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------
_READY: set[str] = set()


def ensure_db() -> None:
    """Create tables once per database URL; raises if the database is unreachable."""
    url = get_settings().resolved_database_url
    if url not in _READY:
        init_db(get_settings())
        _READY.add(url)


def db_error(exc: Exception) -> None:
    st.error(
        "**Database unreachable.** PriorWatch cannot read or write its database right now, "
        "so nothing was saved. Check that the database is running and that "
        "PRIORWATCH_DATABASE_URL / PRIORWATCH_DATA_DIR point at it, then reload the page.\n\n"
        f"Details: `{type(exc).__name__}: {str(exc).splitlines()[0][:300]}`",
        icon=":material/cloud_off:",
    )


def flash(msg: str, kind: str = "success") -> None:
    st.session_state["flash"] = (kind, msg)


def show_flash() -> None:
    f = st.session_state.pop("flash", None)
    if f:
        kind, msg = f
        getattr(st, kind)(msg)


def go(page: str) -> None:
    """Switch page on the next run (the sidebar radio follows `page`)."""
    st.session_state["page"] = page


def _nav_changed() -> None:
    st.session_state["page"] = st.session_state["nav"]


# ---------------------------------------------------------------------------------------
# Login
# ---------------------------------------------------------------------------------------
def login_page() -> None:
    st.title("PriorWatch")
    st.caption("Longitudinal comparison drafts for radiologists. AI output is a draft; a human signs.")
    with session_scope() as s:
        n_users = auth.user_count(s)
    if n_users == 0:
        st.warning(
            "No accounts exist yet. An engineer creates the first one on the server with "
            "`priorwatch user add NAME --role admin`."
        )
    with st.form("login", clear_on_submit=False):
        username = st.text_input("Username", key="login_username", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Log in", type="primary")
    st.caption("Press Enter in the password field to log in.")
    if not submitted:
        return
    if not username or not password:
        st.error("Enter your username and password.")
        return
    with session_scope() as s:
        user = auth.authenticate(s, username, password)
        if user is None:
            queries.audit(s, username.strip()[:64] or "?", "login_failed")
        else:
            queries.audit(s, user.username, "login", detail={"role": user.role})
            st.session_state["user"] = {"username": user.username, "role": user.role}
    if user is None:
        st.error("Wrong username or password.")
        return
    st.session_state.pop("login_password", None)
    go(PAGES_BY_ROLE.get(user.role, [PAGE_WORKLIST])[0])
    st.rerun()


def logout() -> None:
    user = st.session_state.get("user")
    if user:
        try:
            with session_scope() as s:
                queries.audit(s, user["username"], "logout")
        except SQLAlchemyError:
            pass
    for k in list(st.session_state.keys()):
        del st.session_state[k]


# ---------------------------------------------------------------------------------------
# Worklist
# ---------------------------------------------------------------------------------------
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


def worklist_page() -> None:
    st.title("Worklist")
    show_flash()
    with session_scope() as s:
        opts = queries.filter_options(s)
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


@st.fragment(run_every=refresh_seconds())
def worklist_table() -> None:
    try:
        with session_scope() as s:
            rows = queries.worklist(s, _filters_from_state())
    except SQLAlchemyError as exc:
        db_error(exc)
        return
    n_urgent = sum(1 for r in rows if r["urgent"])
    st.caption(
        f"{len(rows)} studies · {n_urgent} urgent · urgent first, then longest waiting · "
        f"updated {datetime.now().strftime('%H:%M:%S')}"
    )
    if not rows:
        f = _filters_from_state()
        if f == queries.WorklistFilters():
            st.info("The worklist is empty: no flagged studies are waiting for review. New results appear here automatically.")
        else:
            st.info("No studies match these filters. Widen the filters to see more.")
        return
    table = [
        {
            "Urgent": "URGENT" if r["urgent"] else "",
            "Patient": r["patient"],
            "Age/Sex": r["age_sex"],
            "Study": r["study"],
            "Prior": r["prior_date"],
            "Interval": r["interval"],
            "Top finding": r["top_finding"],
            "Change": r["change"],
            "Confidence": r["confidence"],
            "Status": STATUS_LABELS.get(r["status"], r["status"]),
            "Waiting": r["waiting"],
        }
        for r in rows
    ]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "Urgent": st.column_config.TextColumn("Urgent", width=70),
            "Age/Sex": st.column_config.TextColumn("Age/Sex", width=65),
            "Prior": st.column_config.TextColumn("Prior", width=90),
            "Interval": st.column_config.TextColumn("Interval", width=70),
            "Change": st.column_config.TextColumn("Change", width=70),
            "Confidence": st.column_config.ProgressColumn(
                "Confidence", min_value=0.0, max_value=1.0, format="%.2f", width=90
            ),
            "Status": st.column_config.TextColumn("Status", width=80),
            "Waiting": st.column_config.TextColumn("Waiting", width=80),
        },
    )
    ids = [r["item_id"] for r in rows]
    labels = {r["item_id"]: _row_label(r) for r in rows}
    if st.session_state.get("wl_pick") not in ids:
        st.session_state.pop("wl_pick", None)
    pick = st.selectbox(
        "Study to review",
        ids,
        format_func=lambda i: labels.get(i, str(i)),
        key="wl_pick",
        help="Tab here, choose with the arrow keys, then Tab to 'Open review' and press Enter.",
    )
    if st.button("Open review", type="primary", key="wl_open"):
        st.session_state["review_item"] = int(pick)
        go(PAGE_REVIEW)
        st.rerun(scope="app")


# ---------------------------------------------------------------------------------------
# Review
# ---------------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner=False)
def _load_image(path: str, mtime: float) -> images.LoadedImage:  # mtime: cache key
    return images.load_dicom(path)


def _image_for(path: str | None, preset: str) -> tuple[Any | None, str | None]:
    if not path:
        return None, "no image of this study is indexed"
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return None, f"the study's image file is missing: `{path}`"
    try:
        img = _load_image(path, mtime)
    except images.ImageUnavailable as exc:
        return None, str(exc)
    return images.apply_window(img, preset), None


def _state_keys(item_id: int, detail: queries.StudyDetail) -> dict[str, Any]:
    return {
        "draft": f"draft_{item_id}",
        "missed": f"missed_{item_id}",
        "wrong": {f.id: f"wrong_{item_id}_{f.id}" for f in detail.findings},
        "change": {f.id: f"chg_{item_id}_{f.id}" for f in detail.findings},
        "urgent": {f.id: f"urg_{item_id}_{f.id}" for f in detail.findings},
        "reason": f"reason_{item_id}",
    }


def _corrections(detail: queries.StudyDetail, keys: dict[str, Any]) -> tuple[set[int], dict[int, dict[str, Any]], list[dict[str, Any]]]:
    ss = st.session_state
    wrong = {fid for fid, k in keys["wrong"].items() if ss.get(k)}
    relabel: dict[int, dict[str, Any]] = {}
    for f in detail.findings:
        fix: dict[str, Any] = {}
        chg = ss.get(keys["change"][f.id], f.change)
        if chg != f.change:
            fix["change"] = chg
        urg = ss.get(keys["urgent"][f.id], bool(f.urgent))
        if urg != bool(f.urgent):
            fix["urgent"] = urg
        if fix:
            relabel[f.id] = fix  # type: ignore[index]
    missed = list(ss.get(keys["missed"], []))
    return wrong, relabel, missed


def _close_review(item_id: int) -> None:
    started = st.session_state.get("review_started", {})
    started.pop(item_id, None)
    for k in [k for k in st.session_state.keys() if isinstance(k, str) and k.endswith(f"_{item_id}") or (isinstance(k, str) and f"_{item_id}_" in k)]:
        del st.session_state[k]
    st.session_state.pop("review_item", None)


def review_page() -> None:
    user = st.session_state["user"]
    item_id = st.session_state.get("review_item")
    if item_id is None:
        st.title("Review")
        st.info("No study is open. Choose one on the worklist and press **Open review**.")
        if st.button("Go to the worklist"):
            go(PAGE_WORKLIST)
            st.rerun()
        return
    started = st.session_state.setdefault("review_started", {})
    with session_scope() as s:
        if item_id not in started:
            detail = queries.open_review(s, item_id, user["username"])
            if detail is not None:
                started[item_id] = utcnow()
        else:
            detail = queries.study_detail(s, item_id)
    if detail is None:
        st.title("Review")
        st.error("This worklist item no longer exists. It may have been removed; go back to the worklist.")
        if st.button("Back to worklist"):
            _close_review(item_id)
            go(PAGE_WORKLIST)
            st.rerun()
        return

    study, prior, comp = detail.study, detail.prior, detail.comparison
    st.title(f"{study.patient_name or 'Unnamed patient'} · {queries.format_age_sex(study.patient_birth_date, study.study_date, study.patient_sex)}")
    st.caption(
        f"Patient ID {study.patient_id} · accession {study.accession or '—'} · {queries.study_label(study)}"
        + (f" · site {study.institution}" if study.institution else "")
    )
    if st.button("← Back to worklist", key="back"):
        _close_review(item_id)
        go(PAGE_WORKLIST)
        st.rerun()
    urgent = [f for f in detail.findings if f.urgent]
    if comp.urgent or urgent:
        st.error(
            "**URGENT** · "
            + (", ".join(f"{queries.finding_label(f)} — {f.change}" for f in urgent) or "flagged urgent by the model"),
            icon=":material/emergency:",
        )
    if prior is not None:
        st.markdown(
            f"**Prior:** {queries.study_label(prior)} · interval {queries.format_interval(comp.interval_days)}"
        )
    else:
        st.markdown(f"**No prior** for comparison{': ' + comp.no_prior_reason if comp.no_prior_reason else ''}.")
    st.caption(
        f"Draft by {comp.engine or 'engine'} {comp.engine_version} · model {comp.model or '—'} {comp.model_version}"
        + (" · fallback engine" if comp.fallback else "")
        + ("" if comp.structured else " · model output could not be parsed into findings")
        + " · AI output is a draft: you decide."
    )

    # Images -----------------------------------------------------------------------------
    c1, c2 = st.columns([3, 2])
    preset = c1.radio(
        "Window / level", list(images.PRESETS), horizontal=True, key="wl_preset",
        format_func=str.capitalize,
    )
    show_overlay = c2.toggle(
        "Difference overlay", key="overlay", disabled=not comp.overlay_path,
        help="The registered difference heat-map on the current image." if comp.overlay_path else "This result has no overlay.",
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Current**")
        cur_path = detail.current_instance.path if detail.current_instance else None
        arr, err = _image_for(cur_path, preset)
        if err:
            st.warning(f"Current image unavailable: {err}", icon=":material/broken_image:")
        else:
            if show_overlay:
                try:
                    arr = images.overlay_heatmap(arr, comp.overlay_path)
                except images.ImageUnavailable as exc:
                    st.warning(f"Overlay unavailable: {exc}")
            st.image(arr, caption=f"{study.study_date or ''} {detail.current_instance.view_position if detail.current_instance else ''}", width="stretch")
    with right:
        st.markdown("**Prior**")
        if prior is None:
            st.info("No prior study.")
        else:
            pr_path = detail.prior_instance.path if detail.prior_instance else None
            arr, err = _image_for(pr_path, preset)
            if err:
                st.warning(f"Prior image unavailable: {err}", icon=":material/broken_image:")
            else:
                st.image(arr, caption=f"{prior.study_date or ''} {detail.prior_instance.view_position if detail.prior_instance else ''}", width="stretch")

    # Findings ---------------------------------------------------------------------------
    st.subheader("Findings")
    if not detail.findings:
        st.info("The model reported no findings.")
    else:
        st.dataframe(
            [
                {
                    "Finding": f.finding.replace("_", " "),
                    "Side": f.side or "",
                    "Zone": f.zone or "",
                    "Change": f.change,
                    "Urgent": "URGENT" if f.urgent else "",
                    "Confidence": round(f.confidence, 2),
                    "Evidence check": GUARD_MARKS.get(f.guard, f.guard or ""),
                }
                for f in detail.findings
            ],
            hide_index=True,
            width="stretch",
            column_config={
                "Confidence": st.column_config.ProgressColumn("Confidence", min_value=0.0, max_value=1.0, format="%.2f"),
            },
        )
        unsupported = [f for f in detail.findings if f.guard == "unsupported"]
        if unsupported:
            st.warning(
                f"{len(unsupported)} claim(s) are not supported by the image evidence: "
                + ", ".join(queries.finding_label(f) for f in unsupported)
                + ". Check them before accepting."
            )
        st.caption("Evidence check: ✓ supported by the image evidence · ⚠ unsupported · ? unverified (could not be checked).")

    with st.expander("Prior report", expanded=bool(detail.prior_report)):
        if detail.prior_report:
            st.text(detail.prior_report)
        else:
            st.caption("No prior report on file.")

    if not detail.is_open:
        last = detail.reviews[-1] if detail.reviews else None
        st.info(
            f"Already reviewed: **{detail.item.status}**"
            + (f" by {last.reviewer} at {last.finished_at:%Y-%m-%d %H:%M} UTC" if last else "")
            + "."
        )
        if last:
            st.text_area("Final text", last.final_text, disabled=True, key=f"final_{item_id}")
        return
    _decision_form(item_id, detail, user["username"])


def _decision_form(item_id: int, detail: queries.StudyDetail, username: str) -> None:
    comp = detail.comparison
    keys = _state_keys(item_id, detail)
    st.subheader("Draft report")
    text = st.text_area(
        "Draft (editable)", value=comp.draft_text, height=180, key=keys["draft"],
        help="Edit the text, then use 'Accept with edits'. Ctrl+Enter applies the edit.",
    )

    with st.expander("Finding corrections (optional)"):
        for f in detail.findings:
            cc = st.columns([3, 1, 2, 1])
            cc[0].markdown(f"**{queries.finding_label(f)}** · {f.change}" + (" · urgent" if f.urgent else ""))
            cc[1].checkbox("Wrong", key=keys["wrong"][f.id], help="The finding is not there: drop it.")
            changes = [c.value for c in Change]
            cc[2].selectbox("Change", changes, index=changes.index(f.change) if f.change in changes else 0, key=keys["change"][f.id])
            cc[3].checkbox("Urgent", value=bool(f.urgent), key=keys["urgent"][f.id])
        st.markdown("**Missed finding**")
        mc = st.columns(5)
        m_finding = mc[0].selectbox("Finding", [x.value for x in FindingType], key=f"m_finding_{item_id}")
        m_side = mc[1].selectbox("Side", [NONE_OPTION] + [x.value for x in Side], key=f"m_side_{item_id}")
        m_zone = mc[2].selectbox("Zone", [NONE_OPTION] + [x.value for x in Zone], key=f"m_zone_{item_id}")
        m_change = mc[3].selectbox("Change", [x.value for x in Change], key=f"m_change_{item_id}")
        m_urgent = mc[4].checkbox("Urgent", key=f"m_urgent_{item_id}")
        if st.button("Add missed finding", key=f"m_add_{item_id}"):
            st.session_state.setdefault(keys["missed"], []).append(
                {
                    "finding": m_finding,
                    "side": None if m_side == NONE_OPTION else m_side,
                    "zone": None if m_zone == NONE_OPTION else m_zone,
                    "change": m_change,
                    "urgent": bool(m_urgent),
                }
            )
        for i, m in enumerate(list(st.session_state.get(keys["missed"], []))):
            rc = st.columns([5, 1])
            rc[0].markdown(f"+ missed: {queries.finding_label(m)} · {m['change']}" + (" · urgent" if m["urgent"] else ""))
            if rc[1].button("Remove", key=f"m_rm_{item_id}_{i}"):
                st.session_state[keys["missed"]].pop(i)
                st.rerun()

    wrong, relabel, missed = _corrections(detail, keys)
    labels_changed = bool(wrong or relabel or missed)
    text_changed = text != comp.draft_text
    corrections = {
        "wrong": sorted(wrong),
        "relabelled": {str(k): v for k, v in relabel.items()},
        "missed": missed,
    }

    st.subheader("Decision")
    a1, a2 = st.columns(2)
    accept_plain = a1.button("Accept as is", type="primary", key=f"accept_{item_id}")
    accept_edit = a2.button("Accept with edits", key=f"accept_edit_{item_id}")
    r1, r2 = st.columns([3, 1])
    reason = r1.text_input("Reason for rejection", key=keys["reason"], placeholder="e.g. wrong prior, finding not present, poor image quality")
    reject = r2.button("Reject", key=f"reject_{item_id}")

    action: str | None = None
    if accept_plain:
        if text_changed or labels_changed:
            st.error("You changed the draft or the findings. Use **Accept with edits** to keep your changes.")
        else:
            action = "accepted"
    elif accept_edit:
        if not (text_changed or labels_changed):
            st.error("Nothing was edited. Use **Accept as is**, or edit the draft or the findings first.")
        else:
            action = "edited"
    elif reject:
        if not reason.strip():
            st.error("Give a reason for the rejection.")
        else:
            action = "rejected"
    if action is None:
        return
    try:
        final_labels = queries.apply_corrections(detail.findings, wrong, relabel, missed)
        with session_scope() as s:
            review = queries.record_review(
                s,
                item_id,
                username,
                action,
                text if action != "accepted" else comp.draft_text,
                final_labels,
                reason=reason if action == "rejected" else None,
                started_at=st.session_state.get("review_started", {}).get(item_id),
                corrections=corrections if labels_changed else None,
            )
            review_id = review.id
    except queries.ReviewError as exc:
        st.error(str(exc))
        return
    flash(f"Review saved ({action}) for {detail.study.accession or detail.study.study_uid}. Review #{review_id}.")
    _close_review(item_id)
    go(PAGE_WORKLIST)
    st.rerun()


# ---------------------------------------------------------------------------------------
# Monitoring and users
# ---------------------------------------------------------------------------------------
def monitoring_page() -> None:
    try:
        from dashboard import monitoring_view
    except Exception as exc:  # noqa: BLE001 - the monitoring room may be absent or broken
        st.title("Monitoring")
        st.warning(f"Monitoring is not available in this installation ({type(exc).__name__}: {exc}).")
        return
    try:
        monitoring_view.render()
    except SQLAlchemyError:
        raise
    except Exception as exc:  # noqa: BLE001
        st.error(f"The monitoring page failed: {type(exc).__name__}: {exc}")


def users_page() -> None:
    st.title("Users")
    show_flash()
    with session_scope() as s:
        users = s.exec(__import__("sqlmodel").select(User).order_by(User.username)).all()
        st.dataframe(
            [{"Username": u.username, "Role": u.role, "Created (UTC)": u.created_at.strftime("%Y-%m-%d %H:%M")} for u in users],
            hide_index=True,
        )
    with st.form("add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        name = st.text_input("New username")
        role = st.selectbox("Role", [r.value for r in auth.Role])
        pw = st.text_input("Initial password", type="password")
        ok = st.form_submit_button("Add user")
    if ok:
        try:
            with session_scope() as s:
                auth.create_user(s, name, pw, role)
                queries.audit(s, st.session_state["user"]["username"], "user_add", detail={"username": name, "role": role})
        except auth.AuthError as exc:
            st.error(str(exc))
            return
        flash(f"User {name} ({role}) added.")
        st.rerun()


# ---------------------------------------------------------------------------------------
# Entry
# ---------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="PriorWatch", page_icon="🩻", layout="wide")
    try:
        ensure_db()
    except (SQLAlchemyError, OSError) as exc:
        db_error(exc)
        return
    try:
        user = st.session_state.get("user")
        if not user:
            login_page()
            return
        pages = PAGES_BY_ROLE.get(user["role"], [])
        if not pages:
            st.error(f"Your role ({user['role']}) has no pages. Ask an administrator.")
            return
        if st.session_state.get("page") not in pages:
            st.session_state["page"] = pages[0]
        st.session_state["nav"] = st.session_state["page"]
        with st.sidebar:
            st.markdown(f"**{user['username']}** · {user['role']}")
            st.radio("Go to", pages, key="nav", on_change=_nav_changed)
            if st.button("Log out"):
                logout()
                st.rerun()
        page = st.session_state["page"]
        {
            PAGE_WORKLIST: worklist_page,
            PAGE_REVIEW: review_page,
            PAGE_MONITORING: monitoring_page,
            PAGE_USERS: users_page,
        }[page]()
    except SQLAlchemyError as exc:
        db_error(exc)
