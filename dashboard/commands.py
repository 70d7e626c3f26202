"""What the dashboard decides and writes, with no Streamlit in sight.

The pages (`dashboard.views`, `dashboard.worklist_view`, `dashboard.review_view`) draw widgets
and call these; each command opens its own transaction, so it can be tested without a browser
(`tests/dashboard/test_commands.py`). The accept / edit / reject rule, login, sessions, claims,
drafts, sign-off and user management live here; the SQL lives in `dashboard.queries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from dashboard import auth, queries, security, signoff
from priorwatch import quarantine
from priorwatch.db import session_scope
from priorwatch.models import DashboardSession, Instance, SignOff, Study, User, WorklistItem, utcnow
from priorwatch.settings import get_settings

# The decision buttons of the review page.
ACCEPT, ACCEPT_EDIT, ACCEPT_NEXT, REJECT = "accept", "accept_edit", "accept_next", "reject"


# ---------------------------------------------------------------------------------------
# Login and sessions
# ---------------------------------------------------------------------------------------
def user_count() -> int:
    with session_scope() as s:
        return auth.user_count(s)


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


@dataclass(frozen=True)
class SessionUser:
    """The logged-in user a cookie names, and where their session last was."""

    username: str
    role: str
    session_id: int
    page: str | None
    current_item_id: int | None


def session_user(cookie: str | None) -> tuple[SessionUser | None, str | None]:
    """The cookie's live session (extending its idle timeout), else (None, why). A session that
    ended by time releases its claims and is audited once, here."""
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
    return SessionUser(info.username, role, info.id, info.page, info.current_item_id), None


def remember_location(session_id: int, page: str, item_id: int | None) -> None:
    """Where the user is, so a reload lands there."""
    with session_scope() as s:
        security.set_location(s, session_id, page, item_id)


def logout(username: str, session_id: int | None) -> None:
    """End the session and release the user's claims; a database error leaves it to expire."""
    try:
        with session_scope() as s:
            n = queries.release_all_claims(s, username)
            if session_id is not None:
                security.end_session(s, session_id, security.END_LOGOUT)
            queries.audit(s, username, "logout", detail={"session": session_id, "claims_released": n})
    except SQLAlchemyError:
        pass


def audit_page_view(username: str, page: str, session_id: int | None) -> None:
    with session_scope() as s:
        queries.audit(s, username, f"{page.lower()}_view", detail={"session": session_id})


# ---------------------------------------------------------------------------------------
# Worklist
# ---------------------------------------------------------------------------------------
def filter_options() -> dict[str, list[str]]:
    with session_scope() as s:
        return queries.filter_options(s)


def worklist(filters: queries.WorklistFilters | None = None) -> list[dict[str, Any]]:
    with session_scope() as s:
        return queries.worklist(s, filters)


def next_item(username: str, after: int) -> int | None:
    """The next study for "Accept and next": the first on the worklist nobody else reads."""
    for r in worklist():
        if r["item_id"] != after and (not r.get("claimed_by") or r["claimed_by"] == username):
            return int(r["item_id"])
    return None


# ---------------------------------------------------------------------------------------
# Opening a study
# ---------------------------------------------------------------------------------------
@dataclass
class OpenedStudy:
    """What the review page draws: the detail, the caller's claim, the sign-off, the priors."""

    detail: queries.StudyDetail
    claim: queries.ClaimResult | None
    signoff: SignOff | None
    priors: list[tuple[Study, Instance]]
    first_view: bool  # this open was audited now (the review's time on study starts)


def open_study(item_id: int, username: str, session_id: int | None, *, already_open: bool) -> OpenedStudy | None:
    """Claim an open item for `username` (or see who holds it) and audit the first view;
    None when the item no longer exists."""
    ttl = get_settings().dashboard_claim_ttl_s
    with session_scope() as s:
        detail = queries.study_detail(s, item_id)
        if detail is None:
            return None
        claim = queries.claim(s, item_id, username, ttl) if detail.is_open else None
        if not already_open:
            queries.open_review(s, item_id, username, session_id)
        detail = queries.study_detail(s, item_id)
        assert detail is not None
        signed = queries.sign_off(s, detail.comparison.id)  # type: ignore[arg-type]
        priors = queries.patient_priors(s, detail.study)
    return OpenedStudy(detail, claim, signed, priors, first_view=not already_open)


def take_over(item_id: int, username: str) -> None:
    with session_scope() as s:
        queries.claim(s, item_id, username, get_settings().dashboard_claim_ttl_s, take_over=True)


def release(item_id: int, username: str) -> None:
    with session_scope() as s:
        queries.release_claim(s, item_id, username)


def item_closed(item_id: int) -> bool:
    """The item was signed (or removed): a read-only viewer redraws."""
    with session_scope() as s:
        item = s.get(WorklistItem, item_id)
        return item is not None and item.status not in queries.OPEN_STATUSES


