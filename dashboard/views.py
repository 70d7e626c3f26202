"""The dashboard's pages, drawn with Streamlit. Data access is in `dashboard.queries`.

Who is logged in lives in the database (`dashboard.security`): the HttpOnly cookie names a
`DashboardSession`, checked on every run, so a reload keeps the user, the page and the open
study, and the draft being typed is autosaved per user and restored.

Session state used across reruns:

- ``user``: ``{"username", "role"}`` and ``sid`` (the session's id) once logged in
- ``page``: the current page label (the sidebar radio, key ``nav``, follows it)
- ``review_item``: the worklist item open on the review page
- ``review_started``: ``{item_id: datetime}`` when each open review began (time on study)
- ``flash``: a one-shot message shown on the next page drawn

Keyboard shortcuts (also listed on the review page): Alt+A accept as is, Alt+E accept with
edits, Alt+N accept and open the next study, Alt+J reject, Alt+W back to the worklist,
Alt+T take over a study someone else is reading. In the viewer: mouse wheel zooms both
images, dragging pans both, double-click resets.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from typing import Any

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from dashboard import auth, images, queries, security
from dashboard.quarantine_view import quarantine_panel
from priorwatch.db import init_db, session_scope
from priorwatch.models import DashboardSession, Instance, Study, User, WorklistItem, utcnow
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
MANUAL = "manual"
SHORTCUTS = {
    "accept": "Alt+A",
    "accept_edit": "Alt+E",
    "accept_next": "Alt+N",
    "reject": "Alt+J",
    "back": "Alt+W",
    "take_over": "Alt+T",
}
AUTOSAVE_DEBOUNCE_MS = 800  # typing pauses this long before the draft is saved


def refresh_seconds() -> float | None:
    """How often the worklist refreshes itself (PRIORWATCH_DASHBOARD_REFRESH_S; 0 = never)."""
    try:
        v = float(os.environ.get("PRIORWATCH_DASHBOARD_REFRESH_S", "10"))
    except ValueError:
        v = 10.0
    return v if v > 0 else None


# A reading-room screen is often 1366 px wide: a narrower sidebar and slimmer margins leave the
# worklist's ten columns room to show whole. The tables' own CSV button is hidden: exports go
# through download buttons that write an audit row (see monitoring_view).
LAYOUT_CSS = """<style>
section[data-testid="stSidebar"]{width:200px !important;min-width:200px !important}
button[aria-label="Download as CSV"]{display:none !important}
.block-container, [data-testid="stMainBlockContainer"]{padding-left:1.2rem !important;padding-right:1.2rem !important;padding-top:2.2rem !important;max-width:none !important}
</style>"""


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


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


def sid() -> int | None:
    return st.session_state.get("sid")


def _address() -> str:
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001 - outside a browser session (tests)
        ip = None
    return ip if isinstance(ip, str) and ip else "local"


def _navigate(url: str) -> None:
    """Send the browser to `url` (a same-origin route that sets or clears the cookie)."""
    st.html(f"<script>window.location.replace({json.dumps(url)});</script>", unsafe_allow_javascript=True)
    st.caption(f"Continuing… if nothing happens, [click here]({url}).")


# ---------------------------------------------------------------------------------------
# Login and sessions
# ---------------------------------------------------------------------------------------
def login_page(reason: str | None = None) -> None:
    st.title("PriorWatch")
    st.caption("Longitudinal comparison drafts for radiologists. AI output is a draft; a human signs.")
    grant = st.session_state.get("grant")
    if grant:  # password accepted: the browser fetches its cookie, then reloads
        _navigate(f"/pw/auth/establish?grant={grant}")
        return
    if reason == security.END_IDLE:
        st.info(f"Your session ended after {get_settings().dashboard_idle_timeout_s / 60:.0f} minutes without activity. Log in again; your draft was kept.")
    elif reason == security.END_EXPIRED:
        st.info("Your session reached its maximum length. Log in again; your draft was kept.")
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
    err, grant = attempt_login(username, password, _address())
    if err:
        st.error(err)
        return
    st.session_state.pop("login_password", None)
    st.session_state["grant"] = grant
    st.rerun()


def attempt_login(username: str, password: str, address: str) -> tuple[str | None, str | None]:
    """(error, None) or (None, cookie grant). The throttling rule is in `dashboard.security`'s
    docstring: a real account's right password from a pair that has not failed always logs in,
    and every failure reads `security.LOGIN_REFUSED` after the same work, known name or not.
    Failures are audited under the account's name only if it exists (never a typed unknown name)."""
    name = username.strip()
    with session_scope() as s:
        known = s.exec(select(User.id).where(User.username == name)).first() is not None
        gate = security.login_gate(s, known, name, address)
        user = auth.authenticate(s, name, password)  # always: the same scrypt work whatever the gate says
        if user is not None and not gate.refused:
            security.record_success(s, gate)
            row, grant = security.create_session(s, user.username, address)
            queries.audit(s, user.username, "login", detail={"role": user.role, "session": row.id, "address": address})
            return None, grant
        who = name if known else "?"
        if gate.refused:
            detail: dict[str, Any] = {"address": address, "reason": "throttled", "password_ok": user is not None}
        else:
            detail = {"address": address, "reason": "bad_password" if known else "unknown_user"}
        locks = security.record_failure(s, gate) if user is None else []
        queries.audit(s, who, "login_failed", detail=detail)
        for scope, until in locks:
            queries.audit(s, who if scope == security.SCOPE_PAIR else "?", "login_lock",
                          detail={"scope": scope, "address": address, "until": f"{until:%Y-%m-%dT%H:%M:%S}"})
    return security.LOGIN_REFUSED, None


