"""Logic without Streamlit: hashing, worklist query, review recording, images, CLI."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from PIL import Image
from sqlmodel import select
from typer.testing import CliRunner

from dashboard import auth, images, queries, signoff
from priorwatch.db import session_scope
from priorwatch.models import AuditLog, Finding, Review, User, WorklistItem


def test_password_hashing_is_salted_scrypt_and_verifies():
    h1, h2 = auth.hash_password("s3cret-pass"), auth.hash_password("s3cret-pass")
    assert h1 != h2 and h1.startswith("scrypt$") and "s3cret" not in h1
    assert auth.verify_password("s3cret-pass", h1)
    assert not auth.verify_password("s3cret-Pass", h1)
    assert not auth.verify_password("x", "garbage")


def test_create_user_and_authenticate(pw_settings):
    with session_scope(pw_settings) as s:
        auth.create_user(s, "ann", "long-enough-pw", "qa")
        with pytest.raises(auth.AuthError, match="already exists"):
            auth.create_user(s, "ann", "long-enough-pw", "qa")
        with pytest.raises(auth.AuthError, match="role"):
            auth.create_user(s, "bob", "long-enough-pw", "boss")
        with pytest.raises(auth.AuthError, match="at least"):
            auth.create_user(s, "bob", "short", "qa")
    with session_scope(pw_settings) as s:
        assert auth.authenticate(s, "ann", "long-enough-pw").role == "qa"
        assert auth.authenticate(s, "ann", "wrong-password") is None
        assert auth.authenticate(s, "nobody", "long-enough-pw") is None
        assert s.exec(select(User)).one().password_hash != "long-enough-pw"


def test_formatting():
    assert queries.format_interval(30) == "30 d"
    assert queries.format_interval(240) == "8 mo"
    assert queries.format_interval(400) == "13 mo"
    assert queries.format_interval(3 * 365 + 40) == "3 y 1 mo"
    assert queries.format_age_sex(date(1950, 3, 5), date(2025, 3, 4), "F") == "74 y F"
    assert queries.format_age_sex(None, None, "") == "—"
    now = datetime(2025, 1, 1, 12)
    assert queries.format_waiting(now - timedelta(minutes=7), now) == "7 min"
    assert queries.format_waiting(now - timedelta(hours=26), now) == "1 d 2 h"


def test_worklist_query_order_and_filters(seeded):
    with session_scope(seeded.settings) as s:
        rows = queries.worklist(s)
        assert [r["item_id"] for r in rows] == [seeded.urgent_item, seeded.routine_item, seeded.noprior_item]
        assert rows[0]["top_finding"] == "pneumothorax (right upper)" and rows[0]["confidence"] == 0.91
        assert [r["item_id"] for r in queries.worklist(s, queries.WorklistFilters(urgency="routine"))] == [
            seeded.routine_item, seeded.noprior_item]
        assert queries.filter_options(s) == {"modalities": ["CR", "DX"], "sites": ["North", "South"]}


def test_record_review_validates_and_is_single_shot(seeded):
    with session_scope(seeded.settings) as s:
        detail = queries.open_review(s, seeded.urgent_item, "alice")
        labels = signoff.model_labels(detail.findings)
        with pytest.raises(queries.ReviewError, match="reason"):
            signoff.record_review(s, seeded.urgent_item, "alice", "rejected", "", labels)
        with pytest.raises(queries.ReviewError, match="vocabulary"):
            signoff.record_review(s, seeded.urgent_item, "alice", "edited", "x", [{"finding": "tumour", "change": "new"}])
        started = datetime(2025, 1, 1, 12)
        rev = signoff.record_review(s, seeded.urgent_item, "alice", "accepted", detail.comparison.draft_text, labels,
                                    started_at=started, finished_at=started + timedelta(seconds=42.5))
        assert rev.time_spent_s == 42.5
    with session_scope(seeded.settings) as s:
        with pytest.raises(signoff.AlreadySigned, match="Already signed by alice at"):
            signoff.record_review(s, seeded.urgent_item, "bob", "accepted", "text", labels)
        assert len(s.exec(select(Review)).all()) == 1
        assert s.get(WorklistItem, seeded.urgent_item).status == "accepted"
        actions = [a.action for a in s.exec(select(AuditLog).order_by(AuditLog.id)).all()]
        assert actions == ["view", "accept"]


def test_apply_corrections(seeded):
    with session_scope(seeded.settings) as s:
        findings = list(s.exec(select(Finding).where(Finding.comparison_id == seeded.urgent_comparison).order_by(Finding.id)))
    ptx, eff = findings
    out = signoff.apply_corrections(
        findings, {eff.id}, {ptx.id: {"change": "worsened"}},
        [{"finding": "nodule", "side": "left", "zone": "upper", "change": "new", "urgent": False}],
    )
    assert out == [
        {"finding": "pneumothorax", "side": "right", "zone": "upper", "change": "worsened", "urgent": True},
        {"finding": "nodule", "side": "left", "zone": "upper", "change": "new", "urgent": False},
    ]


def test_prior_report_is_the_priors_signed_review(seeded):
    with session_scope(seeded.settings) as s:
        assert queries.prior_report(s, None) is None
        detail = queries.study_detail(s, seeded.urgent_item)
        assert detail.prior_report is None and detail.current_instance.view_position == "PA"


def test_images_presets_overlay_and_missing_files(seeded, tmp_path):
    img = images.load_dicom(seeded.current_path)
    assert max(img.pixels.shape) <= images.DISPLAY_MAX and img.full_shape == (1955, 1841)
    means = {p: images.apply_window(img, p).mean() for p in images.PRESETS}
    for p in images.PRESETS:
        a = images.apply_window(img, p)
        assert a.dtype == np.uint8 and a.shape == img.pixels.shape and a.max() > a.min()
    assert means["lung"] > means["mediastinum"] > means["bone"]  # lung window brightens the dark lungs
    with pytest.raises(ValueError):
        images.apply_window(img, "abdomen")
    gray = images.apply_window(img, "default")
    rgb = images.overlay_heatmap(gray, seeded.overlay_path)
    assert rgb.shape == (*gray.shape, 3) and (rgb[..., 0].astype(int) - rgb[..., 2]).max() > 50
    grey_png = tmp_path / "g.png"
    Image.fromarray(np.full((10, 10), 200, np.uint8)).save(grey_png)
    assert images.overlay_heatmap(gray, grey_png).shape == (*gray.shape, 3)
    assert images.to_png(gray)[:4] == b"\x89PNG"
    with pytest.raises(images.ImageUnavailable, match="missing"):
        images.load_dicom(tmp_path / "nope.dcm")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom")
    with pytest.raises(images.ImageUnavailable):
        images.load_dicom(bad)
    with pytest.raises(images.ImageUnavailable, match="missing"):
        images.overlay_heatmap(gray, tmp_path / "nope.png")
    with pytest.raises(images.ImageUnavailable, match="no difference overlay"):
        images.overlay_heatmap(gray, None)


def test_cli_user_add_and_dashboard_command(pw_settings, monkeypatch):
    import typer

    from dashboard import cli

    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    r = runner.invoke(app, ["user", "add", "rad1", "--role", "radiologist", "--password-stdin"], input="pw-from-stdin\n")
    assert r.exit_code == 0, r.output
    monkeypatch.setenv(cli.PASSWORD_ENV, "pw-from-env-1")
    r = runner.invoke(app, ["user", "add", "qa1", "--role", "qa"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["user", "add", "x", "--password-stdin"], input="short\n")
    assert r.exit_code == 2 and "at least" in r.output
    with session_scope(pw_settings) as s:
        assert auth.authenticate(s, "rad1", "pw-from-stdin").role == "radiologist"
        assert auth.authenticate(s, "qa1", "pw-from-env-1").role == "qa"
    # What `priorwatch dashboard` runs (the browser test runs it for real).
    cmd, env = cli.streamlit_command(8765), cli.dashboard_env()
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert env["PRIORWATCH_DATA_DIR"] == str(pw_settings.data_dir)
    assert json.dumps(cmd)  # plain strings