# ---------------------------------------------------------------------------------------
# Drafts and the decision
# ---------------------------------------------------------------------------------------
def load_draft(username: str, item_id: int) -> tuple[str, datetime] | None:
    """The user's autosaved text and when it was saved, if any."""
    with session_scope() as s:
        saved = queries.load_draft(s, username, item_id)
        return (saved.text, saved.updated_at) if saved is not None else None


def save_draft(username: str, item_id: int, text: str) -> bool:
    """Autosave; False when it could not be saved (the JS autosave and the next commit retry)."""
    try:
        with session_scope() as s:
            queries.save_draft(s, username, item_id, text)
    except (SQLAlchemyError, queries.ReviewError):
        return False
    return True


@dataclass(frozen=True)
class Corrections:
    """The reader's finding corrections: ids marked wrong, per-finding fixes, missed findings."""

    wrong: frozenset[int] = frozenset()
    relabel: dict[int, dict[str, Any]] | None = None
    missed: tuple[dict[str, Any], ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.wrong or self.relabel or self.missed)

    def labels(self, detail: queries.StudyDetail) -> list[dict[str, Any]]:
        return signoff.apply_corrections(detail.findings, set(self.wrong), self.relabel or {}, list(self.missed))

    def audit_detail(self) -> dict[str, Any]:
        return {
            "wrong": sorted(self.wrong),
            "relabelled": {str(k): v for k, v in (self.relabel or {}).items()},
            "missed": list(self.missed),
        }


def rewritten_text(detail: queries.StudyDetail, corrections: Corrections) -> str:
    """The report text regenerated from the corrected findings."""
    return signoff.structured_text(corrections.labels(detail), detail.comparison, detail.prior)


def choose_action(button: str, *, text_changed: bool, labels_changed: bool, reason: str) -> tuple[str | None, str | None]:
    """The accept / edit / reject rule: (review action, None) or (None, what to tell the reader).

    "Accept as is" refuses changes, "Accept with edits" needs some, "Accept and next" takes
    either, and a rejection needs a reason."""
    edited = text_changed or labels_changed
    if button == ACCEPT:
        if edited:
            return None, "You changed the draft or the findings. Use **Accept with edits** to keep your changes."
        return "accepted", None
    if button == ACCEPT_EDIT:
        if not edited:
            return None, "Nothing was edited. Use **Accept as is**, or edit the draft or the findings first."
        return "edited", None
    if button == ACCEPT_NEXT:
        return ("edited" if edited else "accepted"), None
    if button == REJECT:
        if not reason.strip():
            return None, "Give a reason for the rejection."
        return "rejected", None
    raise ValueError(f"unknown decision button {button!r}")


def sign(item_id: int, detail: queries.StudyDetail, username: str, action: str, text: str,
         corrections: Corrections, *, reason: str = "", started_at: datetime | None = None,
         session_id: int | None = None) -> int:
    """Record the decision; returns the review's id. Corrected findings with an untouched text
    sign the text rewritten from them; "accepted" signs the AI draft itself. Raises
    `signoff.AlreadySigned` (someone else won) or `queries.ReviewError` (bad input)."""
    comp = detail.comparison
    final_labels = corrections.labels(detail)
    text_changed = text != comp.draft_text
    body = text
    if corrections.any and not text_changed and action != "rejected":
        body = signoff.structured_text(final_labels, comp, detail.prior)
    with session_scope() as s:
        review = signoff.record_review(
            s, item_id, username, action,
            body if action != "accepted" else comp.draft_text,
            final_labels,
            reason=reason if action == "rejected" else None,
            started_at=started_at,
            corrections=corrections.audit_detail() if corrections.any else None,
            session_id=session_id,
        )
        return int(review.id)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------
def users() -> list[dict[str, str]]:
    """The accounts, for the users page (no password hashes)."""
    with session_scope() as s:
        return [{"Username": u.username, "Role": u.role, "Created (UTC)": u.created_at.strftime("%Y-%m-%d %H:%M")}
                for u in s.exec(select(User).order_by(User.username)).all()]


def add_user(actor: str, name: str, password: str, role: str, session_id: int | None) -> None:
    """Create an account (audited); raises `auth.AuthError` with what is wrong."""
    with session_scope() as s:
        auth.create_user(s, name, password, role)
        queries.audit(s, actor, "user_add", detail={"username": name, "role": role, "session": session_id})


def quarantine_items() -> list[quarantine.Quarantined]:
    """The node's open quarantine rows (`priorwatch.quarantine`), for the admin's panel."""
    with session_scope() as s:
        return list(quarantine.open_items(s))


def resolve_quarantine(item_id: int, username: str) -> None:
    """Mark one quarantined instance dealt with (audited by `priorwatch.quarantine`)."""
    with session_scope() as s:
        quarantine.resolve(s, item_id, username)


def now() -> datetime:
    """Naive UTC, as the database keeps time (when a review starts)."""
    return utcnow()
