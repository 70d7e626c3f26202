"""Page logic through Streamlit's AppTest: login, worklist, review decisions, roles, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlmodel import select
from streamlit.testing.v1 import AppTest

from priorwatch.db import session_scope
from priorwatch.models import AuditLog, Finding, Review, WorklistItem
from priorwatch.settings import reset_settings_cache

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def login_cookie(user: str, role: str = "radiologist") -> str:
    """A live session cookie for `user` (created with `role` if missing), as the browser holds it."""
    from sqlmodel import select as _select

    from dashboard import auth, security
    from priorwatch.models import User
    from tests.dashboard.conftest import PASSWORD

    with session_scope() as s:
        if s.exec(_select(User).where(User.username == user)).first() is None:
            auth.create_user(s, user, PASSWORD, role)
        _row, grant = security.create_session(s, user, "local")
    with session_scope() as s:
        value = security.redeem_grant(s, grant)
    assert value is not None
    return value


def app_as(user: str | None = None, role: str = "radiologist", **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if user:
        at.session_state["pw_cookie"] = login_cookie(user, role)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; have {[b.label for b in at.button]}"
    return matches[0]


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.error, *at.warning, *at.info, *at.success, *at.markdown, *at.caption, *at.title)]
    return "\n".join(str(p) for p in parts)


def audit_rows(settings, action: str | None = None) -> list[AuditLog]:
    with session_scope(settings) as s:
        q = select(AuditLog).order_by(AuditLog.id)
        if action:
            q = q.where(AuditLog.action == action)
        return list(s.exec(q).all())


def open_review(at: AppTest, item_id: int) -> AppTest:
    at.selectbox(key="wl_pick").set_value(item_id)
    button(at, "Open review").click()
    return at.run()


# ---------------------------------------------------------------------------------------
def test_login_wrong_then_right_password(seeded):
    at = app_as()
    assert at.title[0].value == "PriorWatch"
    at.text_input(key="login_username").input("alice")
    at.text_input(key="login_password").input("wrong-password")
    button(at, "Log in").click()
    at.run()
    assert "Wrong username or password" in texts(at)
    assert "user" not in at.session_state
    at.text_input(key="login_password").input("correct-horse-1")
    button(at, "Log in").click()
    at.run()
    # The password is right: the browser is sent to redeem a one-time grant for its cookie.
    grant = at.session_state["grant"]
    assert "Continuing" in texts(at)
    from dashboard import security

    with session_scope(seeded.settings) as s:
        cookie = security.redeem_grant(s, grant)
    with session_scope(seeded.settings) as s:
        assert security.redeem_grant(s, grant) is None  # one use only
    at2 = AppTest.from_file(APP, default_timeout=60)
    at2.session_state["pw_cookie"] = cookie
    at2.run()
    assert at2.session_state["user"] == {"username": "alice", "role": "radiologist"}
    assert at2.title[0].value == "Worklist"
    assert [a.user for a in audit_rows(seeded.settings, "login")] == ["alice"]
    assert [a.user for a in audit_rows(seeded.settings, "login_failed")] == ["alice"]


def test_login_page_says_when_no_users_exist(pw_settings):
    at = app_as()
    assert "No accounts exist yet" in texts(at)


def test_worklist_urgent_first_then_waiting_time(seeded):
    at = app_as("alice")
    df = at.dataframe[0].value
    assert list(df.columns) == [
        "Urgent", "Patient", "Study", "Interval", "Top finding", "Change", "Conf.", "Status",
        "Being read by", "Waiting",
    ]
    # urgent first, then the routine study waiting 3 h, then the one waiting 1 h
    assert df["Patient"].tolist() == ["DOE^JANE (PA-001) 74 y F", "ROE^RICHARD (PB-002) 74 y M", "POE^ANN (PC-003) 74 y F"]
    first = df.iloc[0]
    assert first["Urgent"] == "URGENT"
    assert first["Top finding"] == "pneumothorax (right upper)"
    assert first["Change"] == "new"
    assert first["Interval"] == "2 y 1 mo"
    assert "3 studies · 1 urgent" in texts(at)
    assert df.iloc[2]["Interval"] == "no prior"
    assert at.selectbox(key="wl_pick").value == seeded.urgent_item


def test_worklist_filters_and_empty_state(seeded):
    at = app_as("alice")
    at.radio(key="f_urgency").set_value("Urgent only").run()
    assert at.dataframe[0].value["Patient"].tolist() == ["DOE^JANE (PA-001) 74 y F"]
    at.radio(key="f_urgency").set_value("All")
    at.multiselect(key="f_modality").set_value(["DX"]).run()
    assert at.dataframe[0].value["Patient"].tolist() == ["ROE^RICHARD (PB-002) 74 y M"]
    at.multiselect(key="f_modality").set_value([])
    at.multiselect(key="f_site").set_value(["South"]).run()
    assert at.dataframe[0].value["Patient"].tolist() == ["ROE^RICHARD (PB-002) 74 y M"]
    at.radio(key="f_urgency").set_value("Urgent only").run()
    assert len(at.dataframe) == 0
    assert "No studies match these filters" in texts(at)
    at.multiselect(key="f_site").set_value([])
    at.radio(key="f_urgency").set_value("All")
    at.multiselect(key="f_status").set_value(["accepted"]).run()
    assert "No studies match these filters" in texts(at)


def test_worklist_empty(pw_settings):
    at = app_as("alice")
    assert "The worklist is empty" in texts(at)


def test_review_page_shows_what_the_model_saw_and_accept_as_is(seeded):
    at = app_as("alice")
    at = open_review(at, seeded.urgent_item)
    assert at.session_state["page"] == "Review"
    body = texts(at)
    assert "URGENT" in body and "pneumothorax (right upper) — new" in body
    assert "Prior:" in body and "2 y 1 mo" in body
    assert "Viewer:" in body  # current and prior side by side in the synced viewer
    findings = at.dataframe[0].value
    assert findings["Evidence check"].tolist() == ["✓ supported", "⚠ UNSUPPORTED"]
    assert "not supported by the image evidence" in body
    assert at.text_area(key=f"draft_{seeded.urgent_item}").value.startswith("New right upper zone pneumothorax")
    # the view is audited and the item is in review
    views = audit_rows(seeded.settings, "view")
    assert [(v.user, v.study_id) for v in views] == [("alice", seeded.urgent_study)]
    with session_scope(seeded.settings) as s:
        assert s.get(WorklistItem, seeded.urgent_item).status == "in_review"
    # window presets and overlay toggle rerender without error
    at.radio(key="wl_preset").set_value("lung").run()
    at.toggle(key="overlay").set_value(True).run()
    at.radio(key="wl_preset").set_value("manual").run()  # manual window: sliders on the full-depth range
    assert at.slider(key="wl_center").value is not None and at.slider(key="wl_width").value > 1
    assert not at.exception and not [w for w in at.warning if "unavailable" in str(w.value)]
    button(at, "Accept as is").click()
    at.run()
    assert at.session_state["page"] == "Worklist"
    assert "Signed (accepted)" in texts(at)
    with session_scope(seeded.settings) as s:
        rev = s.exec(select(Review)).one()
        assert rev.action == "accepted" and rev.reviewer == "alice"
        assert rev.final_text.startswith("New right upper zone pneumothorax")
        assert "Signed by alice on " in rev.final_text
        labels = json.loads(rev.final_labels_json)
        assert labels[0] == {"finding": "pneumothorax", "side": "right", "zone": "upper", "change": "new", "urgent": True}
        assert rev.started_at is not None and rev.time_spent_s is not None and rev.time_spent_s >= 0
        assert s.get(WorklistItem, seeded.urgent_item).status == "accepted"
    assert [a.action for a in audit_rows(seeded.settings) if a.action in ("accept", "edit")] == ["accept"]
    assert "DOE^JANE (PA-001) 74 y F" not in at.dataframe[0].value["Patient"].tolist()


def test_edit_with_corrections_and_accept(seeded):
    at = open_review(app_as("alice"), seeded.urgent_item)
    item = seeded.urgent_item
    # Nothing edited yet: "Accept with edits" refuses.
    button(at, "Accept with edits").click()
    at.run()
    assert "Nothing was edited" in texts(at)
    at.text_area(key=f"draft_{item}").input("Large new right pneumothorax. No effusion.")
    with session_scope(seeded.settings) as s:
        effusion = s.exec(select(Finding).where(Finding.finding == "effusion")).one()
    at.checkbox(key=f"wrong_{item}_{effusion.id}").check()
    at.selectbox(key=f"m_finding_{item}").set_value("support_device")
    at.selectbox(key=f"m_side_{item}").set_value("right")
    at.selectbox(key=f"m_change_{item}").set_value("new")
    button(at, "Add missed finding").click()
    at.run()
    # "Accept as is" with changes refuses rather than dropping them.
    button(at, "Accept as is").click()
    at.run()
    assert "Use **Accept with edits**" in texts(at)
    button(at, "Accept with edits").click()
    at.run()
    assert "Signed (edited)" in texts(at)
    with session_scope(seeded.settings) as s:
        rev = s.exec(select(Review)).one()
        assert rev.action == "edited"
        assert rev.final_text.startswith("Large new right pneumothorax. No effusion.\n\nSigned by alice on ")
        assert json.loads(rev.final_labels_json) == [
            {"finding": "pneumothorax", "side": "right", "zone": "upper", "change": "new", "urgent": True},
            {"finding": "support_device", "side": "right", "zone": None, "change": "new", "urgent": False},
        ]
        assert s.get(WorklistItem, item).status == "edited"
    edits = audit_rows(seeded.settings, "edit")
    assert len(edits) == 1 and edits[0].user == "alice" and edits[0].study_id == seeded.urgent_study
    detail = json.loads(edits[0].detail)
    assert detail["text_changed"] is True and len(detail["wrong"]) == 1 and detail["missed"][0]["finding"] == "support_device"
    assert len(audit_rows(seeded.settings, "accept")) == 1


def test_reject_needs_a_reason(seeded):
    at = open_review(app_as("alice"), seeded.routine_item)
    button(at, "Reject").click()
    at.run()
    assert "Give a reason" in texts(at)
    at.text_input(key=f"reason_{seeded.routine_item}").input("wrong prior selected")
    button(at, "Reject").click()
    at.run()
    assert "Signed (rejected)" in texts(at)
    with session_scope(seeded.settings) as s:
        rev = s.exec(select(Review)).one()
        assert (rev.action, rev.reason) == ("rejected", "wrong prior selected")
        assert s.get(WorklistItem, seeded.routine_item).status == "rejected"
    assert len(audit_rows(seeded.settings, "reject")) == 1


def test_no_prior_study_and_prior_report_empty_states(seeded):
    at = open_review(app_as("alice"), seeded.noprior_item)
    body = texts(at)
    assert "No prior" in body and "no earlier chest study on file" in body
    assert "The model reported no findings." in body
    assert "No prior report on file." in body


def test_missing_study_files_give_a_clear_message(seeded):
    seeded.current_path.unlink()
    seeded.overlay_path.unlink()
    at = open_review(app_as("alice"), seeded.urgent_item)
    assert not at.exception
    warnings = " ".join(str(w.value) for w in at.warning)
    assert "Current image unavailable" in warnings and "missing" in warnings
    at.toggle(key="overlay").set_value(True).run()
    assert not at.exception


def test_already_reviewed_item_is_read_only(seeded):
    at = app_as("alice", page="Review", review_item=seeded.urgent_item)
    with session_scope(seeded.settings) as s:
        it = s.get(WorklistItem, seeded.urgent_item)
        it.status = "accepted"
        s.add(it)
    at2 = app_as("bob", page="Review", review_item=seeded.urgent_item)
    assert "Signed: **accepted**" in texts(at2)
    assert not [b for b in at2.button if b.label == "Accept as is"]
    # the first reviewer's stale page re-reads the item and cannot record a second decision
    button(at, "Accept as is").click()
    at.run()
    assert "Signed: **accepted**" in texts(at)
    with session_scope(seeded.settings) as s:
        assert s.exec(select(Review)).all() == []


def test_database_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRIORWATCH_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    reset_settings_cache()
    try:
        at = app_as()
        assert not at.exception
        assert "Database unreachable" in at.error[0].value
    finally:
        reset_settings_cache()


def test_roles_qa_sees_monitoring_radiologist_does_not(seeded, monkeypatch):
    monkeypatch.setitem(sys.modules, "dashboard.monitoring_view", None)  # import fails
    at = app_as("quinn", role="qa")
    assert at.sidebar.radio(key="nav").options == ["Monitoring"]
    seen = audit_rows(seeded.settings, "monitoring_view")
    assert [a.user for a in seen] == ["quinn"] and isinstance(json.loads(seen[0].detail)["session"], int)
    assert "Monitoring is not available" in texts(at)
    assert len(at.dataframe) == 0  # no worklist for QA
    at = app_as("alice")
    assert at.sidebar.radio(key="nav").options == ["Worklist", "Review"]
    at = app_as("root", role="admin")
    assert at.sidebar.radio(key="nav").options == ["Worklist", "Review", "Monitoring", "Users"]


def test_admin_adds_a_user(seeded):
    at = app_as("root", role="admin", page="Users")
    assert "alice" in at.dataframe[0].value["Username"].tolist()
    at.text_input[0].input("rita")
    at.selectbox[0].set_value("radiologist")
    at.text_input[1].input("a-long-password")
    button(at, "Add user").click()
    at.run()
    assert "rita" in at.dataframe[0].value["Username"].tolist()
    assert audit_rows(seeded.settings, "user_add")[0].user == "root"


def test_logout(seeded):
    at = app_as("alice")
    at.sidebar.button[0].click()
    at.run()
    assert at.title[0].value == "PriorWatch"
    assert audit_rows(seeded.settings, "logout")[0].user == "alice"


def test_accept_and_next_opens_the_next_study_and_counts_read_well(seeded):
    at = open_review(app_as("alice"), seeded.urgent_item)
    button(at, "Accept and next").click()
    at.run()
    assert at.session_state["page"] == "Review" and at.session_state["review_item"] == seeded.routine_item
    assert "Next study opened" in texts(at)
    button(at, "Accept and next").click()
    at.run()
    assert at.session_state["review_item"] == seeded.noprior_item
    button(at, "← Back to worklist").click()
    at.run()
    assert "1 study · 0 urgent" in texts(at)
    with session_scope(seeded.settings) as s:
        assert s.get(WorklistItem, seeded.noprior_item).claimed_by is None  # leaving releases the claim
        assert [r.action for r in s.exec(select(Review).order_by(Review.id)).all()] == ["accepted", "accepted"]


def test_second_user_sees_the_claim_read_only_and_can_take_over(seeded):
    open_review(app_as("alice"), seeded.urgent_item)
    bob = app_as("bob", page="Review", review_item=seeded.urgent_item)
    assert "Being read by **alice** since" in texts(bob)
    assert not [b for b in bob.button if b.label == "Accept as is"]
    assert bob.text_area(key=f"ro_{seeded.urgent_item}").disabled
    button(bob, "Take over this study").click()
    bob.run()
    assert [b for b in bob.button if b.label == "Accept as is"]
    wl = app_as("carol")
    assert wl.dataframe[0].value["Being read by"].tolist()[0].startswith("bob since ")
