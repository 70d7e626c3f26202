"""One sign-off per comparison, claims, the signed text, sessions and login throttling, in the
query layer (no browser): concurrent signers on SQLite and PostgreSQL, and the signed report
sent as a FINAL/VERIFIED SR to a real Orthanc, checked by dciodvfy."""

from __future__ import annotations

import subprocess
import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from dashboard import queries, security, signoff
from priorwatch.db import session_scope
from priorwatch.models import AuditLog, DashboardSession, Delivery, Review, SignOff, WorklistItem, utcnow
from priorwatch.settings import get_settings, reset_settings_cache
from tests.dashboard.browser import seed_race_items
from tests.dashboard.conftest import seed_database

RACE_ITEMS = 8


def _race(settings, items: list[int]) -> dict[int, list[object]]:
    """Two signers per item, released together by a barrier; what each got back."""
    out: dict[int, list[object]] = {i: [] for i in items}
    for item in items:
        barrier = threading.Barrier(2)

        def sign(user: str, item: int = item, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                with session_scope(settings) as s:
                    signoff.record_review(s, item, user, "accepted", "Stable appearances.", [])
                out[item].append(user)
            except signoff.AlreadySigned as exc:
                out[item].append(exc)

        ts = [threading.Thread(target=sign, args=(u,)) for u in ("alice", "bob")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    return out


def _check_race(settings, items: list[int], out: dict[int, list[object]]) -> None:
    with session_scope(settings) as s:
        for item in items:
            reviews = s.exec(select(Review).where(Review.worklist_item_id == item)).all()
            signoffs = s.exec(select(SignOff).where(SignOff.worklist_item_id == item)).all()
            assert len(reviews) == 1 and len(signoffs) == 1, item
            winners = [r for r in out[item] if isinstance(r, str)]
            losers = [r for r in out[item] if isinstance(r, signoff.AlreadySigned)]
            assert winners == [reviews[0].reviewer] and len(losers) == 1
            assert losers[0].signer == winners[0] and f"by {winners[0]}" in str(losers[0])


def test_two_signers_at_once_one_review_each_sqlite(pw_settings):
    seed_database(pw_settings)
    items = seed_race_items(pw_settings, RACE_ITEMS)
    _check_race(pw_settings, items, _race(pw_settings, items))


def test_two_signers_at_once_one_review_each_postgresql(tmp_path, monkeypatch):
    from tests.dashboard.conftest import postgres_dashboard

    with postgres_dashboard(tmp_path, monkeypatch, "pw_dash") as settings:
        items = seed_race_items(settings, RACE_ITEMS)
        _check_race(settings, items, _race(settings, items))


def test_claim_is_shown_taken_over_and_binds_the_signature(seeded):
    item = seeded.urgent_item
    with session_scope() as s:
        assert queries.claim(s, item, "alice", 600).mine
    with session_scope() as s:
        r = queries.claim(s, item, "bob", 600)
        assert not r.mine and r.holder == "alice"
        row = [w for w in queries.worklist(s) if w["item_id"] == item][0]
        assert row["claimed_by"] == "alice"
    with session_scope() as s:
        assert queries.claim(s, item, "bob", 600, take_over=True).mine
    with session_scope() as s:  # alice's stale page cannot sign any more
        with pytest.raises(signoff.AlreadySigned, match="bob took this study over"):
            signoff.record_review(s, item, "alice", "accepted", "x", [])
    with session_scope() as s:
        take = s.exec(select(AuditLog).where(AuditLog.action == "claim_takeover")).one()
        assert take.user == "bob" and '"from": "alice"' in take.detail
        assert queries.release_all_claims(s, "bob") == 1  # logout
        it = s.get(WorklistItem, item)
        assert it.claimed_by is None and it.status == "pending"


def test_an_expired_claim_is_free_to_take(seeded):
    with session_scope() as s:
        assert queries.claim(s, seeded.urgent_item, "alice", -1).mine  # already expired
    with session_scope() as s:
        assert queries.claim(s, seeded.urgent_item, "bob", 600).mine


def test_signed_text_drops_the_ai_banner_and_corrections_regenerate_it(seeded):
    with session_scope() as s:
        detail = queries.study_detail(s, seeded.urgent_item)
        eff = [f for f in detail.findings if f.finding == "effusion"][0]
        labels = signoff.apply_corrections(detail.findings, set(), {eff.id: {"change": "new"}}, [])
        text = signoff.structured_text(labels, detail.comparison, detail.prior)
        assert text.startswith("Compared with the prior study of 2023-01-10 (2 y 1 mo).")
        assert "New pneumothorax on the right (upper zone) (urgent)." in text  # the draft's wording (priorwatch.sentences)
        assert "New pleural effusion in the left lower zone." in text and "Stable" not in text
        rev = signoff.record_review(s, seeded.urgent_item, "alice", "edited",
                                    "PRELIMINARY AI DRAFT — for radiologist review. " + text, labels)
        assert not rev.final_text.startswith("PRELIMINARY")
        assert rev.final_text.startswith("Compared with the prior study")
        assert rev.final_text.rstrip().endswith("UTC.") and "Signed by alice on " in rev.final_text


def test_idle_session_is_ended_and_a_forged_cookie_refused(seeded):
    with session_scope() as s:
        row, grant = security.create_session(s, "alice", "local")
    with session_scope() as s:
        cookie = security.redeem_grant(s, grant)
    with session_scope() as s:
        info, why = security.check_session(s, cookie, touch=True)
        assert info is not None and info.username == "alice" and why is None
        sid, token, sig = cookie.split(".")
        assert security.check_session(s, f"{sid}.{token}x.{sig}")[1] == "bad"
        assert security.check_session(s, f"{sid}.{token}.{'0' * 32}")[1] == "bad"
    with session_scope() as s:
        r = s.get(DashboardSession, row.id)
        r.last_seen_at = utcnow() - timedelta(seconds=get_settings().dashboard_idle_timeout_s + 5)
        s.add(r)
    with session_scope() as s:
        assert security.check_session(s, cookie) == (None, "idle")
    with session_scope() as s:
        assert s.get(DashboardSession, row.id).end_reason == "idle"
        assert security.check_session(s, cookie)[1] == "idle"  # stays dead


def test_login_throttle_locks_the_pair_and_forgets_unknown_names(seeded):
    st = get_settings()
    with session_scope() as s:
        for _ in range(st.login_max_failures_per_pair):
            gate = security.login_gate(s, True, "alice", "10.0.0.9")
            assert not gate.refused
            locks = security.record_failure(s, gate)
        assert [scope for scope, _ in locks] == [security.SCOPE_PAIR]
        assert security.login_gate(s, True, "alice", "10.0.0.9").refused
        assert not security.login_gate(s, True, "alice", "10.0.0.8").refused  # only that pair
        # an unknown name counts on its address's one unknown-name pair, and is stored nowhere
        other = security.login_gate(s, False, "p4ssw0rd-typed-here", "10.0.0.10")
        security.record_failure(s, other)
        assert all("p4ssw0rd" not in k for k in [r.key for r in s.exec(select(security.LoginThrottle)).all()])
        assert not security.login_gate(s, False, "p4ssw0rd-typed-here", "10.0.0.10").refused


def test_signed_report_goes_to_orthanc_as_final_verified_sr(seeded, tmp_path, monkeypatch):
    from tests.peers import Orthanc
    from workers import deliver

    from tests.conftest import require_binary

    require_binary("dciodvfy")
    with Orthanc(tmp_path / "orthanc", dicomweb=False) as pacs:
        monkeypatch.setenv("PRIORWATCH_PACS_AE_TITLE", pacs.aet)
        monkeypatch.setenv("PRIORWATCH_PACS_PORT", str(pacs.dicom_port))
        monkeypatch.setenv("PRIORWATCH_SEND_SR_TO_PACS", "true")
        reset_settings_cache()
        settings = get_settings()
        comp_id = seeded.urgent_comparison
        with session_scope() as s:  # the preliminary draft SR, as the pipeline's outbox sends it
            deliver.add_outbox_rows(s, comp_id, settings, urgent=False, kinds=["sr"])
        deliver.send_due(settings)
        with session_scope() as s:
            pre = s.exec(select(Delivery).where(Delivery.kind == "sr")).one()
            assert pre.state == "sent"
            signoff.record_review(s, seeded.urgent_item, "alice", "accepted",
                                  "New right upper zone pneumothorax.", [], session_id=None)
        deliver.send_due(settings)
        with session_scope() as s:
            fin = s.exec(select(Delivery).where(Delivery.kind == "final_sr")).one()
            assert fin.state == "sent", fin.error
        found = pacs.rest("/tools/find", data=f'{{"Level":"Instance","Query":{{"SOPInstanceUID":"{fin.sop_instance_uid}"}}}}'.encode(),
                          method="POST")
        assert len(found) == 1
        import urllib.request

        with urllib.request.urlopen(f"{pacs.url}/instances/{found[0]}/file", timeout=10) as r:
            (tmp_path / "final.dcm").write_bytes(r.read())
    import pydicom

    ds = pydicom.dcmread(tmp_path / "final.dcm")
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "alice^"
    ref = ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == pre.sop_instance_uid
    text = "\n".join(str(getattr(i, "TextValue", "")) for i in ds.ContentSequence)
    assert "Signed by alice on " in text and "PRELIMINARY" not in text
    out = subprocess.run(["dciodvfy", str(tmp_path / "final.dcm")], capture_output=True, text=True)
    errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []


def test_database_secret_and_spool_are_private(pw_settings):
    import stat

    security.make_cookie_value(pw_settings, 1, "t")  # creates the cookie key file
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(pw_settings.data_dir / "priorwatch.db") == 0o600
    assert mode(pw_settings.data_dir / security.SECRET_FILE) == 0o600
    assert mode(pw_settings.data_dir) == 0o700 and mode(pw_settings.spool_dir) == 0o700
