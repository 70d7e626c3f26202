"""The dashboard's entry and its small pages: login, navigation, monitoring and users.

The pages draw widgets and call `dashboard.commands`, which decides and writes (the SQL is in
`dashboard.queries`); no page reads the database itself. The worklist is
`dashboard.worklist_view`, the review page `dashboard.review_view`, shared plumbing
`dashboard.ui`, and the HTML/JS/CSS files `dashboard/static/`.

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

from typing import Any

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard import auth, commands, security
from dashboard.commands import attempt_login  # noqa: F401 - tests/dashboard/test_login_throttle.py imports it from here
from dashboard.quarantine_view import quarantine_panel
from dashboard.review_view import review_page
from dashboard.ui import (
    PAGE_MONITORING,
    PAGE_REVIEW,
    PAGE_USERS,
    PAGE_WORKLIST,
    audit_page_view,
    db_error,
    flash,
    navigate,
    open_item,
    show_flash,
    sid,
    static,
)
from dashboard.worklist_view import worklist_page
from priorwatch.db import init_db
from priorwatch.settings import get_settings

PAGES_BY_ROLE: dict[str, list[str]] = {
    auth.Role.radiologist: [PAGE_WORKLIST, PAGE_REVIEW],
    auth.Role.qa: [PAGE_MONITORING],
    auth.Role.admin: [PAGE_WORKLIST, PAGE_REVIEW, PAGE_MONITORING, PAGE_USERS],
}
_READY: set[str] = set()


def ensure_db() -> None:
    """Create tables once per database URL; raises if the database is unreachable."""
    url = get_settings().resolved_database_url
    if url not in _READY:
        init_db(get_settings())
        _READY.add(url)


def _nav_changed() -> None:
    st.session_state["page"] = st.session_state["nav"]


def _address() -> str:
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001 - outside a browser session (tests)
        ip = None
    return ip if isinstance(ip, str) and ip else "local"


# ---------------------------------------------------------------------------------------
# Login and sessions
# ---------------------------------------------------------------------------------------
def login_page(reason: str | None = None) -> None:
    st.title("PriorWatch")
    st.caption("Longitudinal comparison drafts for radiologists. AI output is a draft; a human signs.")
    grant = st.session_state.get("grant")
    if grant:  # password accepted: the browser fetches its cookie, then reloads
        navigate(f"/pw/auth/establish?grant={grant}")
        return
    if reason == security.END_IDLE:
        st.info(f"Your session ended after {get_settings().dashboard_idle_timeout_s / 60:.0f} minutes without activity. Log in again; your draft was kept.")
    elif reason == security.END_EXPIRED:
        st.info("Your session reached its maximum length. Log in again; your draft was kept.")
    if commands.user_count() == 0:
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
    err, grant = commands.attempt_login(username, password, _address())
    if err:
        st.error(err)
        return
    st.session_state.pop("login_password", None)
    st.session_state["grant"] = grant
    st.rerun()


def restore_session() -> tuple[dict[str, Any] | None, str | None]:
    """The logged-in user from the session cookie (extending the idle timeout), else (None, why)."""
    try:
        cookie = st.context.cookies.get(security.COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no browser (AppTest)
        cookie = None
    if not isinstance(cookie, str):
        cookie = None
    cookie = cookie or st.session_state.get("pw_cookie")  # tests without a browser put it here
    info, why = commands.session_user(cookie)
    if info is None:
        return None, why
    ss = st.session_state
    if ss.get("sid") != info.session_id:  # a new browser session (reload, new tab): land where they were
        ss["sid"] = info.session_id
        if info.page:
            ss["page"] = info.page
        if info.current_item_id is not None:
            ss["review_item"] = info.current_item_id
    return {"username": info.username, "role": info.role}, None


def remember_location() -> None:
    if sid() is None:
        return
    page = st.session_state.get("page", "")
    commands.remember_location(sid(), page, st.session_state.get("review_item") if page == PAGE_REVIEW else None)  # type: ignore[arg-type]


def logout() -> None:
    user = st.session_state.get("user")
    if user:
        commands.logout(user["username"], sid())
    for k in list(st.session_state.keys()):
        del st.session_state[k]
    st.session_state["logged_out"] = True


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
    st.dataframe(commands.users(), hide_index=True)
    with st.form("add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        name = st.text_input("New username")
        role = st.selectbox("Role", [r.value for r in auth.Role])
        pw = st.text_input("Initial password", type="password")
        ok = st.form_submit_button("Add user")
    if ok:
        try:
            commands.add_user(user["username"], name, pw, role, sid())
        except auth.AuthError as exc:
            st.error(str(exc))
            return
        flash(f"User {name} ({role}) added.")
        st.rerun()
    quarantine_panel(user)


# ---------------------------------------------------------------------------------------
# Entry
# ---------------------------------------------------------------------------------------
def _sidebar_and_page(user: dict[str, Any]) -> None:
    """Role-based navigation (a deep link `?item=` opens one study), then the page."""
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


def main() -> None:
    st.set_page_config(page_title="PriorWatch", page_icon="🩻", layout="wide")
    # A reading-room screen is often 1366 px wide: a narrower sidebar and slimmer margins leave the
    # worklist's ten columns room to show whole. The tables' own CSV button is hidden: exports go
    # through download buttons that write an audit row (see monitoring_view).
    st.html("<style>\n" + static("layout.css") + "\n</style>")
    try:
        ensure_db()
    except (SQLAlchemyError, OSError) as exc:
        db_error(exc)
        return
    try:
        if st.session_state.pop("logged_out", False):
            st.title("PriorWatch")
            st.info("You are logged out. Your claims on studies were released.")
            navigate("/pw/auth/logout")  # clears the cookie; the session row is already ended
            return
        user, why = restore_session()
        if not user:
            for k in ("user", "sid"):
                st.session_state.pop(k, None)
            login_page(why if why not in ("missing", "bad") else None)
            return
        st.session_state["user"] = user
        _sidebar_and_page(user)
    except SQLAlchemyError as exc:
        db_error(exc)