def restore_session() -> tuple[dict[str, Any] | None, str | None]:
    """The logged-in user from the session cookie (extending the idle timeout), else (None, why)."""
    try:
        cookie = st.context.cookies.get(security.COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no browser (AppTest)
        cookie = None
    if not isinstance(cookie, str):
        cookie = None
    cookie = cookie or st.session_state.get("pw_cookie")  # tests without a browser put it here
    with session_scope() as s:
        info, why = security.check_session(s, cookie, touch=True)
        if info is None:
            if why in (security.END_IDLE, security.END_EXPIRED):
                parsed = security.parse_cookie_value(get_settings(), cookie)
                row = s.get(DashboardSession, parsed[0]) if parsed else None
                if row is not None:
                    queries.release_all_claims(s, row.username)
                    queries.audit(s, row.username, "session_end", detail={"session": row.id, "reason": why})
            return None, why
        role = s.exec(select(User.role).where(User.username == info.username)).first()
    if role is None:
        return None, "bad"
    ss = st.session_state
    if ss.get("sid") != info.id:  # a new browser session (reload, new tab): land where they were
        ss["sid"] = info.id
        if info.page:
            ss["page"] = info.page
        if info.current_item_id is not None:
            ss["review_item"] = info.current_item_id
    return {"username": info.username, "role": role}, None


def remember_location() -> None:
    if sid() is None:
        return
    with session_scope() as s:
        security.set_location(s, sid(), st.session_state.get("page", ""),  # type: ignore[arg-type]
                              st.session_state.get("review_item") if st.session_state.get("page") == PAGE_REVIEW else None)


def logout() -> None:
    user = st.session_state.get("user")
    if user:
        try:
            with session_scope() as s:
                n = queries.release_all_claims(s, user["username"])
                if sid() is not None:
                    security.end_session(s, sid(), security.END_LOGOUT)  # type: ignore[arg-type]
                queries.audit(s, user["username"], "logout", detail={"session": sid(), "claims_released": n})
        except SQLAlchemyError:
            pass
    for k in list(st.session_state.keys()):
        del st.session_state[k]
    st.session_state["logged_out"] = True


def audit_page_view(page: str, user: str) -> None:
    """One audit row per visit of a page that shows patient lists or monitoring figures."""
    if st.session_state.get("audited_page") == page:
        return
    st.session_state["audited_page"] = page
    with session_scope() as s:
        queries.audit(s, user, f"{page.lower()}_view", detail={"session": sid()})


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


def _reader(r: dict[str, Any]) -> str:
    return f"{r['claimed_by']} since {r['claimed_at']:%H:%M}" if r.get("claimed_by") and r.get("claimed_at") else ""


def open_item(item_id: int) -> None:
    st.session_state["review_item"] = int(item_id)
    go(PAGE_REVIEW)


def worklist_page(user: dict[str, Any]) -> None:
    st.title("Worklist")
    audit_page_view(PAGE_WORKLIST, user["username"])
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
    table = [
        {
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
        for r in rows
    ]
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="wl_table",
        placeholder="—",
        on_select="rerun",
        selection_mode=["single-row", "single-cell"],  # a click anywhere on a row opens it
        column_config={
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
        },
    )
    ids = [r["item_id"] for r in rows]
    sel = getattr(event, "selection", None)
    picked = list(getattr(sel, "rows", []) or []) + [c[0] for c in (getattr(sel, "cells", []) or [])]
    if picked and 0 <= picked[0] < len(ids):
        st.session_state.pop("wl_table", None)
        open_item(ids[picked[0]])
        st.rerun(scope="app")
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


# ---------------------------------------------------------------------------------------
# Review
# ---------------------------------------------------------------------------------------
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


def _close_review(item_id: int, release: bool = True) -> None:
    user = st.session_state.get("user")
    if release and user:
        with session_scope() as s:
            queries.release_claim(s, item_id, user["username"])
    started = st.session_state.get("review_started", {})
    started.pop(item_id, None)
    for k in [k for k in st.session_state.keys() if isinstance(k, str) and (k.endswith(f"_{item_id}") or f"_{item_id}_" in k)]:
        del st.session_state[k]
    st.session_state.pop("review_item", None)


def review_page(user: dict[str, Any]) -> None:
    item_id = st.session_state.get("review_item")
    if item_id is None:
        st.title("Review")
        show_flash()
        st.info("No study is open. Choose one on the worklist (click its row).")
        if st.button("Go to the worklist"):
            go(PAGE_WORKLIST)
            st.rerun()
        return
    ttl = get_settings().dashboard_claim_ttl_s
    started = st.session_state.setdefault("review_started", {})
    with session_scope() as s:
        detail = queries.study_detail(s, item_id)
        claim = queries.claim(s, item_id, user["username"], ttl) if detail is not None and detail.is_open else None
        if detail is not None and item_id not in started:
            queries.open_review(s, item_id, user["username"], sid())
            started[item_id] = utcnow()
        if detail is not None:
            detail = queries.study_detail(s, item_id)
        signoff = queries.sign_off(s, detail.comparison.id) if detail is not None else None  # type: ignore[arg-type]
        priors = _patient_priors(s, detail.study) if detail is not None else []
    if detail is None:
        st.title("Review")
        st.error("This worklist item no longer exists. It may have been removed; go back to the worklist.")
        if st.button("Back to worklist"):
            _close_review(item_id, release=False)
            go(PAGE_WORKLIST)
            st.rerun()
        return

    study, comp = detail.study, detail.comparison
    st.title(f"{study.patient_name or 'Unnamed patient'} · {queries.format_age_sex(study.patient_birth_date, study.study_date, study.patient_sex)}")
    show_flash()
    st.caption(
        f"Patient ID {study.patient_id} · accession {study.accession or '—'} · {queries.study_label(study)}"
        + (f" · site {study.institution}" if study.institution else "")
    )
    b1, b2 = st.columns([1, 4])
    if b1.button("← Back to worklist", key="back", shortcut=SHORTCUTS["back"]):
        _close_review(item_id)
        go(PAGE_WORKLIST)
        st.rerun()
    mine = claim is not None and claim.mine
    if detail.is_open and not mine:
        holder = claim.holder if claim else None
        since = f" since {claim.since:%H:%M} UTC" if claim and claim.since else ""
        b2.warning(f"Being read by **{holder or 'someone else'}**{since}. You see it read-only.", icon=":material/lock:")
        if b2.button("Take over this study", key=f"take_{item_id}", shortcut=SHORTCUTS["take_over"],
                     help=f"Move the study to you; {holder or 'the other reader'} can no longer sign it."):
            with session_scope() as s:
                queries.claim(s, item_id, user["username"], ttl, take_over=True)
            st.rerun()
    elif mine:
        b2.caption(f"Claimed by you since {claim.since:%H:%M} UTC; others see it read-only.")  # type: ignore[union-attr]
    if detail.is_open and not mine:
        _watch_item(item_id)
    if not detail.is_open:
        last = detail.reviews[-1] if detail.reviews else None
        who = signoff.signer if signoff else (last.reviewer if last else None)
        when = signoff.signed_at if signoff else (last.finished_at if last else None)
        st.success(
            f"Signed: **{detail.item.status}**" + (f" by **{who}** at {when:%Y-%m-%d %H:%M:%S} UTC" if who and when else "")
            + ". The signed report is below the images.",
            icon=":material/verified:",
        )
    urgent = [f for f in detail.findings if f.urgent]
    if comp.urgent or urgent:
        st.error(
            "**URGENT** · "
            + (", ".join(f"{queries.finding_label(f)} — {f.change}" for f in urgent) or "flagged urgent by the model"),
            icon=":material/emergency:",
        )
    viewer_section(detail, priors)
    findings_section(detail)

    if not detail.is_open:
        last = detail.reviews[-1] if detail.reviews else None
        if last:
            st.text_area("Signed report", last.final_text, disabled=True, height=160, key=f"final_{item_id}")
        return
    _decision_form(item_id, detail, user["username"], read_only=not mine)


@st.fragment(run_every=2.0)
def _watch_item(item_id: int) -> None:
    """For a read-only viewer: redraw the page as soon as the reader signs (who, when)."""
    with session_scope() as s:
        item = s.get(WorklistItem, item_id)
        closed = item is not None and item.status not in queries.OPEN_STATUSES
    if closed:
        st.rerun(scope="app")


def _patient_priors(s: Any, study: Study) -> list[tuple[Study, Instance]]:
    """The patient's earlier studies that have an image, newest first."""
    q = select(Study).where(Study.patient_id == study.patient_id, Study.id != study.id)
    out: list[tuple[Study, Instance]] = []
    for p in s.exec(q).all():
        if study.study_date and p.study_date and p.study_date > study.study_date:
            continue
        inst = queries.frontal_instance(s, p.id)
        if inst is not None:
            out.append((p, inst))
    out.sort(key=lambda t: (t[0].study_date or datetime.min.date()), reverse=True)
    return out


def viewer_section(detail: queries.StudyDetail, priors: list[tuple[Study, Instance]]) -> None:
    comp, prior = detail.comparison, detail.prior
    if prior is not None:
        st.markdown(f"**Prior:** {queries.study_label(prior)} · interval {queries.format_interval(comp.interval_days)}")
    else:
        st.markdown(f"**No prior** for comparison{': ' + comp.no_prior_reason if comp.no_prior_reason else ''}.")
    st.caption(
        f"Draft by {comp.engine or 'engine'} {comp.engine_version} · model {comp.model or '—'} {comp.model_version}"
        + (" · fallback engine" if comp.fallback else "")
        + ("" if comp.structured else " · model output could not be parsed into findings")
        + " · AI output is a draft: you decide."
    )
    cur = detail.current_instance
    c1, c2, c3, c4 = st.columns([3.2, 1.3, 1.3, 2.2])
    preset = c1.radio("Window / level", [*images.PRESETS, MANUAL], horizontal=True, key="wl_preset",
                      format_func=str.capitalize)
    show_overlay = c2.toggle(
        "Difference overlay", key="overlay", disabled=not comp.overlay_path,
        help="The registered difference heat-map on the current image." if comp.overlay_path else "This result has no overlay.",
    )
    full = c3.toggle("Full resolution", key="full_res", help="Serve the images at their acquired size (slower).")
    prior_options = {p.id: inst for p, inst in priors}
    labels = {p.id: f"{p.study_date or 'date unknown'} · {p.modality} {p.description or p.body_part}" for p, _ in priors}
    default_prior = prior.id if prior is not None and prior.id in prior_options else (priors[0][0].id if priors else None)
    prior_pick = None
    if priors:
        key = f"prior_pick_{detail.item.id}"
        if st.session_state.get(key) not in prior_options:
            st.session_state[key] = default_prior
        prior_pick = c4.selectbox(f"Prior ({plural(len(priors), 'study', 'studies')} of this patient)",
                                  list(prior_options), format_func=lambda i: labels[i], key=key)
    center = width = None
    if preset == MANUAL:
        if cur is None:
            st.warning("No current image to window.")
        else:
            try:
                img = images.load_cached(cur.path)
                lo, hi = images.window_range(img)
                d_lo, d_hi = images.window_bounds(img, "default")
            except images.ImageUnavailable as exc:
                st.warning(f"Current image unavailable: {exc}")
            else:
                m1, m2 = st.columns(2)
                center = m1.slider("Window center", float(lo), float(hi), float((d_lo + d_hi) / 2), key="wl_center")
                width = m2.slider("Window width", 1.0, float(hi - lo) * 2, float(max(d_hi - d_lo, 1.0)), key="wl_width")
    wl_preset = preset if preset != MANUAL else "default"
    cur_url = images.image_url(cur.id, preset=wl_preset, center=center, width=width, full=full,  # type: ignore[arg-type]
                               overlay=comp.id if show_overlay and comp.overlay_path else None) if cur else None
    pr_inst = prior_options.get(prior_pick) if prior_pick is not None else None
    pr_url = images.image_url(pr_inst.id, preset=wl_preset, center=center, width=width, full=full) if pr_inst else None  # type: ignore[arg-type]
    markers = {}
    for name, inst in (("cur", cur), ("pr", pr_inst)):
        try:
            markers[name] = images.load_cached(inst.path).markers if inst else ("", "")
        except images.ImageUnavailable as exc:
            markers[name] = ("", "")
            st.warning(f"{'Current' if name == 'cur' else 'Prior'} image unavailable: {exc}", icon=":material/broken_image:")
    cur_cap = f"Current · {detail.study.study_date or ''} {cur.view_position if cur else ''}"
    pr_study = next((p for p, _ in priors if p.id == prior_pick), None)
    pr_cap = f"Prior · {pr_study.study_date or ''} {pr_inst.view_position if pr_inst else ''}" if pr_study else "No prior study"
    started = st.session_state.get("review_started", {}).get(detail.item.id)
    started_ms = int(started.replace(tzinfo=timezone.utc).timestamp() * 1000) if started else None
    st.iframe(viewer_html(cur_url, pr_url, cur_cap, pr_cap, markers["cur"], markers["pr"], started_ms), height=560)
    st.caption("Viewer: wheel or +/− zooms both images, drag pans both, double-click or Reset fits. "
               "Window/level is applied on the server to the full-depth pixel data.")


def viewer_html(cur_url: str | None, pr_url: str | None, cur_cap: str, pr_cap: str,
                cur_markers: tuple[str, str], pr_markers: tuple[str, str], started_ms: int | None = None) -> str:
    """Two panes with zoom and pan kept in step (pure HTML/JS, images from the session route)."""
    def pane(idx: int, url: str | None, cap: str, mk: tuple[str, str]) -> str:
        img = (f'<img id="im{idx}" src="{html.escape(url)}" draggable="false" alt="{html.escape(cap)}">' if url
               else '<div class="none">No image</div>')
        return (f'<div class="pane" id="p{idx}"><div class="cap">{html.escape(cap)}</div>{img}'
                f'<div class="mk l">{html.escape(mk[0])}</div><div class="mk r">{html.escape(mk[1])}</div></div>')

    return """<!doctype html><html><head><style>
body{margin:0;font-family:sans-serif;background:#fff}
.bar{display:flex;gap:6px;align-items:center;margin:0 0 4px 0;font-size:13px;color:#333}
.bar button{font-size:13px;padding:2px 10px;border:1px solid #bbb;border-radius:6px;background:#f6f6f6;cursor:pointer}
.wrap{display:flex;gap:8px}
.pane{position:relative;flex:1;height:500px;background:#000;overflow:hidden;cursor:grab;border-radius:4px}
.pane img{position:absolute;left:0;top:0;transform-origin:0 0;user-select:none;max-width:none}
.cap{position:absolute;left:8px;top:6px;color:#ff0;font-size:13px;z-index:2;text-shadow:0 0 3px #000}
.mk{position:absolute;top:48%;color:#fff;font:bold 22px sans-serif;z-index:2;text-shadow:0 0 4px #000}
.mk.l{left:8px}.mk.r{right:8px}
.none{color:#aaa;padding:40px;text-align:center}
</style></head><body>
<div class="bar"><button id="zin" title="Zoom in">+</button><button id="zout" title="Zoom out">−</button>
<button id="zreset" title="Fit (double-click)">Reset</button><span id="zlabel">100 %</span>
<span style="margin-left:auto">time on study <b id="tos">—</b></span></div>
<div class="wrap">""" + pane(0, cur_url, cur_cap, cur_markers) + pane(1, pr_url, pr_cap, pr_markers) + """</div>
<script>
const panes=[...document.querySelectorAll('.pane')];
let z=1,x=0,y=0,drag=null;const K=""" + json.dumps("pw_view_zoom:" + (cur_url or "").split("?")[0]) + """;  // per image, kept across W/L changes
try{const v=JSON.parse(sessionStorage.getItem(K));if(v){[z,x,y]=v;}}catch(e){}
function fit(im,p){if(!im||!im.naturalWidth)return 1;return Math.min(p.clientWidth/im.naturalWidth,p.clientHeight/im.naturalHeight);}
function apply(){panes.forEach(p=>{const im=p.querySelector('img');if(!im)return;const f=fit(im,p);
 const w=im.naturalWidth*f*z,h=im.naturalHeight*f*z;
 const ox=(p.clientWidth-w)/2+x,oy=(p.clientHeight-h)/2+y;
 im.style.width=(im.naturalWidth*f)+'px';im.style.transform=`translate(${ox}px,${oy}px) scale(${z})`;});
 document.getElementById('zlabel').textContent=Math.round(z*100)+' %';
 try{sessionStorage.setItem(K,JSON.stringify([z,x,y]));}catch(e){}
 document.body.dataset.zoom=z.toFixed(3);document.body.dataset.pan=x.toFixed(0)+','+y.toFixed(0);}
function zoomBy(k){z=Math.min(16,Math.max(1,z*k));if(z===1){x=0;y=0;}apply();}
panes.forEach(p=>{
 p.addEventListener('wheel',e=>{e.preventDefault();zoomBy(e.deltaY<0?1.15:1/1.15);},{passive:false});
 p.addEventListener('mousedown',e=>{drag=[e.clientX-x,e.clientY-y];p.style.cursor='grabbing';});
 p.addEventListener('dblclick',()=>{z=1;x=0;y=0;apply();});
 const im=p.querySelector('img');if(im){im.addEventListener('load',apply);}});
window.addEventListener('mousemove',e=>{if(!drag)return;x=e.clientX-drag[0];y=e.clientY-drag[1];apply();});
window.addEventListener('mouseup',()=>{drag=null;panes.forEach(p=>p.style.cursor='grab');});
document.getElementById('zin').onclick=()=>zoomBy(1.5);
document.getElementById('zout').onclick=()=>zoomBy(1/1.5);
document.getElementById('zreset').onclick=()=>{z=1;x=0;y=0;apply();};
window.addEventListener('resize',apply);apply();
const t0=""" + json.dumps(started_ms) + """;
function tick(){if(t0===null)return;const s=Math.max(0,Math.floor((Date.now()-t0)/1000));
 document.getElementById('tos').textContent=Math.floor(s/60)+':'+String(s%60).padStart(2,'0');}
tick();setInterval(tick,1000);
</script></body></html>"""


def findings_section(detail: queries.StudyDetail) -> None:
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


def _save_draft_cb(item_id: int, username: str, key: str) -> None:
    try:
        with session_scope() as s:
            queries.save_draft(s, username, item_id, st.session_state.get(key, ""))
    except (SQLAlchemyError, queries.ReviewError):
        pass  # the JS autosave and the next commit try again; the text stays in the box


def _regenerate_cb(item_id: int, detail: queries.StudyDetail, keys: dict[str, Any], username: str) -> None:
    wrong, relabel, missed = _corrections(detail, keys)
    labels = queries.apply_corrections(detail.findings, wrong, relabel, missed)
    st.session_state[keys["draft"]] = queries.structured_text(labels, detail.comparison, detail.prior)
    _save_draft_cb(item_id, username, keys["draft"])


def autosave_js(item_id: int) -> str:
    """Saves the draft text area while the user types (a reload then restores it)."""
    return """<script>
(function(){const doc=window.parent.document;let t=null;
function hook(){const ta=doc.querySelector('textarea[aria-label="Draft (editable)"]');
 if(!ta){setTimeout(hook,300);return;}
 if(ta.dataset.pwAutosave)return;ta.dataset.pwAutosave='1';
 ta.addEventListener('input',()=>{clearTimeout(t);t=setTimeout(()=>{
  fetch('/pw/api/draft/%d',{method:'POST',credentials:'same-origin',headers:{'Content-Type':'application/json'},
   body:JSON.stringify({text:ta.value})}).then(r=>{window.parent.document.body.dataset.pwSaved=r.status;});},%d);});}
hook();})();
</script>""" % (item_id, AUTOSAVE_DEBOUNCE_MS)


def _next_item(username: str, after: int) -> int | None:
    with session_scope() as s:
        for r in queries.worklist(s):
            if r["item_id"] != after and (not r.get("claimed_by") or r["claimed_by"] == username):
                return int(r["item_id"])
    return None


def _decision_form(item_id: int, detail: queries.StudyDetail, username: str, read_only: bool = False) -> None:
    comp = detail.comparison
    keys = _state_keys(item_id, detail)
    st.subheader("Draft report")
    if keys["draft"] not in st.session_state and not read_only:
        with session_scope() as s:
            saved = queries.load_draft(s, username, item_id)
        st.session_state[keys["draft"]] = saved.text if saved is not None else comp.draft_text
        if saved is not None and saved.text != comp.draft_text:
            st.info(f"Your unsaved draft from {saved.updated_at:%H:%M:%S} UTC was restored.", icon=":material/restore:")
    if read_only:
        st.text_area("Draft (read-only)", value=comp.draft_text, height=180, disabled=True, key=f"ro_{item_id}")
        return
    text = st.text_area(
        "Draft (editable)", height=180, key=keys["draft"], on_change=_save_draft_cb,
        args=(item_id, username, keys["draft"]),
        help="Your edits are saved as you type and restored after a reload. Ctrl+Enter applies the edit.",
    )
    st.html(autosave_js(item_id), unsafe_allow_javascript=True)

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
        st.button("Rewrite the draft from the corrected findings", key=f"regen_{item_id}",
                  on_click=_regenerate_cb, args=(item_id, detail, keys, username),
                  help="Replaces the text above with sentences generated from the findings as corrected.")

    wrong, relabel, missed = _corrections(detail, keys)
    labels_changed = bool(wrong or relabel or missed)
    text_changed = text != comp.draft_text
    if labels_changed and not text_changed:
        st.warning("The findings were corrected but the text still says what the AI wrote. "
                   "Signing rewrites the text from the corrected findings; or use **Rewrite the draft** to see it first.")
    corrections = {
        "wrong": sorted(wrong),
        "relabelled": {str(k): v for k, v in relabel.items()},
        "missed": missed,
    }

    st.subheader("Decision")
    a1, a2, a3 = st.columns(3)
    accept_plain = a1.button("Accept as is", type="primary", key=f"accept_{item_id}", shortcut=SHORTCUTS["accept"])
    accept_edit = a2.button("Accept with edits", key=f"accept_edit_{item_id}", shortcut=SHORTCUTS["accept_edit"])
    accept_next = a3.button("Accept and next", key=f"accept_next_{item_id}", shortcut=SHORTCUTS["accept_next"],
                            help="Sign (as is, or with your edits) and open the next study on the worklist.")
    r1, r2 = st.columns([3, 1], vertical_alignment="bottom")
    reason = r1.text_input("Reason for rejection", key=keys["reason"], placeholder="e.g. wrong prior, finding not present, poor image quality")
    reject = r2.button("Reject", key=f"reject_{item_id}", shortcut=SHORTCUTS["reject"])
    with st.expander("Keyboard shortcuts"):
        st.markdown(
            f"- **{SHORTCUTS['accept']}** accept as is · **{SHORTCUTS['accept_edit']}** accept with edits · "
            f"**{SHORTCUTS['accept_next']}** accept and open the next study\n"
            f"- **{SHORTCUTS['reject']}** reject (give a reason first) · **{SHORTCUTS['back']}** back to the worklist · "
            f"**{SHORTCUTS['take_over']}** take over a study someone else is reading\n"
            "- Viewer: mouse wheel zooms both images, drag pans both, double-click resets."
        )

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
    elif accept_next:
        action = "edited" if (text_changed or labels_changed) else "accepted"
    elif reject:
        if not reason.strip():
            st.error("Give a reason for the rejection.")
        else:
            action = "rejected"
    if action is None:
        return
    body = text
    final_labels = queries.apply_corrections(detail.findings, wrong, relabel, missed)
    if labels_changed and not text_changed and action != "rejected":
        body = queries.structured_text(final_labels, comp, detail.prior)
    try:
        with session_scope() as s:
            review = queries.record_review(
                s,
                item_id,
                username,
                action,
                body if action != "accepted" else comp.draft_text,
                final_labels,
                reason=reason if action == "rejected" else None,
                started_at=st.session_state.get("review_started", {}).get(item_id),
                corrections=corrections if labels_changed else None,
                session_id=sid(),
            )
            review_id = review.id
    except queries.AlreadySigned as exc:
        st.session_state["flash"] = ("error", str(exc))
        st.rerun()
    except queries.ReviewError as exc:
        st.error(str(exc))
        return
    msg = f"Signed ({action}) {detail.study.accession or detail.study.study_uid} as {username}. Review #{review_id}."
    _close_review(item_id, release=False)
    nxt = _next_item(username, item_id) if accept_next else None
    flash(msg + (" Next study opened." if nxt else ""))
    if nxt is not None:
        open_item(nxt)
    else:
        go(PAGE_WORKLIST)
    st.rerun()


# ---------------------------------------------------------------------------------------
# Monitoring and users
# ---------------------------------------------------------------------------------------
def monitoring_page(user: dict[str, Any]) -> None:
    audit_page_view(PAGE_MONITORING, user["username"])
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


def users_page(user: dict[str, Any]) -> None:
    st.title("Users")
    show_flash()
    with session_scope() as s:
        users = s.exec(select(User).order_by(User.username)).all()
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
                queries.audit(s, user["username"], "user_add", detail={"username": name, "role": role, "session": sid()})
        except auth.AuthError as exc:
            st.error(str(exc))
            return
        flash(f"User {name} ({role}) added.")
        st.rerun()
    quarantine_panel(user)


# ---------------------------------------------------------------------------------------
# Entry
# ---------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="PriorWatch", page_icon="🩻", layout="wide")
    st.html(LAYOUT_CSS)
    try:
        ensure_db()
    except (SQLAlchemyError, OSError) as exc:
        db_error(exc)
        return
    try:
        if st.session_state.pop("logged_out", False):
            st.title("PriorWatch")
            st.info("You are logged out. Your claims on studies were released.")
            _navigate("/pw/auth/logout")  # clears the cookie; the session row is already ended
            return
        user, why = restore_session()
        if not user:
            for k in ("user", "sid"):
                st.session_state.pop(k, None)
            login_page(why if why not in ("missing", "bad") else None)
            return
        st.session_state["user"] = user
        pages = PAGES_BY_ROLE.get(user["role"], [])
        deep = st.query_params.get("item")  # a link to one study (from a notice or another tab)
        if deep is not None:
            del st.query_params["item"]
            if deep.isdigit() and PAGE_REVIEW in pages:
                open_item(int(deep))
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
        remember_location()
        {
            PAGE_WORKLIST: worklist_page,
            PAGE_REVIEW: review_page,
            PAGE_MONITORING: monitoring_page,
            PAGE_USERS: users_page,
        }[page](user)
    except SQLAlchemyError as exc:
        db_error(exc)
