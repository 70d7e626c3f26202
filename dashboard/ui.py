"""Page plumbing shared by the dashboard's pages: page names, one-shot messages, navigation,
the database-down message and the static HTML/JS/CSS files (read once per process).

Session state used across reruns is listed in `dashboard.views`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import streamlit as st

from dashboard import commands

PAGE_WORKLIST = "Worklist"
PAGE_REVIEW = "Review"
PAGE_MONITORING = "Monitoring"
PAGE_USERS = "Users"
STATUS_LABELS = {
    "pending": "pending",
    "in_review": "in review",
    "accepted": "accepted",
    "edited": "edited",
    "rejected": "rejected",
}
STATIC_DIR = Path(__file__).resolve().parent / "static"


@lru_cache(maxsize=None)
def static(name: str) -> str:
    """A file of `dashboard/static/` (HTML, JS, CSS kept out of Python strings), read once."""
    return (STATIC_DIR / name).read_text(encoding="utf-8").removesuffix("\n")


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


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


def sid() -> int | None:
    return st.session_state.get("sid")


def open_item(item_id: int) -> None:
    st.session_state["review_item"] = int(item_id)
    go(PAGE_REVIEW)


def navigate(url: str) -> None:
    """Send the browser to `url` (a same-origin route that sets or clears the cookie)."""
    st.html(f"<script>window.location.replace({json.dumps(url)});</script>", unsafe_allow_javascript=True)
    st.caption(f"Continuing… if nothing happens, [click here]({url}).")


def audit_page_view(page: str, user: str) -> None:
    """One audit row per visit of a page that shows patient lists or monitoring figures."""
    if st.session_state.get("audited_page") == page:
        return
    st.session_state["audited_page"] = page
    commands.audit_page_view(user, page, sid())
