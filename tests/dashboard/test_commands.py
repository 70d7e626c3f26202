"""The dashboard's command layer without a browser: the accept/edit/reject rule, signing with
corrections, claims, drafts, login and users (`dashboard.commands`, issue 31)."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from dashboard import auth, commands, queries, signoff
from priorwatch.db import session_scope
from priorwatch.models import AuditLog, Review, WorklistItem
from tests.dashboard.conftest import PASSWORD


@pytest.mark.parametrize(
    ("button", "text_changed", "labels_changed", "reason", "action"),
    [
        (commands.ACCEPT, False, False, "", "accepted"),
        (commands.ACCEPT_EDIT, True, False, "", "edited"),
        (commands.ACCEPT_EDIT, False, True, "", "edited"),
        (commands.ACCEPT_NEXT, False, False, "", "accepted"),
        (commands.ACCEPT_NEXT, True, True, "", "edited"),
        (commands.REJECT, True, False, "wrong prior", "rejected"),
    ],
)
def test_the_decision_rule_allows(button: str, text_changed: bool, labels_changed: bool, reason: str,
                                  action: str) -> None:
    assert commands.choose_action(button, text_changed=text_changed, labels_changed=labels_changed,
                                  reason=reason) == (action, None)


@pytest.mark.parametrize(
    ("button", "text_changed", "labels_changed", "reason", "refused"),
    [
        (commands.ACCEPT, True, False, "", "Accept with edits"),
        (commands.ACCEPT, False, True, "", "Accept with edits"),
        (commands.ACCEPT_EDIT, False, False, "", "Nothing was edited"),
        (commands.REJECT, False, False, "  ", "Give a reason"),
    ],
)
def test_the_decision_rule_refuses_with_a_reason(button: str, text_changed: bool, labels_changed: bool, reason: str,
                                                 refused: str) -> None:
    got, why = commands.choose_action(button, text_changed=text_changed, labels_changed=labels_changed, reason=reason)
    assert got is None
    assert refused in str(why)


def test_an_unknown_button_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown decision button"):
        commands.choose_action("sign", text_changed=False, labels_changed=False, reason="")


def _detail(item_id: int) -> queries.StudyDetail:
    with session_scope() as s:
        detail = queries.study_detail(s, item_id)
    assert detail is not None
    return detail


def test_corrected_findings_with_the_text_untouched_sign_the_rewritten_text(seeded) -> None:
    detail = _detail(seeded.urgent_item)
    eff = next(f for f in detail.findings if f.finding == "effusion")
    fixes = commands.Corrections(wrong=frozenset({eff.id}),  # type: ignore[arg-type]
                                 missed=({"finding": "nodule", "side": "left", "zone": "upper", "change": "new", "urgent": False},))
    review_id = commands.sign(seeded.urgent_item, detail, "alice", "edited", detail.comparison.draft_text, fixes)
    with session_scope() as s:
        rev = s.get(Review, review_id)
        assert rev is not None and rev.action == "edited"
        assert rev.final_text.startswith(commands.rewritten_text(detail, fixes))
        assert "New nodule in the left upper zone." in rev.final_text and "effusion" not in rev.final_text
        assert [lab["finding"] for lab in json.loads(rev.final_labels_json)] == ["pneumothorax", "nodule"]
        edit = s.exec(select(AuditLog).where(AuditLog.action == "edit")).one()
        assert json.loads(edit.detail)["wrong"] == [eff.id]
        assert s.get(WorklistItem, seeded.urgent_item).status == "edited"


def test_accepted_signs_the_ai_draft_and_a_second_signature_loses(seeded) -> None:
    detail = _detail(seeded.routine_item)
    commands.sign(seeded.routine_item, detail, "alice", "accepted", "ignored text", commands.Corrections())
    with session_scope() as s:
        rev = s.exec(select(Review)).one()
        assert rev.final_text.startswith(detail.comparison.draft_text)
    with pytest.raises(signoff.AlreadySigned, match="alice"):
        commands.sign(seeded.routine_item, detail, "bob", "accepted", "", commands.Corrections())


def test_open_study_claims_and_audits_the_first_view_once(seeded) -> None:
    first = commands.open_study(seeded.urgent_item, "alice", None, already_open=False)
    again = commands.open_study(seeded.urgent_item, "alice", None, already_open=True)
    other = commands.open_study(seeded.urgent_item, "bob", None, already_open=False)
    assert first is not None and again is not None and other is not None
    assert first.claim is not None and first.claim.mine and first.first_view and not again.first_view
    assert other.claim is not None and not other.claim.mine and other.claim.holder == "alice"
    assert [p.id for p, _ in first.priors] == [first.detail.prior.id]  # type: ignore[union-attr]
    with session_scope() as s:
        views = s.exec(select(AuditLog.user).where(AuditLog.action == "view")).all()
    assert views == ["alice", "bob"]
    assert not commands.item_closed(seeded.urgent_item)
    commands.take_over(seeded.urgent_item, "bob")
    assert commands.open_study(seeded.urgent_item, "bob", None, already_open=True).claim.mine  # type: ignore[union-attr]
    assert commands.open_study(999_999, "alice", None, already_open=False) is None


def test_drafts_round_trip_and_an_oversized_one_is_refused(seeded) -> None:
    assert commands.load_draft("alice", seeded.urgent_item) is None
    assert commands.save_draft("alice", seeded.urgent_item, "my words")
    saved = commands.load_draft("alice", seeded.urgent_item)
    assert saved is not None and saved[0] == "my words"
    assert not commands.save_draft("alice", seeded.urgent_item, "x" * (queries.MAX_DRAFT_CHARS + 1))


def test_next_item_skips_the_one_just_signed_and_studies_others_read(seeded) -> None:
    commands.open_study(seeded.routine_item, "bob", None, already_open=False)  # bob reads it
    assert commands.next_item("alice", seeded.urgent_item) == seeded.noprior_item


def test_login_session_and_logout(seeded) -> None:
    err, grant = commands.attempt_login("alice", "wrong", "10.0.0.9")
    assert err and grant is None
    err, grant = commands.attempt_login("alice", PASSWORD, "10.0.0.9")
    assert err is None and grant
    from dashboard import security

    with session_scope() as s:
        cookie = security.redeem_grant(s, grant)
    user, why = commands.session_user(cookie)
    assert user is not None and why is None and (user.username, user.role) == ("alice", "radiologist")
    commands.logout("alice", user.session_id)
    assert commands.session_user(cookie)[0] is None


def test_add_user_is_audited_and_a_duplicate_refused(seeded) -> None:
    commands.add_user("root", "dora", PASSWORD, "qa", None)
    assert {"Username": "dora", "Role": "qa"}.items() <= next(u for u in commands.users() if u["Username"] == "dora").items()
    with pytest.raises(auth.AuthError):
        commands.add_user("root", "dora", PASSWORD, "qa", None)
    with session_scope() as s:
        assert len(s.exec(select(AuditLog).where(AuditLog.action == "user_add")).all()) == 1
